"""How geosearch reaches PostgreSQL: the facts every connection shares, stated once.

A database URL may be written the SQLAlchemy way (``postgresql+psycopg://``), the libpq
way (``postgresql://``) or the short way (``postgres://``); the loader's engine needs the
first, psycopg the second (:func:`sqlalchemy_url`, :func:`libpq_url`). Every connection
gives up connecting after :data:`CONNECT_TIMEOUT_S`. Serving sessions carry the statement
timeout as a startup option, except behind a transaction-pooling pgbouncer, which refuses
the ``options`` startup parameter: there it is set per transaction
(:func:`session_options`, :data:`SET_PER_TRANSACTION`).
"""

from __future__ import annotations

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geosearch.settings import Settings

CONNECT_TIMEOUT_S = 3
# The one pooler mode geosearch knows (settings.database_pooler): pgbouncer's transaction
# pooling, where a session's settings do not outlive a transaction.
TRANSACTION_POOLER = "transaction"
# Serving statements are short: compiling them (JIT) costs more than it saves.
SESSION_JIT = "off"
# The serving settings of one transaction behind a transaction pooler (the timeout in ms).
SET_PER_TRANSACTION = ("SELECT set_config('statement_timeout', %s, true), "
                       f"set_config('jit', '{SESSION_JIT}', true)")
# Loading and migrating are long by nature: the serving statement timeout does not apply.
NO_TIMEOUT = "SET LOCAL statement_timeout = 0"

_SCHEMES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql://", "postgres://")


def _rest(url: str) -> str | None:
    """The URL after its scheme, when the scheme is one of PostgreSQL's."""
    for scheme in _SCHEMES:
        if url.startswith(scheme):
            return url[len(scheme):]
    return None


def sqlalchemy_url(url: str) -> str:
    """The URL with the psycopg 3 driver named, whatever scheme it was written with."""
    rest = _rest(url)
    return url if rest is None else "postgresql+psycopg://" + rest


def libpq_url(url: str) -> str:
    """The URL as libpq (and so psycopg) reads it."""
    rest = _rest(url)
    return url if rest is None else "postgresql://" + rest


def pooled(settings: Settings) -> bool:
    """Whether the database URL is a transaction-pooling pgbouncer."""
    return settings.database_pooler == TRANSACTION_POOLER


def session_options(settings: Settings, *extra: str) -> str | None:
    """The ``options`` startup parameter of a serving session (the statement timeout,
    JIT off, then ``extra`` settings such as ``plan_cache_mode=...``); None behind a
    transaction pooler, which refuses it."""
    if pooled(settings):
        return None
    return " ".join(f"-c {option}" for option in (
        f"statement_timeout={settings.statement_timeout_ms}", f"jit={SESSION_JIT}", *extra))


def make_engine(settings: Settings) -> Engine:
    """The engine of migrations and loads (the serving path is on psycopg directly):
    pre-ping (loads are rare), the connect timeout and the serving session options (loads
    lift the timeout with :data:`NO_TIMEOUT`)."""
    connect_args: dict = {"connect_timeout": CONNECT_TIMEOUT_S}
    if (options := session_options(settings)) is not None:
        connect_args["options"] = options
    return sa.create_engine(sqlalchemy_url(settings.database_url or ""), pool_pre_ping=True,
                            pool_size=2, max_overflow=2, pool_recycle=1800,
                            connect_args=connect_args)


def connect(engine: Engine) -> psycopg.Connection:
    """A psycopg connection of its own to the engine's database (autocommit:
    transactions are explicit)."""
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
