"""The rows geosearch keeps, declared once: the tables a load writes and their columns.

The ``spaces`` table holds a space's fields (:class:`geosearch.model.Space`: each field's
SQL type follows from its Python type, NULL allowed where the field is optional), the
feed's row number, then what is derived from them: the serving columns that
:mod:`geosearch.features` derives once per dataset (a snapshot carries them too) and the
columns the loader makes (positions as PostGIS types, the dataset version, the vector tile
columns, the words as a ``tsvector``, the place number that ``word_points`` rows name), and
the columns that writes keep (a space's revision, the time and the feed's seq of its last
write).

From the declaration follow the loader's COPY columns (:data:`LOAD_COLUMNS`), the derived
serving columns (:data:`DERIVED_COLUMNS`), what a backend reads of a snapshot
(:data:`SNAPSHOT_COLUMNS`) and the layout check a load stores in
``dataset_state.layout`` (:data:`LAYOUT`). The migrations create the tables; a test checks
that a migrated database has exactly the declared columns, so that a change here comes
with its migration.
"""

from __future__ import annotations

import zlib
from dataclasses import Field, dataclass, fields

from geosearch.model import Space


@dataclass(frozen=True)
class Column:
    """A table's column: its name, its SQL type as PostgreSQL writes it
    (``format_type``), and whether it may hold NULL."""

    name: str
    sql: str
    nullable: bool = True


_SQL_TYPES = {"str": "text", "int": "integer", "float": "double precision",
              "tuple[str, ...]": "text[]"}
# Codes of a fixed length are stored with it.
_SQL_WIDTHS = {"country": "character varying(2)", "currency": "character varying(3)"}


def _field_column(field: Field) -> Column:
    """The column of a Space field (its annotation is a string: ``str | None`` and the
    like)."""
    kind, _, optional = str(field.type).partition(" | ")
    return Column(field.name, _SQL_WIDTHS.get(field.name, _SQL_TYPES[kind]),
                  nullable=bool(optional))


# Derived once per dataset for serving by geosearch.features (a snapshot carries them).
_SERVING = (Column("feature", "json"), Column("amenity_mask", "bigint", nullable=False),
            Column("city_key", "text", nullable=False))
# Made by the loader (geosearch.loadrows) for PostGIS alone.
_LOADED = (
    Column("geog", "geography(Point,4326)", nullable=False),
    Column("geom", "geometry(Point,4326)", nullable=False),
    Column("dataset_version", "text", nullable=False),
    Column("tile_key", "bigint"), Column("tile_x", "double precision"),
    Column("tile_y", "double precision"), Column("tile_rank", "bigint"),
    Column("tile_sum_x", "double precision"), Column("tile_sum_y", "double precision"),
    Column("search", "tsvector"),
    Column("place", "integer"),
)
# Kept by the writes through the API (geosearch.writes); a load leaves their defaults (1,
# now(), 0): it does not COPY them.
_WRITTEN = (Column("revision", "bigint", nullable=False),
            Column("updated_at", "timestamp with time zone", nullable=False),
            Column("changed_seq", "bigint", nullable=False))
SPACES = (*(_field_column(f) for f in fields(Space)),
          Column("feed_row", "integer", nullable=False), *_SERVING, *_LOADED, *_WRITTEN)
# Every table a load fills, by name (the loader writes ``search_words`` and
# ``word_points`` from the words of the spaces).
TABLES: dict[str, tuple[Column, ...]] = {
    "spaces": SPACES,
    "search_words": (Column("word", "text", nullable=False),
                     Column("spaces", "integer", nullable=False), Column("tile", "integer")),
    "word_points": (Column("pt", "point", nullable=False),
                    Column("place", "integer", nullable=False)),
}

# The spaces' columns a load COPYs, in the order it builds them.
LOAD_COLUMNS = tuple(c.name for c in SPACES if c not in _WRITTEN)
# Each space's text-search words, derived for serving with the columns above: a snapshot
# carries them as they are, the spaces table as ``search`` and the ``search_words`` table.
SEARCH_WORDS = "search_words"
# The columns derived once per dataset for serving, in the order they are derived.
DERIVED_COLUMNS = (*(c.name for c in _SERVING), SEARCH_WORDS)
# The Space fields a backend reads from a snapshot itself (ids, positions, its filters,
# the tiles' names, the coverage reports); the rest it serves inside the feature bytes.
SNAPSHOT_FIELDS = ("id", "name", "lat", "lon", "status", "country", "city", "amenities",
                   "capacity")
# What a backend reads of a snapshot.
SNAPSHOT_COLUMNS = (*SNAPSHOT_FIELDS, *DERIVED_COLUMNS)


def checksum(tables: dict[str, tuple[Column, ...]]) -> int:
    """A stable checksum of the tables' columns (names, types, NULL or not; the order in
    which they are declared aside), as a non-negative 32-bit integer: what
    ``dataset_state.layout`` (``integer``) holds."""
    text = ";".join(
        f"{table}(" + ",".join(sorted(f"{c.name} {c.sql}{'' if c.nullable else ' not null'}"
                                      for c in columns)) + ")"
        for table, columns in sorted(tables.items()))
    return zlib.crc32(text.encode()) & 0x7FFF_FFFF


# The layout of the rows a load writes, stored with the dataset: a dataset loaded under
# another declaration (a column it fills did not exist yet) is loaded again, even when its
# version is unchanged. It covers the columns and their types, not how their values are
# made: a change of what a column holds, under the same type, is not seen here.
LAYOUT = checksum(TABLES)
