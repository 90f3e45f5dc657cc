"""Typed settings, read from ``GEOSEARCH_*`` environment variables and checked together."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_SNAPSHOT = Path("var/snapshot")
# A client may use half a worker's time under a server: with two workers, a client that
# spends all of it keeps each busy a quarter of the time, so another client's median
# request still finds its worker free.
SERVER_CLIENT_BUDGET = 0.5
GEOCODE_MISS_TTL_DAYS = 30.0


def _check_rate(name: str, spec: str) -> None:
    """A rate in the limits library's notation, or empty."""
    if spec:
        from limits import parse_many

        try:
            parse_many(spec)
        except ValueError:
            raise ValueError(f"GEOSEARCH_{name.upper()} must read like '60/minute' "
                             "(or be empty for no limit)") from None


def _check_public_url(url: str) -> None:
    """scheme://host[:port], nothing else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") \
            or parts.query or parts.fragment or parts.username:
        raise ValueError("GEOSEARCH_PUBLIC_URL must read like https://maps.example.com "
                         "(a scheme and a host, optionally a port; no path)")


@dataclass(frozen=True)
class Settings:
    """Everything geosearch can be configured with.

    Each field ``x`` is read from ``GEOSEARCH_X`` by :meth:`from_env`. Exactly one data
    source is used: ``database_url`` when set (PostGIS), else ``snapshot``.
    """

    snapshot: Path = DEFAULT_SNAPSHOT
    database_url: str | None = None
    # Hot-standby replicas of database_url that searches read from (comma-separated in
    # GEOSEARCH_REPLICA_URLS); ingest and migrations always use database_url.
    replica_urls: tuple[str, ...] = ()
    # A replica whose oldest change not yet applied was committed more than this many
    # seconds ago leaves the read rotation until it is back within it.
    max_lag_s: float = 30.0
    # How long a read that sends a consistency token (X-Consistency-Token) waits, from its
    # request's start, for a replica that has applied the token's write, before it reads
    # the primary; 0 reads the primary at once when the replicas are behind.
    consistency_wait_ms: int = 500
    statement_timeout_ms: int = 5_000
    pool_size: int = 5
    # "transaction" when the database URL is a transaction-pooling pgbouncer: no prepared
    # statements, the statement timeout set per transaction (docs/deploy.md).
    database_pooler: str = ""
    max_body_bytes: int = 1024 * 1024
    # A Leaflet tile URL template (https://tile.example.org/{z}/{x}/{y}.png) for the map's
    # base layer, and the credit its provider asks for (OpenStreetMap's when unset).
    tile_url: str | None = None
    tile_attribution: str | None = None
    geocoder: str = "gazetteer"
    geocoder_domain: str | None = None
    geocoder_scheme: str = "https"
    geocoder_delay_s: float = 1.0
    geocode_cache: Path = Path("var/geocode-cache.sqlite")
    # geocoder_scheme http is refused unless this is set (GEOSEARCH_GEOCODER_ALLOW_HTTP=1),
    # for a geocoder on this machine or a private network.
    geocoder_allow_http: bool = False
    # An address the geocoder did not find is asked again once its miss is this many days
    # old (0: every time); a position found is kept for good.
    geocode_miss_ttl_days: float = GEOCODE_MISS_TTL_DAYS
    # Per-client limit on the heavy endpoints (coverage), in the limits library's notation
    # ("60/minute", "10/second;300/hour"); empty turns it off. Counted per worker process
    # with the default memory storage; give a redis:// URL to count across processes.
    heavy_rate_limit: str = "60/minute"
    # The same, for every request but the health probes; empty (the default) for none.
    rate_limit: str = ""
    # Where the counts are kept: "memory://" shares them among this server's workers; a
    # redis:// or memcached:// URL among several servers.
    rate_limit_storage: str = "memory://"
    # The seconds of a worker each client may use per second (averaged over 10 s); 0
    # turns the budget off. Unset: SERVER_CLIENT_BUDGET under geosearch serve and the
    # gunicorn config, where clients share the workers; off in-process (the library, an
    # embedded blueprint, a test client), where the caller is the only client.
    client_budget: float | None = None
    # Proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed; none by default.
    trusted_proxies: tuple[str, ...] = ()
    # The scheme://host[:port] clients reach this service at: every absolute link is
    # built from it. Unset, links use the request's Host, which must be one of
    # trusted_hosts (others are answered 400).
    public_url: str | None = None
    trusted_hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
    # Origins whose pages may call the API from a browser (CORS), comma-separated in
    # GEOSEARCH_CORS_ORIGINS ("https://maps.example.com", or "*" for any); none by default.
    cors_origins: tuple[str, ...] = ()
    # "required": every route but the health probes needs a valid API key (any scope;
    # geosearch.keys, kept in database_url); empty (the default): reads are open.
    read_keys: str = ""
    # Per-key limit on writes, in the notation of the rate limits above; empty for none.
    write_rate_limit: str = "20/second;600/minute"
    # Who may read /metrics: addresses or CIDR networks (comma-separated), loopback by
    # default; any other client is answered 403 (docs/operations.md).
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1")
    # 0 turns off /metrics and the per-request metrics (request ids and logs stay).
    metrics: bool = True
    # json or text log lines; empty: json under geosearch serve and the gunicorn config,
    # the host's own logging in-process (geosearch.observe.logs).
    log_format: str = ""

    def __post_init__(self) -> None:
        for name in ("heavy_rate_limit", "rate_limit", "write_rate_limit"):
            _check_rate(name, getattr(self, name))
        if self.client_budget is not None and not 0 <= self.client_budget < math.inf:
            raise ValueError("GEOSEARCH_CLIENT_BUDGET must be a number of seconds >= 0")
        if self.public_url is not None:
            _check_public_url(self.public_url)
        from geosearch.clientid import proxy_networks

        proxy_networks(self.trusted_proxies)
        if self.read_keys not in ("", "required"):
            raise ValueError("GEOSEARCH_READ_KEYS must be empty or 'required'")
        if self.read_keys and not self.database_url:
            raise ValueError("GEOSEARCH_READ_KEYS=required needs GEOSEARCH_DATABASE_URL, "
                             "where the keys are kept")
        if not self.max_lag_s > 0:
            raise ValueError("GEOSEARCH_MAX_LAG_S must be a number of seconds > 0")
        if self.consistency_wait_ms < 0:
            raise ValueError("GEOSEARCH_CONSISTENCY_WAIT_MS must be >= 0")
        if self.statement_timeout_ms <= 0:
            raise ValueError("GEOSEARCH_STATEMENT_TIMEOUT_MS must be > 0")
        if self.database_pooler not in ("", "transaction"):
            raise ValueError("GEOSEARCH_DATABASE_POOLER must be empty or 'transaction'")
        if self.max_body_bytes <= 0:
            raise ValueError("GEOSEARCH_MAX_BODY_BYTES must be > 0")
        if self.geocoder not in ("gazetteer", "nominatim", "photon", "pelias"):
            raise ValueError("GEOSEARCH_GEOCODER must be gazetteer, nominatim, photon or pelias")
        if self.geocoder != "gazetteer":
            check_geocoder_scheme(self.geocoder_scheme, self.geocoder_allow_http)
        if not 0 <= self.geocode_miss_ttl_days < float("inf"):
            raise ValueError("GEOSEARCH_GEOCODE_MISS_TTL_DAYS must be a number of days >= 0")
        proxy_networks(self.metrics_allow, "GEOSEARCH_METRICS_ALLOW")
        if self.log_format not in ("", "json", "text"):
            raise ValueError("GEOSEARCH_LOG_FORMAT must be json or text")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        """Settings from the environment, then ``overrides`` (None values are ignored)."""
        env: Mapping[str, str] = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            raw = env.get(f"GEOSEARCH_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind.startswith("int"):
                values[f.name] = int(raw)
            elif kind.startswith("float"):
                values[f.name] = float(raw)
            elif kind.startswith("bool"):
                values[f.name] = _flag(f"GEOSEARCH_{f.name.upper()}", raw)
            elif kind.startswith("Path"):
                values[f.name] = Path(raw)
            elif kind.startswith("tuple"):
                values[f.name] = tuple(v.strip() for v in raw.split(",") if v.strip())
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)


def check_geocoder_scheme(scheme: str, allow_http: bool) -> None:
    """https, or http when explicitly allowed: over http the addresses of a feed travel in
    clear, and any answer on the way is believed (and cached for good)."""
    if scheme == "https" or (scheme == "http" and allow_http):
        return
    if scheme == "http":
        raise ValueError("GEOSEARCH_GEOCODER_SCHEME=http sends every address in clear and "
                         "believes any answer on the way; set GEOSEARCH_GEOCODER_ALLOW_HTTP=1 "
                         "to allow it (a geocoder on this machine or a private network)")
    raise ValueError("GEOSEARCH_GEOCODER_SCHEME must be https (or http, when allowed)")


def _flag(name: str, raw: str) -> bool:
    """An on/off environment variable: 1/true/yes/on or 0/false/no/off."""
    value = raw.strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"{name} must be 1 or 0")
    return value in ("1", "true", "yes", "on")


def worker_class() -> str:
    """gunicorn's worker class for ``geosearch serve``: ``gevent`` (the default), or
    ``sync`` / ``gthread`` from ``GEOSEARCH_WORKER_CLASS`` (for the benchmark that chose
    between them, docs/benchmarks.md)."""
    kind = os.environ.get("GEOSEARCH_WORKER_CLASS", "") or "gevent"
    if kind not in ("gevent", "sync", "gthread"):
        raise ValueError("GEOSEARCH_WORKER_CLASS must be gevent, sync or gthread")
    return kind
