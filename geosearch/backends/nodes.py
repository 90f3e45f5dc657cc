"""The PostgreSQL nodes a ``PostgisBackend`` reads from, which of them a read goes to, and
what it does when one fails.

The nodes are the primary and its hot-standby replicas (streaming replication), each
with connection pools of its own per process, opened after gunicorn forks (their
sessions: :mod:`.sessions`). Reads go to the replicas in rotation, spread across them in
turn, and to the primary when no replica is in rotation. Writes (ingest, migrations, the
live writes) never come here: they use the primary's URL.

No round trip checks a connection before use: a broken one fails its statement, is
discarded, and the statement runs once more on a fresh connection of the same node
(:meth:`Nodes.run_on_node`). A node that cannot answer even so is taken out of rotation
at once and the read moves on to the next one (:meth:`Nodes.read`); a background watcher
(one per process) tries to connect to it every ``RETRY_S`` and puts it back in rotation
as soon as it answers, so no request waits on a node that is away. A statement timeout
is the statement's failure, not the node's.

Freshness: a search statement reads the change feed's seq of its own snapshot beside its
rows (:func:`.statements.versioned`), and :meth:`Nodes.read_stamped` notes it for the
response (:mod:`.readscope`). A request with a consistency token is answered only by a
node that has applied the token's seq: a replica whose snapshot is older is not yet, and
the read goes to the next replica, then waits for one to catch up (polling the seq it has
replayed, up to ``consistency_wait_s`` from the request's start), then reads the
primary, which has applied every change. The watcher also measures each replica's lag
every ``RETRY_S``: one whose oldest change not yet applied was committed more than
``max_lag_s`` ago leaves the rotation until it is back within that.
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

from geosearch.backends import readscope
from geosearch.backends.base import BackendUnavailable, NoDataset, StaleVersion
from geosearch.backends.prepared import ServingConnection
from geosearch.backends.readscope import ReadScope
from geosearch.backends.sessions import Sessions
from geosearch.backends.statements import APPLIED_SEQ_SQL, CHANGE_AGES_SQL, versioned_page
from geosearch.database import CONNECT_TIMEOUT_S, libpq_url
from geosearch.observe.pool import MeteredPool
from geosearch.settings import Settings

POOL_WAIT_S = 3.0
# After a connection broke, how long a query waits for a fresh one before it gives the
# node up (a restarted server reconnects at once; a stopped one never does).
RECONNECT_WAIT_S = 0.5
RETRY_S = 1.0
# A read waiting for a replica to apply a token's seq asks it again after this pause,
# doubled each time up to POLL_MAX_S.
POLL_S = 0.002
POLL_MAX_S = 0.05
Rows = list[tuple]
Stamp = tuple[str, int]  # a dataset version and a seq of the change feed


@dataclass(eq=False)  # a node is itself: compared and hashed by identity
class Node:
    """One PostgreSQL server: its URL, role, pools (opened per process) and health."""

    dsn: str
    role: str  # "primary" or "replica"
    size: int
    sessions: Sessions
    down_since: float | None = None
    lagging: bool = False  # a replica too far behind the primary (the watcher's verdict)
    _pools: dict[bool, ConnectionPool[ServingConnection]] = field(default_factory=dict)
    _pid: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def healthy(self) -> bool:
        """Not seen failing since it last answered."""
        return self.down_since is None

    @property
    def in_rotation(self) -> bool:
        """Healthy and not too far behind: reads go to it."""
        return self.down_since is None and not self.lagging

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


@dataclass
class _Asked:
    """What the nodes a read asked so far said: the last failure, whether one answered
    from another dataset version than the one asked for, and those whose snapshot had
    not yet applied the seq the read needs."""

    failure: Exception | None = None
    rejected: bool = False
    behind: list[Node] = field(default_factory=list)


class Nodes:
    """The primary and the replicas: which one a read goes to, what it does when that
    one fails or is behind, and the watcher that puts nodes back in rotation."""

    def __init__(self, primary: Node, replicas: list[Node], consistency_wait_s: float = 0.5,
                 max_lag_s: float = 30.0) -> None:
        self.primary = primary
        self.replicas = replicas
        self.consistency_wait_s = consistency_wait_s
        self.max_lag_s = max_lag_s
        self._turn = itertools.count()
        self._watcher: threading.Thread | None = None
        self._watcher_pid = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, primary_url: str) -> Nodes:
        """The primary at ``primary_url`` and the replicas of ``settings.replica_urls``,
        each with pools of ``settings.pool_size`` serving sessions."""
        sessions = Sessions(settings)

        def node(url: str, role: str) -> Node:
            return Node(libpq_url(url), role, settings.pool_size, sessions)

        return cls(node(primary_url, "primary"),
                   [node(url, "replica") for url in settings.replica_urls],
                   settings.consistency_wait_ms / 1000, settings.max_lag_s)

    def all(self) -> list[Node]:
        """Every node, the primary first."""
        return [self.primary, *self.replicas]

    # -- reads --------------------------------------------------------------------------

    def read(self, sql: str, params: dict, generic: bool = False,
             accept: Callable[[Rows], bool] | None = None) -> Rows:
        """A statement's rows from the first node, in read order, that answers (and whose
        rows ``accept`` takes: StaleVersion when none does); a node that cannot answer is
        taken out of rotation and the next one asked. ``generic``: see
        :meth:`run_on_node`. Raises BackendUnavailable when no node answers."""
        return self._read(sql, params, generic, accept, 0, 0.0)

    def read_stamped(self, sql: str, params: dict, generic: bool = False,
                     version: str | None = None) -> tuple[Stamp, Rows]:
        """The stamp (dataset version, seq) and the rows of a statement whose rows start
        with both (:func:`.statements.versioned`), the seq taken out of them: rows of the
        version and the statement's own columns. Read as :meth:`read` does, from a node
        that serves ``version`` when one is given (StaleVersion when none does).

        In a request's scope (:mod:`.readscope`) the stamp is noted for its response, and
        a ``min_seq`` is honoured: a replica whose snapshot is older is not yet; the other
        replicas are asked, then the read waits for one to catch up (until
        ``consistency_wait_s`` after the request's start), then the primary answers. None
        of the nodes in rotation having caught up and the primary being away is
        BackendUnavailable. NoDataset when no dataset is loaded."""
        scope = readscope.current()
        need = 0 if scope is None else scope.min_seq
        deadline = 0.0 if scope is None else scope.started + self.consistency_wait_s

        def serves(rows: Rows) -> bool:
            return bool(rows) and rows[0][0] == version

        rows = self._read(sql, params, generic, None if version is None else serves, need,
                          deadline)
        return self._stamped(rows, scope)

    def read_at_version(self, sql: str, params: dict, version: str | None = None
                        ) -> tuple[str, Rows]:
        """The dataset version and the page of a :func:`.statements.versioned` statement
        (:func:`.statements.versioned_page`), read as :meth:`read_stamped` does."""
        _, rows = self.read_stamped(sql, params, version=version)
        return versioned_page(rows)

    def read_on_primary(self, sql: str, params: dict) -> tuple[str, Rows]:
        """As :meth:`read_at_version`, on the primary (which has applied every change)."""
        _, rows = self._stamped(self.run_on_node(self.primary, sql, params),
                                readscope.current())
        return versioned_page(rows)

    @staticmethod
    def _stamped(rows: Rows, scope: ReadScope | None) -> tuple[Stamp, Rows]:
        """The stamp of a stamped statement's rows (noted in ``scope``) and the rows
        without their seq."""
        if not rows:
            raise NoDataset("no dataset was loaded into this database")
        version, seq, *_ = rows[0]
        stamp = (str(version), int(seq))
        if scope is not None:
            scope.note(*stamp)
        return stamp, [(row[0], *row[2:]) for row in rows]

    def _read(self, sql: str, params: dict, generic: bool,
              accept: Callable[[Rows], bool] | None, need: int, deadline: float) -> Rows:
        """A statement's rows from the nodes in read order (:meth:`read`); with ``need``
        (a seq, in the statement's second column), from a replica that has applied it,
        one awaited until ``deadline``, else from the primary."""
        asked = _Asked()
        order = self._read_order()
        # with a seq to meet, the primary (which has applied every change) comes last,
        # after the wait for a replica
        last = [n for n in order if need and n is self.primary]
        for node in order:
            if node not in last and (rows := self._ask(node, sql, params, generic, accept,
                                                       need, asked)) is not None:
                return rows
        caught_up = self._caught_up(asked.behind, need, deadline) if asked.behind else None
        if caught_up is not None and (rows := self._ask(caught_up, sql, params, generic,
                                                        accept, need, asked)) is not None:
            return rows
        for node in last:
            if (rows := self._ask(node, sql, params, generic, accept, 0, asked)) is not None:
                return rows
        if asked.failure is not None:
            raise asked.failure
        if asked.rejected:
            raise StaleVersion("no node serves the dataset version asked for")
        if asked.behind:
            raise BackendUnavailable("no node in rotation has applied the change asked for")
        raise BackendUnavailable("no node answers")

    def _ask(self, node: Node, sql: str, params: dict, generic: bool,
             accept: Callable[[Rows], bool] | None, need: int, asked: _Asked) -> Rows | None:
        """The rows of ``node`` when it answers, has applied ``need`` and ``accept`` takes
        them; else None, with what it said in ``asked`` (a node that cannot answer is
        taken out of rotation; a timeout is the statement's own failure)."""
        try:
            rows = self.run_on_node(node, sql, params, generic)
        except BackendUnavailable as exc:
            if "timeout" not in str(exc):
                self._mark_down(node)
            asked.failure = exc
            return None
        if need and rows and rows[0][1] < need:
            asked.behind.append(node)
            return None
        if accept is None or accept(rows):
            return rows
        asked.rejected = True
        return None

    def _caught_up(self, nodes: list[Node], need: int, deadline: float) -> Node | None:
        """The first of ``nodes`` found to have applied ``need``, asked after POLL_S, then
        after pauses twice as long (up to POLL_MAX_S), until ``deadline``; None when none
        has by then."""
        pause = POLL_S
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(pause, left))
            for node in nodes:
                seq = self._applied(node)
                if seq is not None and seq >= need:
                    return node
            pause = min(2 * pause, POLL_MAX_S)
        return None

    def _applied(self, node: Node) -> int | None:
        """The seq ``node`` has applied; None when it cannot tell now."""
        try:
            [(seq,)] = self.run_on_node(node, APPLIED_SEQ_SQL, {})
        except (BackendUnavailable, NoDataset):
            return None
        return int(seq)

    @staticmethod
    def run_on_node(node: Node, sql: str, params: dict, generic: bool = False) -> Rows:
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
        """Replicas in rotation in turn (round robin), then the primary; every node when
        none is in rotation (the last resort, so that a query still gets its own
        answer)."""
        if self.replicas and self._watcher_pid != os.getpid():
            self._watch()
        turn = next(self._turn) % max(1, len(self.replicas))
        replicas = self.replicas[turn:] + self.replicas[:turn]
        order = [n for n in [*replicas, self.primary] if n.in_rotation]
        return order or self.all()

    # -- lag ----------------------------------------------------------------------------

    def seconds_behind(self, seqs: list[int], latest: int) -> list[float | None]:
        """For each seq a replica has applied, how long ago (seconds) the first change it
        lacks was committed on the primary, whose last seq is ``latest``: 0 when it lacks
        none, None when the primary cannot tell."""
        missing = sorted({seq + 1 for seq in seqs if seq < latest})
        ages: dict[int, float] = {}
        if missing:
            ages = {int(seq): float(age) for seq, age in
                    self.run_on_node(self.primary, CHANGE_AGES_SQL, {"seqs": missing})}
        return [0.0 if seq >= latest else ages.get(seq + 1) for seq in seqs]

    def _measure_lag(self) -> None:
        """Take the healthy replicas too far behind the primary out of the rotation, and
        put back those within ``max_lag_s`` again (nothing changes while the primary
        cannot tell)."""
        latest = self._applied(self.primary)
        replicas = [(n, seq) for n in self.replicas if n.healthy
                    and (seq := self._applied(n)) is not None]
        if latest is None or not replicas:
            return
        try:
            behind = self.seconds_behind([seq for _, seq in replicas], latest)
        except (BackendUnavailable, NoDataset):
            return
        for (node, _), seconds in zip(replicas, behind, strict=True):
            if seconds is not None:
                node.lagging = seconds > self.max_lag_s

    # -- the watcher --------------------------------------------------------------------

    def _mark_down(self, node: Node) -> None:
        """Take a node out of rotation until the watcher finds it answering."""
        if node.down_since is None:
            node.down_since = time.monotonic()
        self._watch()

    def _watch(self) -> None:
        """Start this process' watcher unless it runs (a forked process starts its own)."""
        with self._lock:
            if self._watcher is not None and self._watcher.is_alive() and \
                    self._watcher_pid == os.getpid():
                return
            self._stop = threading.Event()
            self._watcher = threading.Thread(target=self._watching, args=(self._stop,),
                                             name="geosearch-nodes", daemon=True)
            self._watcher_pid = os.getpid()
            self._watcher.start()

    def _watching(self, stop: threading.Event) -> None:
        """Every RETRY_S, until ``stop``: put back in rotation the nodes that answer again,
        then measure the replicas' lag. Without replicas, it ends once every node
        answers (a failure starts it again)."""
        pid = os.getpid()
        while not stop.is_set() and os.getpid() == pid:
            for node in self.all():
                if not node.healthy and node.answers():
                    node.close()  # its pooled connections died with the server
                    node.down_since = None
            if self.replicas:
                self._measure_lag()
            elif all(n.healthy for n in self.all()):
                return
            stop.wait(RETRY_S)

    def close(self) -> None:
        """Stop the watcher and close every pool of this process."""
        self._stop.set()
        self._watcher_pid = 0
        for node in self.all():
            node.close()
