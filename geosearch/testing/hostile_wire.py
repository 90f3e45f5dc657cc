"""The hostile battery's cases that exist only on the wire, for a real server over real
sockets (scripts/hostile_http.py): forged ``Host`` headers and forwarding headers on every
route family, malformed chunked bodies, a TLS handshake on the plain-HTTP port; and the
bytes of every probe as the sender writes them (:func:`request_bytes`)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

from geosearch.testing.hostile import EVIL, ITEMS, JSON, ORIGIN, POLYGON, Probe

# One request of each route family, and its status when the Host is trusted.
ROUTES: list[tuple[Probe, int]] = [
    (Probe("GET", f"/v1/spaces/radius?{ORIGIN}&radius_m=20000&limit=2"), 200),
    (Probe("GET", f"/v1/spaces/nearest?{ORIGIN}&k=2"), 200),
    (Probe("GET", "/v1/spaces/bbox?bbox=13.3,52.4,13.5,52.6&limit=2"), 200),
    (Probe("GET", "/v1/spaces?limit=2"), 200),
    (Probe("POST", "/v1/spaces/polygon?limit=2", POLYGON, dict(JSON)), 200),
    (Probe("GET", "/v1/spaces/no-such-space"), 404),
    (Probe("GET", "/v1/spaces/"), 404),
    (Probe("GET", "/v1/amenities"), 200),
    (Probe("GET", "/v1/tiles/4/8/5.json"), 200),
    (Probe("GET", "/v1/tiles/10/550/335.mvt"), 200),
    (Probe("GET", "/v1/coverage/countries"), 200),
    (Probe("GET", "/v1/coverage/cities?country=NZ"), 200),
    (Probe("GET", "/ogc"), 308),
    (Probe("GET", "/ogc?x=1"), 308),
    (Probe("GET", "/ogc/"), 200),
    (Probe("GET", "/ogc/api"), 200),
    (Probe("GET", "/ogc/conformance"), 200),
    (Probe("GET", "/ogc/collections"), 200),
    (Probe("GET", "/ogc/collections/spaces"), 200),
    (Probe("GET", "/ogc/collections/spaces/queryables"), 200),
    (Probe("GET", f"{ITEMS}?limit=2"), 200),
    (Probe("GET", f"{ITEMS}/no-such-space"), 404),
    (Probe("GET", "/ogc/collections/other/items"), 404),
    (Probe("GET", "/healthz"), 200),
    (Probe("GET", "/readyz"), 200),
    (Probe("GET", "/"), 200),
    (Probe("GET", "/map/config.json"), 200),
    (Probe("GET", "/map/countries.geojson"), 200),
    (Probe("GET", "/static/map.js"), 200),
    (Probe("GET", "/openapi.json"), 200),
    (Probe("GET", "/no/such/route"), 404),
]
# Host headers naming another site, with its own path and query, a port, user info
EVIL_HOSTS = [EVIL, f"{EVIL}/phish?x=", f"{EVIL}:80", f"{EVIL}:8000/a", f"127.0.0.1.{EVIL}",
              f"localhost@{EVIL}", f"{EVIL}#@127.0.0.1", f"{EVIL}%2F"]
# What a client that is no trusted proxy sends to pass for one: the scheme, its address,
# another host or a path prefix.
SPOOFS: list[dict[str, str]] = [
    {"X-Forwarded-Proto": "https"},
    {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.7"},
    {"X-Forwarded-Host": EVIL, "X-Forwarded-Server": EVIL, "X-Host": EVIL},
    {"Forwarded": f"for=203.0.113.7;host={EVIL};proto=https"},
    {"X-Forwarded-Prefix": f"//{EVIL}", "X-Script-Name": f"//{EVIL}"},
    {"X-Forwarded-Ssl": "on", "X-Forwarded-Scheme": "https", "X-Forwarded-Port": "443",
     "Front-End-Https": "on"},
    {"X-Original-URL": f"http://{EVIL}/", "X-Rewrite-URL": f"http://{EVIL}/"},
]


def request_bytes(probe: Probe, host: str) -> bytes:
    """The bytes of ``probe`` on the wire: ``raw`` as it is; else the request line (a
    path gets no prefix), ``Host: host`` unless the probe sends its own, its headers,
    ``Content-Length`` for a body unless it frames the body itself, ``Connection: close``."""
    if probe.raw is not None:
        return probe.raw
    headers = {"Host": host, **probe.headers}
    framed = {"content-length", "transfer-encoding"} & {k.lower() for k in headers}
    if probe.body is not None and not framed:
        headers["Content-Length"] = str(len(probe.body))
    lines = [f"{probe.method} {probe.url} HTTP/1.1", *(f"{k}: {v}" for k, v in
                                                       headers.items()), "Connection: close"]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + (probe.body or b"")


def _with(route: Probe, status: int, headers: dict[str, str], url: str = "") -> Probe:
    return Probe(route.method, url or route.url, route.body, {**route.headers, **headers},
                 status)


def host_probes() -> Iterator[Probe]:
    """Every route family with every forged Host (400, the host never echoed); with the
    trusted Host and each spoofed forwarding header, and as an absolute-form target
    naming another site (answered as without them, links on the trusted origin)."""
    for route, status in ROUTES:
        for host in EVIL_HOSTS:
            yield _with(route, 400, {"Host": host})
        for spoof in SPOOFS:
            yield _with(route, status, spoof)
        yield _with(route, status, {}, f"http://{EVIL}{route.url}")
    yield Probe("GET", "/ogc/", raw=b"GET /ogc/ HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: "
                + EVIL.encode() + b"\r\nConnection: close\r\n\r\n", status=400)
    yield Probe("GET", "/ogc?x=1", raw=b"GET /ogc?x=1 HTTP/1.0\r\n\r\n", status=308)


CHUNKED = {**JSON, "Transfer-Encoding": "chunked"}
_BODY = POLYGON.decode()


def _chunks(*sizes_and_data: tuple[str, str], end: str = "0\r\n\r\n") -> bytes:
    return ("".join(f"{size}\r\n{data}\r\n" for size, data in sizes_and_data) + end).encode()


def chunked_probes() -> Iterator[Probe]:
    """Polygon bodies in chunks: well formed (200, an extension too), then sizes that are
    no hex number,
    negative, huge, wrong for their data, chunks without their line end or the last
    chunk (the client then closes its side), a length and a chunked coding together."""
    whole = hex(len(_BODY))[2:]
    url = "/v1/spaces/polygon?limit=2"
    for size in (whole, whole + ";" + "x" * 10_000):
        yield Probe("POST", url, _chunks((size, _BODY)), dict(CHUNKED), 200)
    bad = [_chunks((size, _BODY)) for size in
           ("zz", "-1", "0x" + whole, " " + whole, "f" * 20, "9" * 100, hex(len(_BODY) + 9)[2:],
            hex(len(_BODY) - 9)[2:])]
    bad += [(whole + "\r\n" + _BODY).encode(), (whole + "\r\n" + _BODY + "XX0\r\n\r\n").encode(),
            _chunks((whole, _BODY), end=""), _chunks((whole, _BODY), end="0\r\n"),
            _chunks((whole, _BODY), end="0\r\nbad trailer\r\n\r\n"),
            _chunks(*[("1", "[")] * 3000), f"{whole}\r\n".encode()]
    for body in bad:
        yield Probe("POST", url, body, dict(CHUNKED), 400, half_close=True)
    yield Probe("POST", url, _chunks((whole, _BODY)), {**CHUNKED, "Content-Length": "5"}, 400)


def _client_hello() -> bytes:
    """A TLS ClientHello as a client of this machine's TLS library sends it, naming the
    forged host."""
    outgoing = ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), outgoing,
                                                server_hostname=EVIL)
    with contextlib.suppress(ssl.SSLWantReadError):  # sent; it waits for the ServerHello
        tls.do_handshake()
    return outgoing.read()


def _sslv2_client_hello() -> bytes:
    """A ClientHello in the SSL 2 record format that TLS clients may still open with
    (RFC 5246, E.2): no line end, and no 0x16 first byte."""
    ciphers = bytes([0x00, 0x00, 0x2F, 0x00, 0x00, 0x35, 0x00, 0x00, 0x04])
    challenge = bytes(range(0xA0, 0xB0))  # random bytes, as it happens with no CR or LF
    body = (bytes([0x01, 0x03, 0x01]) + len(ciphers).to_bytes(2, "big") + b"\x00\x00"
            + len(challenge).to_bytes(2, "big") + ciphers + challenge)
    return bytes([0x80 | len(body) >> 8, len(body) & 0xFF]) + body


def handshake_probes() -> Iterator[Probe]:
    """Other protocols on the plain-HTTP port: each answered 400 at once."""
    for name, raw in (("TLS ClientHello", _client_hello()),
                      ("SSL 2 format ClientHello", _sslv2_client_hello()),
                      ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")):
        yield Probe("RAW", f"<{name}>", raw=raw, status=400)


def wire_battery() -> Iterator[Probe]:
    """Every case of this module."""
    yield from host_probes()
    yield from chunked_probes()
    yield from handshake_probes()
