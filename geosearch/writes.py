"""Writes to PostGIS one space at a time: create, replace, patch (RFC 7396) and close.

Each write is checked by the ingest's own stages (:mod:`geosearch.livespace`) and its row
made (:func:`geosearch.liverows.space_row`) before it takes its turn, against the space
and the dataset version it read; then it runs as one transaction (:class:`LiveStore`): it
takes the change feed's next seq (:func:`geosearch.changes.take_seq`: the writers, and
the swap of a load, take turns from there to their commit), checks that the dataset and
the space (its row locked) are still those the write was made against (else it is made
again), writes the row and the word plane (:mod:`geosearch.liverows`) and appends the
feed's entry, which NOTIFYs the followers at the commit. A write that fails leaves
nothing: not its row, not its seq. A write's commit is durable whatever the server's
default (``synchronous_commit`` on for the transaction): a write answered 2xx survives a
crash of the server.

Preconditions are the HTTP layer's ``If-Match``: a replace, patch or close names the
revisions it was made against (:class:`IfMatch`); a space at another revision is
:class:`Stale` with the one it has.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from geosearch import changes, liverows, tiledeltas
from geosearch.backends.base import BackendUnavailable, NoDataset
from geosearch.backends.postgis import PostgisBackend
from geosearch.backends.statements import versioned
from geosearch.database import CONNECT_TIMEOUT_S, session_options
from geosearch.features import CLOSE
from geosearch.ingest.geocode import GazetteerGeocoder, Geocoder
from geosearch.livespace import Invalid, document, merge_patch, read_draft, space_record

# How often a write whose space or dataset changed while it was made is made again
RETRIES = 5
POOL_SIZE = 4
POOL_WAIT_S = 5.0
# Rows (versioned: with the dataset version and seq of what answered): the feature (its
# head, as the serving sessions load it) and revision of an active space
_REVISED_SQL = versioned("SELECT feature, revision FROM spaces WHERE id = %(id)s "
                         "AND status = 'active'", "v.version")
_CURRENT_SQL = ("SELECT feature::text, revision, lon, lat, geocode_precision, place, "
                "tsvector_to_array(search), status = 'active', "
                "(SELECT version FROM dataset_state) FROM spaces WHERE id = %s")
# synchronous_commit on for this transaction alone (as SET LOCAL: a pooler in transaction
# mode passes it on, unlike a connection's options) where the session has it off; any
# setting that waits for the local flush already (local, on, remote_*) is kept
_DURABLE_SQL = ("SELECT set_config('synchronous_commit', 'on', true) "
                "WHERE current_setting('synchronous_commit') = 'off'")


class NotFound(Exception):  # noqa: N818 - a verdict, answered 404
    """No active space has the id."""


class Stale(Exception):  # noqa: N818 - a verdict, answered 412
    """The space is at another revision than the write's precondition names."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"the space is at revision {revision}")
        self.revision = revision


class Conflict(Exception):  # noqa: N818 - a verdict, answered 409
    """A create whose id is taken, or whose space repeats an active one (``existing``)."""

    def __init__(self, existing: str, reason: str) -> None:
        super().__init__(reason)
        self.existing = existing
        self.reason = reason


class _Moved(Exception):  # noqa: N818
    """The space, or the dataset, changed between the check of a write and its turn:
    check it again."""


@dataclass(frozen=True)
class IfMatch:
    """A write's precondition: the space is at one of ``revisions``, or exists at all
    (``any``, ``If-Match: *``)."""

    revisions: frozenset[int] = frozenset()
    any: bool = False

    def holds(self, revision: int) -> bool:
        """Whether a space at ``revision`` meets it."""
        return self.any or revision in self.revisions


@dataclass(frozen=True)
class Written:
    """What a write left: the space's id, its revision, its Feature as served (JSON
    bytes; the last one for a close) and the change feed's seq of the write."""

    id: str
    revision: int
    feature: bytes
    seq: int


@dataclass(frozen=True)
class _Current:
    """A space as it is now: what a write is checked against and what it replaces, and
    the version of the dataset it was read in."""

    feature: bytes
    revision: int
    lon: float
    lat: float
    precision: str
    place: int
    words: list[str]
    active: bool
    version: str

    @property
    def placed(self) -> liverows.Placed:
        """Its words and position in the word plane."""
        return liverows.Placed(self.words, self.lon, self.lat)


def new_id() -> str:
    """An id for a space created without one."""
    return f"sp-{secrets.token_hex(10)}"


def _dataset_version(cur: psycopg.Cursor) -> str:
    """The version of the loaded dataset (NoDataset before the first load)."""
    found = cur.execute("SELECT version FROM dataset_state").fetchone()
    if found is None:
        raise NoDataset("no dataset is loaded")
    return str(found[0])


class LiveStore:
    """The writes and the change feed of a PostGIS backend's database (its primary), on a
    small pool of its own per process; a space and its revision are read on the backend's
    own sessions of the primary. ``geocoder`` places a space sent without a position
    (default: the offline gazetteer, as an ingest does)."""

    def __init__(self, backend: PostgisBackend, geocoder: Geocoder | None = None) -> None:
        settings = backend.settings
        self._cluster = backend.cluster
        self._dsn = backend.dsn
        self._kwargs = {"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True,
                        "options": session_options(settings)}
        self._pool: ConnectionPool | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self.gazetteer = GazetteerGeocoder()
        self.geocoder = geocoder or self.gazetteer
        self.follower = changes.Follower(self._dsn)

    # -- connections --------------------------------------------------------------------

    def _connections(self) -> ConnectionPool:
        """This process' pool (a forked process opens its own)."""
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ConnectionPool(self._dsn, min_size=1, max_size=POOL_SIZE,
                                            kwargs=self._kwargs, timeout=POOL_WAIT_S,
                                            name="geosearch-writes", open=True)
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection]:
        """A connection of the pool; a database that cannot be reached is
        BackendUnavailable."""
        try:
            with self._connections().connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise BackendUnavailable(str(exc)) from exc

    @contextmanager
    def _turn(self, conn: psycopg.Connection) -> Iterator[tuple[psycopg.Cursor, int]]:
        """A write's transaction on ``conn``, from its seq to its commit: the cursor and
        the seq. Its commit waits for its WAL to be flushed even where the server's
        default does not (:data:`_DURABLE_SQL`), so that no acknowledged write is lost
        to a crash."""
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(_DURABLE_SQL)
            yield cur, changes.take_seq(cur)

    def _retried(self, attempt: Callable[[psycopg.Connection], Written],
                 exhausted: Callable[[psycopg.Connection], Exception]) -> Written:
        """``attempt`` on a connection of the pool, again while it is _Moved (a few
        times, then the ``exhausted`` error)."""
        with self._session() as conn:
            for _ in range(RETRIES):
                try:
                    return attempt(conn)
                except _Moved:
                    continue
            raise exhausted(conn)

    def close(self) -> None:
        """Close this process' pool and stop following the feed."""
        self.follower.close()
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None

    # -- reads --------------------------------------------------------------------------

    def get(self, space_id: str) -> tuple[bytes, int] | None:
        """The Feature (JSON bytes) and revision of the active space, from the primary
        (the revision a write's precondition is compared with)."""
        _, page = self._cluster.read_on_primary(_REVISED_SQL, {"id": space_id})
        return next(((head + CLOSE, int(revision)) for _, head, revision in page), None)

    def _current(self, cur: psycopg.Cursor, space_id: str, lock: bool = False
                 ) -> _Current | None:
        row = cur.execute(_CURRENT_SQL + (" FOR UPDATE" if lock else ""),
                          (space_id,)).fetchone()
        if row is None:
            return None
        feature, revision, lon, lat, precision, place, words, active, version = row
        return _Current(feature.encode(), int(revision), lon, lat, precision, place,
                        list(words or ()), active, str(version))

    def _checked(self, conn: psycopg.Connection, space_id: str, if_match: IfMatch
                 ) -> _Current:
        """The active space as it is now, meeting the precondition (NotFound, Stale)."""
        with conn.cursor() as cur:
            current = self._current(cur, space_id)
        if current is None or not current.active:
            raise NotFound(space_id)
        if not if_match.holds(current.revision):
            raise Stale(current.revision)
        return current

    def feed(self, since: int, limit: int, wait_s: float) -> list[changes.Entry]:
        """The feed's entries after ``since`` (at most ``limit``); when there is none,
        waiting up to ``wait_s`` seconds for the next commit (woken by its NOTIFY)."""
        with self._session() as conn:
            found = changes.read(conn, since, limit)
        if found or wait_s <= 0 or not self.follower.wait_beyond(since, wait_s):
            return found
        with self._session() as conn:
            return changes.read(conn, since, limit)

    # -- writes -------------------------------------------------------------------------

    def create(self, doc: object, actor: str) -> Written:
        """Create the space of a body (its id, or a new one): Invalid, Conflict when the
        id is taken or the space repeats an active one."""
        draft = read_draft(doc)
        space_id = draft.id or new_id()
        record = space_record(draft, space_id, self.geocoder, self.gazetteer)

        def write(conn: psycopg.Connection) -> Written:
            with conn.cursor() as cur:
                row = liverows.space_row(record, _dataset_version(cur))
            with self._turn(conn) as (cur, seq):
                if _dataset_version(cur) != row.version:
                    raise _Moved
                if cur.execute("SELECT 1 FROM spaces WHERE id = %s", (space_id,)).fetchone():
                    raise Conflict(space_id, f"a space with the id {space_id!r} exists")
                if (existing := liverows.duplicate_of(cur, record)) is not None:
                    raise Conflict(existing, f"the same space as {existing} (same name, "
                                   "within 150 m), which is active")
                place = liverows.next_place(cur)
                liverows.insert(cur, row, place, tiledeltas.arrive(cur, row.values, seq), seq)
                liverows.reword(cur, place, None, row.placed)
                changes.append(cur, seq, "create", actor, space_id, 1, None, row.feature)
            return Written(space_id, 1, row.feature, seq)

        return self._retried(write, lambda _: BackendUnavailable(
            "the dataset was replaced while the space was written: try again"))

    def replace(self, space_id: str, doc: object, if_match: IfMatch, actor: str) -> Written:
        """Replace the space by a body (NotFound, Stale, Invalid)."""
        return self._rewrite(space_id, if_match, actor, "replace", lambda _: doc)

    def patch(self, space_id: str, patch: object, if_match: IfMatch, actor: str) -> Written:
        """Apply a JSON Merge Patch to the space's writable document (NotFound, Stale,
        Invalid: the pointers are into the patched document)."""
        return self._rewrite(space_id, if_match, actor, "update",
                             lambda current: merge_patch(document(orjson.loads(
                                 current.feature)), patch))

    def _rewrite(self, space_id: str, if_match: IfMatch, actor: str, op: str,
                 new_doc: Callable[[_Current], object]) -> Written:
        """Check the new document against the space as it is and make its row, then
        write it over the space in its turn."""
        def write(conn: psycopg.Connection, seen: _Current) -> Written:
            draft = read_draft(new_doc(seen))
            if draft.id is not None and draft.id != space_id:
                raise Invalid([("/id", f"the id cannot change (it is {space_id!r})")])
            record = space_record(draft, space_id, self.geocoder, self.gazetteer,
                                  (seen.lon, seen.lat, seen.precision))
            row = liverows.space_row(record, seen.version)
            with self._turn(conn) as (cur, seq):
                current = self._locked(cur, space_id, seen)
                before, after = current.placed, row.placed
                if moved := (after.lon, after.lat) != (before.lon, before.lat):
                    tiledeltas.leave(cur, space_id, seq)
                revision = liverows.update(cur, row, seq, moved, tiledeltas.arrive(
                    cur, row.values, seq) if moved else None)
                liverows.reword(cur, current.place, before, after)
                changes.append(cur, seq, op, actor, space_id, revision, current.revision,
                               row.feature)
            return Written(space_id, revision, row.feature, seq)

        return self._as_checked(space_id, if_match, write)

    def close_space(self, space_id: str, if_match: IfMatch, actor: str) -> Written:
        """Close the space: it leaves every read; its row and its history stay (NotFound,
        Stale)."""
        def write(conn: psycopg.Connection, seen: _Current) -> Written:
            with self._turn(conn) as (cur, seq):
                current = self._locked(cur, space_id, seen)
                tiledeltas.leave(cur, space_id, seq)
                revision = liverows.close(cur, space_id, seq)
                liverows.reword(cur, current.place, current.placed, None)
                changes.append(cur, seq, "close", actor, space_id, revision,
                               current.revision, current.feature)
            return Written(space_id, revision, current.feature, seq)

        return self._as_checked(space_id, if_match, write)

    def _as_checked(self, space_id: str, if_match: IfMatch,
                    write: Callable[[psycopg.Connection, _Current], Written]) -> Written:
        """``write`` against the space as it is now (meeting ``if_match``); again when the
        space or the dataset changed between that check and the write's turn (a few
        times, then Stale)."""
        return self._retried(
            lambda conn: write(conn, self._checked(conn, space_id, if_match)),
            lambda conn: Stale(self._checked(conn, space_id, IfMatch(any=True)).revision))

    def _locked(self, cur: psycopg.Cursor, space_id: str, seen: _Current) -> _Current:
        """The space's row locked, still at the revision and in the dataset ``seen`` was
        read at (else _Moved, or NotFound when it is gone)."""
        current = self._current(cur, space_id, lock=True)
        if current is None or not current.active:
            raise NotFound(space_id)
        if (current.revision, current.version) != (seen.revision, seen.version):
            raise _Moved
        return current
