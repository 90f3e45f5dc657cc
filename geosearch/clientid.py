"""Who is asking: the client a request is counted against.

The peer's address, unless the peer is one of the configured trusted proxies
(``GEOSEARCH_TRUSTED_PROXIES``, addresses or CIDR networks): then the nearest address in
``X-Forwarded-For`` that is not itself a trusted proxy (read from the right: the entries
to the left of it were written by the client and prove nothing). An IPv6 client counts
as its /64 network, the block a single subscriber is usually given, so that rotating
addresses within it buys nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPV6_PREFIX = 64
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def proxy_networks(specs: Iterable[str], setting: str = "GEOSEARCH_TRUSTED_PROXIES"
                   ) -> tuple[Network, ...]:
    """The trusted proxies (or other addresses of ``setting``) as networks (a bare
    address is a network of one); ValueError names a spec that is neither."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{setting}: {spec!r} is not an IP address or CIDR "
                             "network") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: tuple[Network, ...]) -> bool:
    return any(address in network for network in proxies)


@lru_cache(maxsize=4096)
def key_of(name: str) -> int:
    """A non-zero 64-bit key for a name (the shared counters' key)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def client_address(remote_addr: str | None, forwarded_for: str | None,
                   proxies: tuple[Network, ...]) -> Address | None:
    """The client's address: the peer's, or the one a trusted proxy forwarded (None when
    the address cannot be read).

    >>> nets = proxy_networks(["10.0.0.0/8"])
    >>> client_address("10.0.0.5", "6.6.6.6, 203.0.113.9, 10.0.0.7", nets)
    IPv4Address('203.0.113.9')
    >>> client_address("198.51.100.4", "203.0.113.9", nets)
    IPv4Address('198.51.100.4')
    """
    address = _address(remote_addr or "")
    if address is not None and forwarded_for and _trusted(address, proxies):
        for hop in reversed(forwarded_for.split(",")):
            hop_address = _address(hop)
            if hop_address is None:
                break  # a malformed hop: the proxy's own peer is what we know
            address = hop_address
            if not _trusted(address, proxies):
                break
    return address


def client_name(remote_addr: str | None, forwarded_for: str | None,
                proxies: tuple[Network, ...]) -> str:
    """The client's name (:func:`client_address`): its IPv4 address or IPv6 /64 network
    ("unknown" when the address cannot be read).

    >>> client_name("2001:db8::1", None, ())
    '2001:db8::/64'
    """
    address = client_address(remote_addr, forwarded_for, proxies)
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


@lru_cache(maxsize=65536)
def client_key(remote_addr: str | None, forwarded_for: str | None,
               proxies: tuple[Network, ...]) -> int:
    """The shared counters' key of the client (:func:`client_name`)."""
    return key_of(client_name(remote_addr, forwarded_for, proxies))
