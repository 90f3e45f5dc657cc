"""The change feed: every committed change to the spaces, in commit order, and the wake-up
of the followers that wait for the next one.

A change takes its ``seq`` from the one row of ``change_counter`` (:func:`take_seq`) in the
transaction that makes the change, and appends its entry (:func:`append`) in that same
transaction. The counter's row lock is held to the commit, so a writer takes seq n + 1
only once the one holding n has committed (or rolled back, giving n back): the entries
are numbered without a gap in the order readers see them commit. Each entry NOTIFYs
:data:`CHANNEL` with its seq, delivered at the commit.

A process follows the feed on one connection of its own (:class:`Follower`): the requests
that wait for a change newer than theirs sleep until it hears of one, with no polling; a
notification lost while that connection was away is made good by reading the counter
when it reconnects.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import orjson
import psycopg

from geosearch.database import CONNECT_TIMEOUT_S

CHANNEL = "geosearch_changes"
LISTENER = "geosearch-changes"  # the application_name of a process' listening connection
# ``GET /v1/changes``: at most this many entries per answer, and this long a wait
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_WAIT_S = 30
# The largest seq a request may name (JSON numbers stay exact up to here)
MAX_SEQ = 2**53 - 1
# Who made a dataset entry: an ingest, not an API key
INGEST_ACTOR = "ingest"
# The follower's pause before it connects again after losing its connection
RECONNECT_S = 1.0
# How often the listener looks whether it was closed while no notification came
CLOSE_CHECK_S = 5.0
log = logging.getLogger(__name__)

_APPEND_SQL = (
    "INSERT INTO changes (seq, op, id, revision, previous_revision, at, actor, "
    "dataset_version, space) SELECT %(seq)s, %(op)s, %(id)s, %(revision)s, %(previous)s, "
    "clock_timestamp(), %(actor)s, version, %(space)s::jsonb FROM dataset_state")
_READ_SQL = ("SELECT seq, op, id, revision, previous_revision, at, actor, dataset_version, "
             "space::text FROM changes WHERE seq > %(since)s ORDER BY seq LIMIT %(limit)s")


def take_seq(cur: psycopg.Cursor) -> int:
    """The next seq, its row locked until this transaction ends: take it first in a
    transaction that changes spaces, so that every writer waits here, in turn."""
    row = cur.execute("UPDATE change_counter SET seq = seq + 1 RETURNING seq").fetchone()
    if row is None:
        raise RuntimeError("change_counter has no row: the schema was not migrated")
    return int(row[0])


def append(cur: psycopg.Cursor, seq: int, op: str, actor: str, space_id: str | None = None,
           revision: int | None = None, previous: int | None = None,
           space: bytes | None = None) -> None:
    """Append the entry of ``seq`` (from :func:`take_seq` in this transaction), with the
    dataset version of ``dataset_state`` as it stands in this transaction, and notify the
    followers at the commit. ``space``: the space's Feature (JSON bytes) as it now is."""
    cur.execute(_APPEND_SQL, {
        "seq": seq, "op": op, "id": space_id, "revision": revision, "previous": previous,
        "actor": actor, "space": None if space is None else space.decode()})
    if cur.rowcount != 1:
        raise RuntimeError("no dataset_state row: a change needs a loaded dataset")
    cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seq)))


@dataclass(frozen=True)
class Entry:
    """One entry of the feed; ``space`` is its Feature as JSON text (none for a dataset
    entry)."""

    seq: int
    op: str
    id: str | None
    revision: int | None
    previous_revision: int | None
    at: datetime
    actor: str
    dataset_version: str
    space: str | None

    def json(self) -> bytes:
        """The entry as the API writes it (``space`` spliced in as it is stored)."""
        head = orjson.dumps({
            "seq": self.seq, "op": self.op, "id": self.id, "revision": self.revision,
            "previous_revision": self.previous_revision,
            "at": self.at.isoformat(timespec="microseconds"), "actor": self.actor,
            "dataset_version": self.dataset_version})
        return head[:-1] + b',"space":' + (self.space or "null").encode() + b"}"


def read(conn: psycopg.Connection, since: int, limit: int) -> list[Entry]:
    """The entries after ``since``, at most ``limit`` of them, in seq order."""
    rows = conn.execute(_READ_SQL, {"since": since, "limit": limit}).fetchall()
    return [Entry(*row) for row in rows]


def latest(conn: psycopg.Connection) -> int:
    """The seq of the last committed entry (0 before any)."""
    row = conn.execute("SELECT seq FROM change_counter").fetchone()
    return 0 if row is None else int(row[0])


class Follower:
    """Follows the feed for one process: a thread (a greenlet under gevent) LISTENs on a
    connection of its own, started at the first wait, and wakes the waiters as each
    notification comes."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._latest = 0
        self._changed = threading.Condition()
        self._pid = 0
        self._closed = threading.Event()

    def wait_beyond(self, seq: int, timeout_s: float) -> bool:
        """Wait until a change after ``seq`` is committed, at most ``timeout_s`` seconds;
        whether one was."""
        self._start()
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._latest <= seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _start(self) -> None:
        """Start this process' listener (a forked process starts its own)."""
        with self._changed:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._listen, daemon=True, name="geosearch-changes").start()

    def _advance(self, seq: int) -> None:
        with self._changed:
            if seq > self._latest:
                self._latest = seq
                self._changed.notify_all()

    def close(self) -> None:
        """Stop listening (within :data:`CLOSE_CHECK_S`); waiters wait out their time."""
        self._closed.set()

    def _listen(self) -> None:
        """LISTEN until closed, connecting again after a failure; on each connection, the
        counter is read once LISTEN is in place (what was committed while no connection
        listened)."""
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, application_name=LISTENER,
                                     connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._advance(latest(conn))
                    while not self._closed.is_set():
                        # the timeout only lets the loop see close(): nothing is read
                        for note in conn.notifies(timeout=CLOSE_CHECK_S):
                            if note.payload.isdigit():  # not ours: another NOTIFY
                                self._advance(int(note.payload))
            except psycopg.Error as exc:
                log.warning("change feed listener: %s; connecting again", exc)
            self._closed.wait(RECONNECT_S)
