"""The PostgreSQL nodes a ``PostgisBackend`` reads from: the primary and its hot-standby
replicas (streaming replication), each with a connection pool of its own per process.

Reads go to the healthy replicas, spread across them in turn, and to the primary when no
replica is healthy. A node whose query fails for want of a connection is taken out of
rotation at once; a background prober (one per process) tries to connect to it every
``RETRY_S`` and puts it back in rotation as soon as it answers, so no request waits on a
node that is away. Writes (ingest, migrations) never come here: they use the primary's
URL.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import ConnectionPool

from geosearch.backends.prepared import ServingConnection
from geosearch.database import CONNECT_TIMEOUT_S

POOL_WAIT_S = 3.0
# After a connection broke, how long a query waits for a fresh one before it gives the
# node up (a restarted server reconnects at once; a stopped one never does).
RECONNECT_WAIT_S = 0.5
RETRY_S = 1.0


@dataclass
class Node:
    """One PostgreSQL server: its URL, role, pool (opened per process) and health."""

    dsn: str
    role: str  # "primary" or "replica"
    size: int
    kwargs: dict
    configure: Callable[[ServingConnection], None]
    # the connection arguments of the pool whose sessions plan each prepared statement
    # once, generically (None: no such pool; its statements use the other one)
    generic_kwargs: dict | None = None
    down_since: float | None = None
    _pools: dict[bool, ConnectionPool[ServingConnection]] = field(default_factory=dict)
    _pid: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def healthy(self) -> bool:
        """Not seen failing since it last answered."""
        return self.down_since is None

    def answers(self) -> bool:
        """Whether a new connection to this node answers a query now."""
        try:
            with psycopg.connect(self.dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def pool(self, generic: bool = False) -> ConnectionPool[ServingConnection]:
        """This process' pool (a process forked from another opens its own); ``generic``:
        the pool of generic plans, when the node has one."""
        generic = generic and self.generic_kwargs is not None
        if self._pid != os.getpid() or generic not in self._pools:
            with self._lock:
                if self._pid != os.getpid():
                    self._pools, self._pid = {}, os.getpid()
                if generic not in self._pools:
                    self._pools[generic] = ConnectionPool(
                        self.dsn, connection_class=ServingConnection, min_size=1,
                        max_size=self.size,
                        kwargs=self.generic_kwargs if generic else self.kwargs,
                        configure=self.configure, open=True, timeout=POOL_WAIT_S,
                        name=f"geosearch-{self.role}{'-generic' if generic else ''}")
        return self._pools[generic]

    def connection(self, timeout: float | None = None, generic: bool = False
                   ) -> AbstractContextManager[ServingConnection]:
        """A connection of this node's pool (of generic plans: see :meth:`pool`), waiting
        at most ``timeout`` seconds, as a context manager."""
        return self.pool(generic).connection(timeout=timeout)

    def close(self) -> None:
        """Close this process' pools."""
        if self._pid == os.getpid():
            for pool in self._pools.values():
                pool.close()
        self._pools = {}


class Nodes:
    """The primary and the replicas, in the order a read should try them."""

    def __init__(self, primary: Node, replicas: list[Node]) -> None:
        self.primary = primary
        self.replicas = replicas
        self._turn = itertools.count()
        self._prober: threading.Thread | None = None
        self._prober_pid = 0
        self._lock = threading.Lock()

    def all(self) -> list[Node]:
        """Every node, the primary first."""
        return [self.primary, *self.replicas]

    def for_read(self) -> list[Node]:
        """Healthy replicas in turn (round robin), then the primary; every node when none
        is healthy (the last resort, so that a query still gets its own answer)."""
        turn = next(self._turn) % max(1, len(self.replicas))
        replicas = self.replicas[turn:] + self.replicas[:turn]
        order = [n for n in [*replicas, self.primary] if n.healthy]
        return order or self.all()

    def mark_down(self, node: Node) -> None:
        """Take a node out of rotation until the prober finds it answering."""
        if node.down_since is None:
            node.down_since = time.monotonic()
        with self._lock:
            if self._prober is None or not self._prober.is_alive() or \
                    self._prober_pid != os.getpid():
                self._prober = threading.Thread(target=self._probe, name="geosearch-prober",
                                                daemon=True)
                self._prober_pid = os.getpid()
                self._prober.start()

    def _probe(self) -> None:
        while True:
            down = [n for n in self.all() if not n.healthy]
            if not down:
                return
            for node in down:
                if node.answers():
                    node.close()  # its pooled connections died with the server
                    node.down_since = None
            time.sleep(RETRY_S)

    def close(self) -> None:
        """Close every pool of this process."""
        for node in self.all():
            node.close()
