"""PostGIS as the system of record: schema migrations and the atomic load.

A load COPYs the rows :mod:`geosearch.loadrows` makes (their columns declared in
:mod:`geosearch.layout`) into staging tables, builds their indexes and swaps them in for
the served tables in one transaction (:func:`load`).
"""

from __future__ import annotations

import io
import json
import queue
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from itertools import chain
from pathlib import Path
from typing import Generic, TypeVar

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from geosearch import changes, tiledeltas
from geosearch.database import NO_TIMEOUT, connect, make_engine
from geosearch.layout import LAYOUT
from geosearch.loadrows import load_tables
from geosearch.settings import Settings
from geosearch.tiles import TileIndex

MIGRATIONS = Path(str(files("geosearch").joinpath("migrations")))  # package data
# Index builds of a load sort in memory rather than on disk; per transaction, not for
# the server.
BUILD_MEMORY = "SET LOCAL maintenance_work_mem = '512MB'"
# Rows per Arrow table of spaces and per CSV chunk of a COPY (read when a load starts and
# as it writes: a test or a fault drill may lower it to cut a load into more pieces).
COPY_CHUNK_ROWS = 50_000
COPY_CHUNK_BYTES = 1 << 22
T = TypeVar("T")
# The thread that makes the spaces' rows during a load (:class:`_Ahead`)
ROWS_THREAD = "geosearch-load-rows"


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (creates PostGIS where allowed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        connection.execute(sa.text(NO_TIMEOUT))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_version(engine: Engine) -> str | None:
    """The version of the dataset being served, or None when none was loaded (or when it
    was loaded under another layout than :data:`~geosearch.layout.LAYOUT`: it is loaded
    again)."""
    with engine.begin() as connection:
        connection.execute(sa.text(NO_TIMEOUT))
        return connection.execute(sa.text(
            "SELECT version FROM dataset_state WHERE layout = :layout"),
            {"layout": LAYOUT}).scalar()


class _Ahead(Generic[T]):
    """The items of an iterator, made by a thread of its own up to ``depth`` items ahead
    of the reader: the spaces' rows are built in Python while PostgreSQL copies the rows
    before them (and the tables before them). An error in the thread is raised to the
    reader; :meth:`close` (or leaving the ``with`` block) stops the thread."""

    def __init__(self, items: Iterable[T], depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[bool, object]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._make, args=(iter(items),), daemon=True,
                                        name=ROWS_THREAD)
        self._thread.start()

    def _make(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((True, item)):
                    return
            self._put((False, None))
        except BaseException as exc:  # raised again in the reader
            self._put((False, exc))

    def _put(self, entry: tuple[bool, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            more, item = self._queue.get()
            if not more:
                if isinstance(item, BaseException):
                    raise item
                return
            yield item  # type: ignore[misc] # an item of ``items``

    def close(self) -> None:
        """Stop making items (the thread ends within one item)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> _Ahead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def csv_chunks(tables: Iterable[pa.Table]) -> Iterator[memoryview]:
    """The tables' rows as CSV written by Arrow (nulls unquoted, strings quoted, so that an
    empty string stays one), :data:`COPY_CHUNK_ROWS` rows at a time at most.

    The seam of a load's COPY: every COPY of Arrow tables takes its data from this
    function, looked up here by name as the COPY starts, so that a test or a fault drill
    wraps it to slow, break or stop a load mid-COPY (``scripts/faults.py``)."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    for table in tables:
        for batch in table.to_batches(max_chunksize=COPY_CHUNK_ROWS):
            sink = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([batch]), sink, options)
            yield sink.getbuffer()


def _copy(cur: psycopg.Cursor, tables: Iterable[pa.Table], target: str) -> None:
    """COPY the tables (all of the first one's columns) into ``target``, created in this
    transaction: ``FREEZE`` writes its pages all-visible, so that index-only scans need no
    VACUUM first."""
    rest = iter(tables)
    first = next(rest, None)
    if first is None:
        return
    columns = ", ".join(first.column_names)
    with cur.copy(f"COPY {target} ({columns}) FROM STDIN (FORMAT csv, FREEZE)") as copy:
        for chunk in csv_chunks(chain([first], rest)):
            copy.write(chunk)


_INDEX = re.compile(r"^(CREATE (?:UNIQUE )?INDEX )(\S+)( ON )(\S+)( .*)$")
# Index builds run on this many connections at once (GiST and GIN builds use one core each)
BUILDERS = 2
# pg_advisory_lock key held by a load from its first statement to its last: one at a time
LOAD_LOCK = 4_711_016


def _index_builds(cur: psycopg.Cursor, source: str, target: str
                  ) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """How to give ``target`` every index that ``source`` has, under temporary names: the
    CREATE INDEX statements, the ALTER TABLE that makes the primary key of its index, and
    the (temporary, final) renames."""
    cur.execute("SELECT i.indexname, i.indexdef, c.contype FROM pg_indexes i "
                "LEFT JOIN pg_constraint c ON c.conname = i.indexname AND c.contype = 'p' "
                "WHERE i.schemaname = current_schema() AND i.tablename = %s", (source,))
    builds, keys, renames = [], [], []
    for name, definition, constraint in cur.fetchall():
        temporary = f"{name}_next"
        parts = _INDEX.match(definition)
        if parts is None:
            raise LoadError(f"cannot rebuild index {name} of {source}: {definition}")
        head, _, on, _, rest = parts.groups()
        builds.append(f"{head}{temporary}{on}{target}{rest}")
        if constraint == "p":
            keys.append(f"ALTER TABLE {target} ADD CONSTRAINT {temporary} "
                        f"PRIMARY KEY USING INDEX {temporary}")
        renames.append((temporary, name))
    return builds, keys, renames


def _longest_first(sql: str) -> int:
    """GiST builds take longest, then GIN, then B-tree (started first, they end together)."""
    method = sql.split(" USING ", 1)[1].split(maxsplit=1)[0]
    return {"gist": 0, "gin": 1}.get(method, 2)


class _Builds:
    """Index builds, taken in turn by connections of their own as the load stages tables:
    a table's indexes start building while the next table is copied. A failure stops
    every connection from taking more; :meth:`run` raises it."""

    def __init__(self) -> None:
        self._todo: deque[str] = deque()
        self._more = True
        self._failed = False
        self._ready = threading.Condition()

    def add(self, statements: list[str]) -> None:
        """Queue a table's builds (GiST first: they take longest)."""
        with self._ready:
            self._todo.extend(sorted(statements, key=_longest_first))
            self._ready.notify_all()

    def close(self, failed: bool = False) -> None:
        """No more builds will come (or the load failed: stop)."""
        with self._ready:
            self._more, self._failed = False, self._failed or failed
            self._ready.notify_all()

    def run(self, conn: psycopg.Connection) -> None:
        """Build on ``conn``, each index in a transaction of its own, until the queue is
        closed and empty (or something failed)."""
        while True:
            with self._ready:
                while not self._todo and self._more and not self._failed:
                    self._ready.wait()
                if self._failed or not self._todo:
                    return
                sql = self._todo.popleft()
            try:
                with conn.transaction():
                    conn.execute(NO_TIMEOUT)
                    conn.execute(BUILD_MEMORY)
                    conn.execute(sql)
            except BaseException:
                self.close(failed=True)
                raise


def _stage(conn: psycopg.Connection, name: str, data: Iterable[pa.Table] | bytes) -> None:
    """COPY ``data`` (Arrow tables, or rows of every column in binary COPY format) into
    ``{name}_staging``, a new table like ``name`` without indexes (one left by a load that
    was killed is dropped first)."""
    staging = f"{name}_staging"
    with conn.transaction():
        conn.execute(NO_TIMEOUT)
        conn.execute(f"DROP TABLE IF EXISTS {staging}")
        conn.execute(f"CREATE TABLE {staging} (LIKE {name} INCLUDING DEFAULTS "
                     "INCLUDING CONSTRAINTS)")
        with conn.cursor() as cur:
            if not isinstance(data, bytes):
                _copy(cur, data, staging)
                return
            with cur.copy(f"COPY {staging} FROM STDIN (FORMAT binary, FREEZE)") as copy:
                view = memoryview(data)
                for start in range(0, len(view), COPY_CHUNK_BYTES):
                    copy.write(view[start:start + COPY_CHUNK_BYTES])


def _swap(cur: psycopg.Cursor, name: str, renames: list[tuple[str, str]]) -> None:
    """Replace table ``name`` by its staging table (see :func:`_stage`)."""
    cur.execute(f"DROP TABLE {name}")
    cur.execute(f"ALTER TABLE {name}_staging RENAME TO {name}")
    for temporary, final in renames:
        cur.execute(f"ALTER INDEX {temporary} RENAME TO {final}")


@dataclass
class _Staged:
    """Staging tables filled and indexed, ready to be swapped in: the statements that
    make primary keys of their indexes, each table's index renames (temporary, final),
    and the dataset's tile index (its totals go into ``dataset_state``)."""

    keys: list[str]
    renames: dict[str, list[tuple[str, str]]]
    tiles: TileIndex


def _stage_table(main: psycopg.Connection, builds: _Builds, name: str,
                 data: Iterable[pa.Table] | bytes, staged: _Staged) -> None:
    """Stage one table on ``main`` and queue its index builds."""
    _stage(main, name, data)
    with main.cursor() as cur:
        statements, keys, staged.renames[name] = _index_builds(cur, name, f"{name}_staging")
    builds.add(statements)
    staged.keys += keys


def _stage_indexed(main: psycopg.Connection, helpers: list[psycopg.Connection],
                   tables: dict[str, Iterable[pa.Table] | bytes], staged: _Staged) -> None:
    """Stage every table on ``main``, in order, and build their indexes on the helpers
    as the tables come (and on ``main`` once it has copied them all)."""
    builds = _Builds()
    with ThreadPoolExecutor(max(1, len(helpers))) as pool, ExitStack() as made:
        # rows made as they are read are made ahead, while the tables before copy
        tables = {name: made.enter_context(_Ahead(data)) if isinstance(data, Iterator)
                  else data for name, data in tables.items()}
        building = [pool.submit(builds.run, conn) for conn in helpers]
        try:
            for name, data in tables.items():
                _stage_table(main, builds, name, data, staged)
        except BaseException:
            builds.close(failed=True)
            raise
        builds.close()
        builds.run(main)  # the main connection builds too, once it has copied
        for done in building:
            done.result()


def _stage_all(main: psycopg.Connection, engine: Engine, frame: pd.DataFrame,
               version: str) -> _Staged:
    """The dataset's tables staged and indexed (:func:`_stage_indexed`), with
    :data:`BUILDERS` connections building indexes at once."""
    tables, tiles = load_tables(frame, version, COPY_CHUNK_ROWS)
    staged = _Staged([], {}, tiles)
    helpers: list[psycopg.Connection] = []
    try:
        helpers += (connect(engine) for _ in range(BUILDERS - 1))
        _stage_indexed(main, helpers, tables, staged)
    finally:
        for conn in helpers:
            conn.close()
    return staged


def _swap_in(cur: psycopg.Cursor, staged: _Staged, version: str, feed: str) -> None:
    """Give the staging tables their primary keys, analyse them, swap them in for the
    served tables and record the new dataset (its layout: :data:`LAYOUT`) with its entry
    in the change feed. Writes through the API wait from the feed's seq to the commit:
    none is lost between the tables (each is in the feed, before the dataset entry)."""
    for sql in staged.keys:
        cur.execute(sql)
    for name in staged.renames:
        cur.execute(f"ANALYZE {name}_staging")
    seq = changes.take_seq(cur)  # before the served tables are locked, as writes take it
    for name, renames in staged.renames.items():
        _swap(cur, name, renames)
    tiledeltas.clear(cur)
    tiles = staged.tiles
    cur.execute(
        "INSERT INTO dataset_state (id, version, loaded_at, feed, tile_count, "
        "tile_sum_x, tile_sum_y, layout) VALUES (1, %s, now(), %s, %s, %s, %s, "
        "%s) ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, "
        "loaded_at = EXCLUDED.loaded_at, feed = EXCLUDED.feed, "
        "tile_count = EXCLUDED.tile_count, tile_sum_x = EXCLUDED.tile_sum_x, "
        "tile_sum_y = EXCLUDED.tile_sum_y, layout = EXCLUDED.layout",
        (version, feed, tiles.count, float(tiles.prefix_x[-1]), float(tiles.prefix_y[-1]),
         LAYOUT))
    changes.append(cur, seq, "dataset", changes.INGEST_ACTOR)


def _record_run(cur: psycopg.Cursor, started: datetime, feed: str, version: str,
                outcome: str, report: dict) -> None:
    """Keep the ingest run in ``ingest_runs``: its times, dataset, outcome and report."""
    cur.execute(
        "INSERT INTO ingest_runs (started_at, finished_at, feed, dataset_version, "
        "outcome, report) VALUES (%s, now(), %s, %s, %s, %s)",
        (started, feed, version, outcome,
         json.dumps(report, ensure_ascii=False, default=str)))


def load(frame: pd.DataFrame, meta: dict, engine: Engine, report: dict | None = None) -> bool:
    """Load the spaces of ``frame`` atomically; returns False when the data is unchanged.

    ``meta`` names the dataset (``dataset_version``, ``feed``: the same metadata a
    snapshot keeps); ``report`` (the ingest report, by default ``meta``) is kept in
    ``ingest_runs`` with the outcome.

    The rows are COPYed (CSV from Arrow; the word plane's points in binary) into staging
    tables without indexes, created in the same transaction (``FREEZE``), the spaces'
    rows made by a thread as PostgreSQL copies those before them; a table's
    indexes are built after its data, on :data:`BUILDERS` connections at once, the first
    while the next table is copied (the word plane's GiST index while the spaces are);
    one last transaction analyses them and swaps
    them in for the served tables, and the dataset version changes with it. Readers see
    the old dataset until that commit and the new one after, never half of either; a
    failure or a kill at any point leaves the old dataset in place (and at most staging
    tables, which the next load drops). Loads, migrations included, take turns (an
    advisory lock).
    """
    started = datetime.now(UTC)
    version, feed = str(meta["dataset_version"]), str(meta.get("feed", ""))
    main = connect(engine)
    try:
        main.execute("SELECT pg_advisory_lock(%s)", (LOAD_LOCK,))  # until it disconnects
        migrate(engine)
        unchanged = current_version(engine) == version
        staged = None if unchanged else _stage_all(main, engine, frame, version)
        with main.transaction(), main.cursor() as cur:
            cur.execute(NO_TIMEOUT)
            if staged is not None:
                _swap_in(cur, staged, version, feed)
            _record_run(cur, started, feed, version, "unchanged" if unchanged else "loaded",
                        meta if report is None else report)
    finally:
        main.close()
    return not unchanged


class LoadError(Exception):
    """A load into PostGIS failed; the previous dataset is still being served."""


def load_into_postgis(frame: pd.DataFrame, meta: dict, settings: Settings,
                      report: dict | None = None) -> bool:
    """Load into the database the settings name (``geosearch ingest --database``);
    returns False when the data is unchanged.

    Raises LoadError, with the database's own message, when the load fails.
    """
    engine = make_engine(settings)
    try:
        return load(frame, meta, engine, report)
    except (psycopg.Error, sa.exc.SQLAlchemyError) as exc:
        raise LoadError(str(exc).splitlines()[0]) from exc
    finally:
        engine.dispose()
