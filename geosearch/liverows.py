"""One space's rows for a write: made by the load's rules, written by SQL of one space.

:func:`space_row` makes the ``spaces`` row of a checked record with
:func:`geosearch.loadrows.space_values`, the single-space side of the code that makes a
load's rows, so a written space has the columns, the feature bytes and the words that a
loaded one would have (tests/test_liverows.py holds them equal over a whole feed). The
rest of this module writes it: INSERT or UPDATE of the row (each value cast to its
column's type as :mod:`geosearch.layout` declares it), and the word plane kept exact for
the space (``search_words``: how many active spaces have each word, 0 for a word written
out of the dataset; ``word_points``: a point per active space and tiled word), each
statement touching the space's own rows and words, never the dataset's.

The tiles' side of a write (a ghost, the deltas, a written rank) is
:mod:`geosearch.tiledeltas`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg

from geosearch.backends.statements import ORIGIN
from geosearch.ingest.dedupe import NEAR_M, find_duplicates
from geosearch.ingest.pipeline import field_value
from geosearch.ingest.records import Record
from geosearch.layout import SPACES
from geosearch.loadrows import RANKED, space_values
from geosearch.model import SPACE_FIELDS
from geosearch.wordplane import plane_x

_TYPES = {c.name: c.sql for c in SPACES}
# A written space has a written rank (geosearch.tiledeltas) and none of the load's tile
# sums (RANKED) until the next load
TILE_COLUMNS = ("tile_key", "tile_x", "tile_y", *RANKED)
# Columns a write keeps as the space has them: its id, its place in the word plane, its
# feed row and its dataset
KEPT = ("id", "place", "feed_row", "dataset_version")
# Half the side of the box that finds a point of the plane again: its coordinates are the
# doubles written, exact to far less than this at any tile's x
_POINT_PAD = 1e-6


@dataclass(frozen=True)
class Placed:
    """An active space's words and position, as the word plane holds them."""

    words: list[str]
    lon: float
    lat: float


@dataclass(frozen=True)
class SpaceRow:
    """A space's ``spaces`` row (column -> value, as a load COPYs it) and its words."""

    values: dict[str, object]
    words: list[str]

    @property
    def feature(self) -> bytes:
        """The space's Feature as it will be served (JSON)."""
        return str(self.values["feature"]).encode()

    @property
    def version(self) -> str:
        """The version of the dataset it was made in."""
        return str(self.values["dataset_version"])

    @property
    def placed(self) -> Placed:
        """Its words and position."""
        return Placed(self.words, float(self.values["lon"]),  # type: ignore[arg-type]
                      float(self.values["lat"]))  # type: ignore[arg-type]


def space_row(record: Record, version: str) -> SpaceRow:
    """The row in dataset ``version`` of a checked, located active space (its H3 cells
    made), by the load's rules; no tile rank or sums, no place."""
    values, words = space_values({name: field_value(record, name) for name in SPACE_FIELDS},
                                 record.row, version)
    return SpaceRow(values, words)


def _casts(columns: Iterable[str]) -> Iterator[str]:
    return (f"%({name})s::{_TYPES[name]}" for name in columns)


def insert(cur: psycopg.Cursor, row: SpaceRow, place: int, rank: int | None, seq: int
           ) -> None:
    """INSERT the row as a new space with this place, its written tile rank, feed row 0
    (none) and the seq of its write."""
    values = {**row.values, "place": place, "feed_row": 0, "tile_rank": rank,
              "changed_seq": seq}
    columns = list(values)
    cur.execute(f"INSERT INTO spaces ({', '.join(columns)}) "
                f"VALUES ({', '.join(_casts(columns))})", values)


def update(cur: psycopg.Cursor, row: SpaceRow, seq: int, moved: bool,
           rank: int | None = None) -> int:
    """UPDATE the space to ``row`` by the write of ``seq`` (its :data:`KEPT` columns
    kept; its tile columns when it has not ``moved``, else its written tile ``rank``), a
    revision up; the new revision."""
    columns = [c for c in row.values if c not in KEPT and (moved or c not in TILE_COLUMNS)]
    sql = (f"UPDATE spaces SET ({', '.join(columns)}) = ({', '.join(_casts(columns))}), "
           "revision = revision + 1, updated_at = clock_timestamp(), changed_seq = %(seq)s "
           "WHERE id = %(id)s RETURNING revision")
    found = cur.execute(sql, {**row.values, "tile_rank": rank, "seq": seq}).fetchone()
    assert found is not None  # the caller holds the row's lock
    return int(found[0])


def close(cur: psycopg.Cursor, space_id: str, seq: int) -> int:
    """Close the space by the write of ``seq`` (inactive: it leaves every read, the tiles
    too, which take a space with a rank for an active one), a revision up; the new one."""
    unranked = ", ".join(f"{name} = NULL" for name in RANKED)
    found = cur.execute(f"UPDATE spaces SET status = 'inactive', {unranked}, "
                        "revision = revision + 1, updated_at = clock_timestamp(), "
                        "changed_seq = %s WHERE id = %s RETURNING revision",
                        (seq, space_id)).fetchone()
    assert found is not None  # the caller holds the row's lock
    return int(found[0])


def next_place(cur: psycopg.Cursor) -> int:
    """The place of a new space (one after the last: the writes take turns)."""
    found = cur.execute("SELECT coalesce(max(place), -1) + 1 FROM spaces").fetchone()
    return int(found[0]) if found else 0


def _put_points(cur: psycopg.Cursor, place: int, tiles: list[int], lon: float,
                lat: float) -> None:
    """The space's point in each of the word tiles."""
    cur.execute("INSERT INTO word_points (pt, place) SELECT point(x, %(lat)s), %(place)s "
                "FROM unnest(%(xs)s::float8[]) x",
                {"xs": [plane_x(t, lon) for t in tiles], "lat": lat, "place": place})


def _drop_points(cur: psycopg.Cursor, place: int, tiles: list[int], lon: float,
                 lat: float) -> None:
    """The space's points out of the word tiles (found by the index, as the plane's
    queries find them)."""
    cur.execute("DELETE FROM word_points p USING unnest(%(xs)s::float8[]) x "
                "WHERE p.pt <@ box(point(x - %(pad)s, %(lat)s - %(pad)s), "
                "point(x + %(pad)s, %(lat)s + %(pad)s)) AND p.place = %(place)s",
                {"xs": [plane_x(t, lon) for t in tiles], "lat": lat, "place": place,
                 "pad": _POINT_PAD})


def _tiled(rows: list[tuple]) -> list[int]:
    return [tile for (tile,) in rows if tile is not None]


def _count_in(cur: psycopg.Cursor, words: list[str]) -> list[int]:
    """Count one more active space in each word (a word new to the dataset gets the next
    tile); the words' tiles."""
    return _tiled(cur.execute(
        "INSERT INTO search_words (word, spaces, tile) SELECT w, 1, "
        "(SELECT coalesce(max(tile), -1) FROM search_words) + n "
        "FROM unnest(%(words)s::text[]) WITH ORDINALITY u(w, n) "
        "ON CONFLICT (word) DO UPDATE SET spaces = search_words.spaces + 1 RETURNING tile",
        {"words": words}).fetchall())


def _count_out(cur: psycopg.Cursor, words: list[str]) -> list[int]:
    """Count one active space less in each word; the words' tiles. A word no active space
    has any more stays, at 0, with its tile: a tile is never given to another word, and
    the word gets it back if a space takes it again."""
    return _tiled(cur.execute("UPDATE search_words SET spaces = spaces - 1 "
                              "WHERE word = ANY(%(words)s::text[]) RETURNING tile",
                              {"words": words}).fetchall())


def _tiles_of(cur: psycopg.Cursor, words: list[str]) -> list[int]:
    return _tiled(cur.execute("SELECT tile FROM search_words WHERE word = ANY(%(words)s::text[])",
                              {"words": words}).fetchall())


def reword(cur: psycopg.Cursor, place: int, before: Placed | None, after: Placed | None
           ) -> None:
    """Keep the word plane exact for a space whose words and position were ``before``
    and are ``after`` (None: not active then). Only what changed is written: a word the
    space keeps keeps its count and its tile (a process's copy of the tiles stays right),
    its point moves with the space."""
    old = set(before.words) if before else set()
    new = set(after.words) if after else set()
    if before is not None and (gone := sorted(old - new)):
        _drop_points(cur, place, _count_out(cur, gone), before.lon, before.lat)
    if after is not None and (came := sorted(new - old)):
        _put_points(cur, place, _count_in(cur, came), after.lon, after.lat)
    kept = sorted(old & new)
    if before is not None and after is not None and kept and (
            before.lon, before.lat) != (after.lon, after.lat):
        tiles = _tiles_of(cur, kept)
        _drop_points(cur, place, tiles, before.lon, before.lat)
        _put_points(cur, place, tiles, after.lon, after.lat)


def duplicate_of(cur: psycopg.Cursor, new: Record) -> str | None:
    """The id of an active space that the checked record repeats, by the ingest's
    duplicate rule (:func:`geosearch.ingest.dedupe.find_duplicates`), or None."""
    rows = cur.execute(
        "SELECT id, name, address, country, lat, lon, geocode_precision FROM spaces "
        f"WHERE status = 'active' AND country = %(country)s AND ST_DWithin(geog, {ORIGIN}, "
        "%(near)s)", {"country": new.country, "lon": new.lon, "lat": new.lat,
                      "near": NEAR_M + 1.0}).fetchall()
    for space_id, name, address, country, lat, lon, precision in sorted(rows):
        known = Record(row=0, raw={}, id=space_id, name=name, address=address,
                       country=country, lat=lat, lon=lon, geocode_precision=precision)
        if find_duplicates([known, new]):
            return str(space_id)
    return None
