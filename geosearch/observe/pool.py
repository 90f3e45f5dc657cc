"""The database pools, metered: how long each statement waited for a connection, and
how many connections are taken now (summed over the workers), per node.

psycopg_pool's own ``get_stats()`` counts per pool and per process, as totals: the
waits' spread and the workers' sum are not in it, so :class:`MeteredPool` measures at
the pool's door instead, for a few microseconds per statement.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, TypeVar

from psycopg import Connection
from psycopg_pool import ConnectionPool

from geosearch.observe.metrics import POOL_IN_USE, POOL_MAX, POOL_WAIT

Conn = TypeVar("Conn", bound=Connection[Any])


class MeteredPool(ConnectionPool[Conn]):
    """A ``ConnectionPool`` that reports its waits and its connections in use under
    the label ``node`` (the pool's role: primary, replica...)."""

    def __init__(self, *args, node: str, **kwargs) -> None:
        self._wait = POOL_WAIT.labels(node)
        self._in_use = POOL_IN_USE.labels(node)
        super().__init__(*args, **kwargs)
        POOL_MAX.labels(node).inc(self.max_size)
        self._capacity = POOL_MAX.labels(node)

    def getconn(self, timeout: float | None = None) -> Conn:
        """A connection, its wait recorded (a wait that timed out too)."""
        started = perf_counter()
        try:
            conn = super().getconn(timeout)
        finally:
            self._wait.observe(perf_counter() - started)
        self._in_use.inc()
        return conn

    def putconn(self, conn: Conn) -> None:
        """Give a connection back."""
        self._in_use.dec()
        super().putconn(conn)

    def close(self, timeout: float = 5.0) -> None:
        """Close the pool; its capacity no longer counts."""
        if not self.closed:
            self._capacity.dec(self.max_size)
        super().close(timeout)
