"""The serving sessions of the PostGIS backend's nodes: how one is opened, and how it
runs one statement.

A session reads a stored feature (``json``) as its head's bytes, unparsed
(:mod:`geosearch.features`), and runs each statement as a prepared statement of its own
through :mod:`.prepared`, rows as plain tuples. Behind pgbouncer in transaction mode
(``database_pooler="transaction"``), prepared statements are off (pgbouncer 1.18 cannot
keep them) and each statement runs in a transaction of its own that sets the statement
timeout and ``jit`` (:data:`geosearch.database.SET_PER_TRANSACTION`: pgbouncer refuses
the ``options`` startup parameter that carries them elsewhere).
"""

from __future__ import annotations

from psycopg.adapt import Loader

from geosearch.backends import prepared
from geosearch.backends.prepared import ServingConnection
from geosearch.database import CONNECT_TIMEOUT_S, SET_PER_TRANSACTION, pooled, session_options
from geosearch.settings import Settings


class _FeatureHead(Loader):
    """Loads a stored feature (``json``) as its head's bytes, unparsed
    (:mod:`geosearch.features`: the feature without its two closing braces)."""

    def load(self, data: bytes | bytearray | memoryview) -> bytes:
        return bytes(data[:-2])


class Sessions:
    """The serving sessions of every node: their connection arguments (and those of the
    sessions that plan each prepared statement once, generically), their set-up, and how
    one of them runs a statement."""

    def __init__(self, settings: Settings) -> None:
        self.pooled = pooled(settings)
        self._timeout_ms = str(int(settings.statement_timeout_ms))
        self.kwargs: dict = {"connect_timeout": CONNECT_TIMEOUT_S,
                             "autocommit": not self.pooled,
                             "options": session_options(settings)}
        # Prepared statements whose custom plans cost more to make than to run (the word
        # plane's) run on sessions that plan them once, generically; not behind a
        # transaction pooler, where none is prepared.
        self.generic_kwargs: dict | None = None if self.pooled else {
            **self.kwargs,
            "options": session_options(settings, "plan_cache_mode=force_generic_plan")}

    def configure(self, conn: ServingConnection) -> None:
        """Set up a new pooled connection: features load as their heads; behind a
        transaction pooler, psycopg prepares nothing."""
        conn.adapters.register_loader("json", _FeatureHead)
        if self.pooled:
            conn.prepare_threshold = None

    def statement_rows(self, conn: ServingConnection, sql: str, params: dict
                       ) -> list[tuple]:
        """The rows (tuples) of one statement on ``conn``: prepared on the session, or,
        behind a transaction pooler, in a transaction of its own that sets the statement
        timeout. Raises psycopg's errors."""
        if not self.pooled:
            return prepared.run(conn, sql, params)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(SET_PER_TRANSACTION, (self._timeout_ms,))
            cur.execute(sql, params)
            return cur.fetchall()
