"""Prepared statements run on libpq through psycopg's ``pq`` layer: the serving path.

A search is one statement of a few known shapes, run thousands of times a second. A
psycopg cursor does, for each, work that such a server needs once: it builds a cursor,
parses the query, looks its prepared name up in a manager that counts uses, and waits
for the answer through a generic loop. Here a pooled :class:`ServingConnection` keeps
the statements it has prepared on the server (by SQL text and parameter types) and
:func:`run` sends one straight to libpq, adapting values and rows with psycopg's own
``Transformer`` (the same dumpers and loaders as a cursor, the connection's registered
loaders included), for a fraction of the client CPU that ``cursor.execute(...,
prepare=True)`` spends per statement (docs/benchmarks.md).

Waiting under gevent: psycopg then waits through gevent's ``poll``, a switch to the hub
and back for every statement. When the server says that its worker serves this one
connection alone (:func:`alone_when`, called by :mod:`geosearch.serving`), no other greenlet
could use the wait: :func:`run` then first waits up to ``SPIN_MS`` on the real ``poll``,
keeping the worker (the statements of a search answer well within it), and only enters
the hub for slower ones. A worker with more connections waits through the hub at once,
so that one connection's statement overlaps the others' requests.
"""

from __future__ import annotations

import itertools
import re
import select
import sys
from collections.abc import Callable, Sequence
from functools import lru_cache

import psycopg
from psycopg import errors, generators, pq, waiting
from psycopg.abc import Buffer
from psycopg.adapt import PyFormat, Transformer

# The statements a connection keeps prepared; more shapes than this run unprepared.
MAX_STATEMENTS = 256
# How long a statement is awaited without yielding to gevent's hub (milliseconds).
SPIN_MS = 5
# How often a wait wakes up to check the connection (seconds), as psycopg's own.
WAIT_INTERVAL_S = 0.1
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%|%")
# Whether the process serves one connection alone (set by the server: :func:`alone_when`).
_alone: Callable[[], bool] | None = None
# A prepared statement gone from the session, or one whose result type a schema change
# altered: prepared again once.
_STALE = {"26000", "0A000"}


class ServingConnection(psycopg.Connection):
    """A pooled connection that remembers the statements it prepared on the server."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.statements: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.names = itertools.count()
        self.transformer = Transformer(self)


@lru_cache(maxsize=512)
def positional(sql: str) -> tuple[bytes, tuple[str, ...]]:
    """``sql`` with its ``%(name)s`` placeholders as ``$1, $2...`` (a name used twice is
    one parameter) and ``%%`` as ``%``; the names in parameter order.

    >>> positional("SELECT %(a)s + %(b)s * %(a)s, 5 %% 2")
    (b'SELECT $1 + $2 * $1, 5 % 2', ('a', 'b'))
    """
    names: dict[str, int] = {}

    def number(match: re.Match) -> str:
        name = match.group(1)
        if name is None:
            if match.group(0) == "%%":
                return "%"
            raise ValueError(f"only %(name)s placeholders are supported: {sql[:80]!r}")
        return f"${names.setdefault(name, len(names) + 1)}"

    return _PLACEHOLDER.sub(number, sql).encode(), tuple(names)


def alone_when(check: Callable[[], bool]) -> None:
    """Tell the driver how to know that this process serves one connection alone (a
    gevent worker's count of its connections is one): statements are then awaited
    without yielding to the hub for up to ``SPIN_MS``."""
    global _alone
    _alone = check


@lru_cache(maxsize=1)
def _native_poll() -> Callable[[], select.poll] | None:
    """The operating system's ``select.poll`` when gevent has patched ``select``."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("select"):
        return None
    return monkey.get_original("select", "poll")


def _result(conn: ServingConnection, expect: pq.ExecStatus) -> pq.abc.PGresult:
    """The result of the statement just sent; its error raised as psycopg's class."""
    pgconn = conn.pgconn
    spin = _native_poll()
    if spin is not None and _alone is not None and _alone() and pgconn.flush() == 0:
        poller = spin()
        poller.register(pgconn.socket, select.POLLIN)
        if poller.poll(SPIN_MS):
            # Read what arrived: libpq is busy until its input is consumed, and the wait
            # below would then go through the hub once more for a result already here.
            pgconn.consume_input()
    results = waiting.wait(generators.execute(pgconn), pgconn.socket,
                           interval=WAIT_INTERVAL_S)
    result = results[-1]
    if result.status != expect:
        raise errors.error_from_result(result, encoding=conn.info.encoding)
    return result


def _send(conn: ServingConnection, query: bytes, values: Sequence[Buffer | None],
          formats: Sequence[pq.Format], types: tuple[int, ...]) -> None:
    """Send ``query``: as the prepared statement of its shape (prepared first if new)."""
    pgconn = conn.pgconn
    key = (query, types)
    name = conn.statements.get(key)
    if name is None and len(conn.statements) < MAX_STATEMENTS:
        name = f"gs_{next(conn.names)}".encode()
        pgconn.send_prepare(name, query, types)
        _result(conn, pq.ExecStatus.COMMAND_OK)
        conn.statements[key] = name
    if name is None:
        pgconn.send_query_params(query, values, types, formats)
    else:
        pgconn.send_query_prepared(name, values, formats)


def _forget(conn: ServingConnection, key: tuple[bytes, tuple[int, ...]], exists: bool
            ) -> None:
    """Forget a prepared statement (``exists``: deallocate it on the server too)."""
    name = conn.statements.pop(key)
    if exists:
        conn.pgconn.send_query_params(b"DEALLOCATE " + name, None)
        _result(conn, pq.ExecStatus.COMMAND_OK)


def run(conn: ServingConnection, sql: str, params: dict) -> list[tuple]:
    """The rows (tuples) of ``sql`` with its ``%(name)s`` parameters from ``params``, as a
    prepared statement of ``conn``. Raises psycopg's errors, as a cursor would.

    A statement the session no longer holds (``DISCARD ALL``), or whose result type a
    schema change altered, is prepared again, once.
    """
    query, names = positional(sql)
    tx = conn.transformer
    values = tx.dump_sequence([params[n] for n in names], [PyFormat.AUTO] * len(names))
    formats, types = tx.formats or (), tx.types or ()
    key = (query, types)
    for attempt in (1, 2):
        _send(conn, query, values, formats, types)
        try:
            result = _result(conn, pq.ExecStatus.TUPLES_OK)
            break
        except psycopg.Error as exc:
            if attempt == 2 or exc.sqlstate not in _STALE or key not in conn.statements:
                raise
            _forget(conn, key, exists=exc.sqlstate != "26000")
    tx.set_pgresult(result)
    return tx.load_rows(0, result.ntuples, tuple)
