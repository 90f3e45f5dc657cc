"""Typed settings, read from ``GEOSEARCH_*`` environment variables and checked together."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

DEFAULT_SNAPSHOT = Path("var/snapshot")


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
    statement_timeout_ms: int = 5_000
    pool_size: int = 5
    # "transaction" when the database URL is a transaction-pooling pgbouncer: no prepared
    # statements, the statement timeout set per transaction (docs/deploy.md).
    database_pooler: str = ""
    max_body_bytes: int = 1024 * 1024
    tile_url: str | None = None
    geocoder: str = "gazetteer"
    geocoder_domain: str | None = None
    geocoder_scheme: str = "https"
    geocoder_delay_s: float = 1.0
    geocode_cache: Path = Path("var/geocode-cache.sqlite")
    # Per-client limit on the heavy endpoints (coverage), in the limits library's notation
    # ("60/minute", "10/second;300/hour"); empty turns it off. Counted per worker process
    # with the default memory storage; give a redis:// URL to count across processes.
    heavy_rate_limit: str = "60/minute"
    rate_limit_storage: str = "memory://"
    # Origins whose pages may call the API from a browser (CORS), comma-separated in
    # GEOSEARCH_CORS_ORIGINS ("https://maps.example.com", or "*" for any); none by default.
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.heavy_rate_limit:
            from limits import parse_many

            try:
                parse_many(self.heavy_rate_limit)
            except ValueError:
                raise ValueError("GEOSEARCH_HEAVY_RATE_LIMIT must read like '60/minute' "
                                 "(or be empty for no limit)") from None
        if self.statement_timeout_ms <= 0:
            raise ValueError("GEOSEARCH_STATEMENT_TIMEOUT_MS must be > 0")
        if self.database_pooler not in ("", "transaction"):
            raise ValueError("GEOSEARCH_DATABASE_POOLER must be empty or 'transaction'")
        if self.max_body_bytes <= 0:
            raise ValueError("GEOSEARCH_MAX_BODY_BYTES must be > 0")
        if self.geocoder not in ("gazetteer", "nominatim", "photon", "pelias"):
            raise ValueError("GEOSEARCH_GEOCODER must be gazetteer, nominatim, photon or pelias")
        if self.geocoder != "gazetteer" and self.geocoder_scheme not in ("http", "https"):
            raise ValueError("GEOSEARCH_GEOCODER_SCHEME must be http or https")

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
            elif kind.startswith("Path"):
                values[f.name] = Path(raw)
            elif kind.startswith("tuple"):
                values[f.name] = tuple(v.strip() for v in raw.split(",") if v.strip())
            else:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)


def worker_class() -> str:
    """gunicorn's worker class for ``geosearch serve``: ``gevent`` (the default), or
    ``sync`` / ``gthread`` from ``GEOSEARCH_WORKER_CLASS`` (for the benchmark that chose
    between them, docs/benchmarks.md)."""
    kind = os.environ.get("GEOSEARCH_WORKER_CLASS", "") or "gevent"
    if kind not in ("gevent", "sync", "gthread"):
        raise ValueError("GEOSEARCH_WORKER_CLASS must be gevent, sync or gthread")
    return kind
