"""How a live follower keeps up with the change feed (:class:`Tracker`), in each process.

A thread of the process (a greenlet under gunicorn's gevent workers) waits for the feed's
NOTIFY (:class:`geosearch.changes.Follower`), or a second at most, then reads what was
committed since the seq it has applied (:func:`geosearch.backends.follower_rows.
read_since`: one snapshot) and installs the state that holds it (:func:`catch_up`), with
one assignment: a request reads the state it found to its end, and never waits for the
next one. The state is made where it holds up no request: in a native thread of gevent's
pool under gevent workers (:func:`off_loop`). When the database cannot be reached, the
state stays as it is (searches go on answering from memory) and the thread tries again;
it resumes from its seq, so no change is applied twice or skipped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

from geosearch import changes
from geosearch.backends.follower_rows import read_since
from geosearch.backends.follower_state import Layers
from geosearch.database import CONNECT_TIMEOUT_S

T = TypeVar("T")
# The spaces written since the base beyond which the overlay is folded into a new base
COMPACT_AT = 10_000
# The longest a follower goes without reading the counter (a lost NOTIFY costs this much)
CHECK_S = 1.0
# The pause after each read of the feed (at least; as long as that read and its state took,
# when longer, so that following the feed takes at most about half of a worker's time):
# the writes of that time are applied together
GAP_S = 0.02
# The pause before connecting again after the database failed
RETRY_S = 1.0
APPLICATION_NAME = "geosearch-follower"
log = logging.getLogger(__name__)


def off_loop(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` where it holds up no request: under gevent (threads patched), in a
    native thread of the hub's pool while the calling greenlet waits and the others run;
    else here (the caller is a thread of its own)."""
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)


def _here(fn: Callable[..., T], *args: object) -> T:
    return fn(*args)


def catch_up(conn: psycopg.Connection, layers: Layers | None, compact_at: int,
             run: Callable[..., Layers] = _here) -> Layers | None:
    """The state that holds every change committed beyond ``layers`` (None: nothing new
    or no dataset), its work done by ``run``: the changed spaces applied, the overlay
    folded into a new base past ``compact_at`` spaces; a new dataset, or more changes
    than that, read whole."""
    delta = read_since(conn, None if layers is None else layers.version,
                       0 if layers is None else layers.seq, compact_at)
    if delta is None:
        return None
    if layers is None or delta.reload:
        return run(Layers.of, delta.rows, delta.version, delta.seq)
    new = run(layers.applied, delta.ids, delta.rows, delta.seq)
    return run(new.compacted) if new.written > compact_at else new


class Tracker:
    """The current state of a follower of the database at ``dsn``, kept up with its feed
    by a thread in each process that reads it (started by the first :meth:`current`, or
    as the process is forked: gunicorn's workers, forked from the process that made the
    first state, each follow on their own)."""

    def __init__(self, dsn: str, compact_at: int = COMPACT_AT) -> None:
        self._dsn = dsn
        self._compact_at = compact_at
        self.layers: Layers | None = None
        self.synced_at: float | None = None  # monotonic time the state was last current
        self._feed = changes.Follower(dsn)
        self._pid = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._installed = threading.Condition()
        # a forked process (a server's worker) starts following at once, not at its
        # first request, which would find the state of the fork
        os.register_at_fork(after_in_child=self._start)

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._dsn, autocommit=True, application_name=APPLICATION_NAME,
                               connect_timeout=CONNECT_TIMEOUT_S)

    def sync(self) -> None:
        """Catch up once, here, on a connection of its own (before a server forks; raises
        psycopg's errors)."""
        with self._connect() as conn:
            self._step(conn, _here)

    def _step(self, conn: psycopg.Connection, run: Callable[..., Layers]) -> None:
        new = catch_up(conn, self.layers, self._compact_at, run)
        if new is not None:
            with self._installed:
                self.layers = new
                self._installed.notify_all()
        self.synced_at = time.monotonic()

    def wait_for(self, seq: int, until: float) -> Layers | None:
        """The current state once it has applied ``seq``, or at ``until``
        (``time.monotonic()``) the state as it is then."""
        self.current()
        with self._installed:
            while self.layers is None or self.layers.seq < seq:
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._installed.wait(left)
            return self.layers

    def current(self) -> Layers | None:
        """The state to read now (None before a dataset was loaded); starts this
        process' thread."""
        if self._pid != os.getpid():
            self._start()
        return self.layers

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid() or self._closed.is_set():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._follow, daemon=True, name=APPLICATION_NAME).start()

    def _follow(self) -> None:
        """Catch up, then wait for the next change, until closed; a failure keeps the
        state and tries again on a new connection."""
        conn: psycopg.Connection | None = None
        while not self._closed.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                began = time.monotonic()
                self._step(conn, off_loop)
                took = time.monotonic() - began
            except Exception as exc:  # the thread goes on: logged, tried again
                log.warning("follower: %s; the state of seq %s serves, trying again", exc,
                            None if self.layers is None else self.layers.seq,
                            exc_info=not isinstance(exc, psycopg.Error))
                if conn is not None:
                    conn.close()
                conn = None
                self._closed.wait(RETRY_S)
                continue
            self._closed.wait(max(GAP_S, took))
            self._feed.wait_beyond(0 if self.layers is None else self.layers.seq, CHECK_S)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Stop following (within :data:`CHECK_S`); the state stays readable."""
        self._closed.set()
        self._feed.close()
