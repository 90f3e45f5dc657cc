"""The PostgreSQL nodes a ``PostgisBackend`` reads from, which of them a read goes to, and
what it does when one fails.

The nodes are the primary and its hot-standby replicas (streaming replication), each
with connection pools of its own per process, opened after gunicorn forks (their
sessions: :mod:`.sessions`). Reads go to the healthy replicas, spread across them in
turn, and to the primary when no replica is healthy. Writes (ingest, migrations) never
come here: they use the primary's URL.

No round trip checks a connection before use: a broken one fails its statement, is
discarded, and the statement runs once more on a fresh connection of the same node
(:meth:`Nodes.run_on_node`). A node that cannot answer even so is taken out of rotation
at once and the read moves on to the next one (:meth:`Nodes.read`); a background prober
(one per process) tries to connect to it every ``RETRY_S`` and puts it back in rotation
as soon as it answers, so no request waits on a node that is away. A statement timeout
is the statement's failure, not the node's.
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
from psycopg_pool import ConnectionPool, PoolTimeout

from geosearch.backends.base import BackendUnavailable, NoDataset, StaleVersion
from geosearch.backends.prepared import ServingConnection
from geosearch.backends.sessions import Sessions
from geosearch.backends.statements import versioned_page
from geosearch.database import CONNECT_TIMEOUT_S, libpq_url
from geosearch.observe.pool import MeteredPool
from geosearch.settings import Settings

POOL_WAIT_S = 3.0
# After a connection broke, how long a query waits for a fresh one before it gives the
# node up (a restarted server reconnects at once; a stopped one never does).
RECONNECT_WAIT_S = 0.5
RETRY_S = 1.0


@dataclass
class Node:
    """One PostgreSQL server: its URL, role, pools (opened per process) and health."""

    dsn: str
    role: str  # "primary" or "replica"
    size: int
    sessions: Sessions
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
            with psycopg.connect(self.dsn, connect_timeout=CONNECT_TIMEOUT_S,
                                 autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def pool(self, generic: bool = False) -> ConnectionPool[ServingConnection]:
        """This process' pool (a process forked from another opens its own); ``generic``:
        the pool of generic plans, when the sessions have one."""
        generic_kwargs = self.sessions.generic_kwargs
        generic = generic and generic_kwargs is not None
        if self._pid != os.getpid() or generic not in self._pools:
            with self._lock:
                if self._pid != os.getpid():
                    self._pools, self._pid = {}, os.getpid()
                if generic not in self._pools:
                    self._pools[generic] = MeteredPool(
                        self.dsn, node=self.role, connection_class=ServingConnection, min_size=1,
                        max_size=self.size,
                        kwargs=generic_kwargs if generic else self.sessions.kwargs,
                        configure=self.sessions.configure, open=True, timeout=POOL_WAIT_S,
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
    """The primary and the replicas: which one a read goes to, and what it does when
    that one fails."""

    def __init__(self, primary: Node, replicas: list[Node]) -> None:
        self.primary = primary
        self.replicas = replicas
        self._turn = itertools.count()
        self._prober: threading.Thread | None = None
        self._prober_pid = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, primary_url: str) -> Nodes:
        """The primary at ``primary_url`` and the replicas of ``settings.replica_urls``,
        each with pools of ``settings.pool_size`` serving sessions."""
        sessions = Sessions(settings)

        def node(url: str, role: str) -> Node:
            return Node(libpq_url(url), role, settings.pool_size, sessions)

        return cls(node(primary_url, "primary"),
                   [node(url, "replica") for url in settings.replica_urls])

    def all(self) -> list[Node]:
        """Every node, the primary first."""
        return [self.primary, *self.replicas]

    def read(self, sql: str, params: dict, generic: bool = False,
             accept: Callable[[list[tuple]], bool] | None = None) -> list[tuple]:
        """A statement's rows from the first node, in read order, that answers (and whose
        rows ``accept`` takes: StaleVersion when none does); a node that cannot answer is
        taken out of rotation and the next one asked. ``generic``: see
        :meth:`run_on_node`. Raises BackendUnavailable when no node answers."""
        failure: Exception | None = None
        for node in self._read_order():
            try:
                rows = self.run_on_node(node, sql, params, generic)
            except BackendUnavailable as exc:
                if "timeout" not in str(exc):
                    self._mark_down(node)
                failure = exc
                continue
            if accept is None or accept(rows):
                return rows
        if accept is not None and failure is None:
            raise StaleVersion("no node serves the dataset version asked for")
        raise failure or BackendUnavailable("no node answers")

    def read_at_version(self, sql: str, params: dict, version: str | None = None
                        ) -> tuple[str, list[tuple]]:
        """The dataset version and the page of a statement whose rows start with the
        version (:func:`.statements.versioned_page`), read as :meth:`read` does, from a
        node that serves ``version`` when one is given. NoDataset when no dataset is
        loaded."""

        def serves(rows: list[tuple]) -> bool:
            if not rows:
                return False
            found, _ = versioned_page(rows)
            return found == version

        rows = self.read(sql, params, accept=None if version is None else serves)
        if not rows:
            raise NoDataset("no dataset was loaded into this database")
        return versioned_page(rows)

    @staticmethod
    def run_on_node(node: Node, sql: str, params: dict, generic: bool = False
                    ) -> list[tuple]:
        """A statement's rows on one node (``generic``: on a session of generic plans); a
        connection that turns out broken is replaced once, waiting at most
        RECONNECT_WAIT_S for a fresh one. Raises BackendUnavailable when the node cannot
        answer or the statement times out, NoDataset when the schema is missing."""
        for attempt in (1, 2):
            try:
                wait = None if attempt == 1 else RECONNECT_WAIT_S
                with node.connection(wait, generic) as conn:
                    return node.sessions.statement_rows(conn, sql, params)
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
                raise NoDataset("the schema is missing or older than this release: run "
                                "geosearch ingest --database") from exc
            except psycopg.errors.QueryCanceled as exc:
                raise BackendUnavailable("statement timeout") from exc
            except PoolTimeout as exc:
                raise BackendUnavailable("no database connection") from exc
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise BackendUnavailable(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def _read_order(self) -> list[Node]:
        """Healthy replicas in turn (round robin), then the primary; every node when none
        is healthy (the last resort, so that a query still gets its own answer)."""
        turn = next(self._turn) % max(1, len(self.replicas))
        replicas = self.replicas[turn:] + self.replicas[:turn]
        order = [n for n in [*replicas, self.primary] if n.healthy]
        return order or self.all()

    def _mark_down(self, node: Node) -> None:
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
