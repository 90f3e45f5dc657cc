"""What a live follower (:mod:`geosearch.backends.follower`) reads of PostGIS: the spaces'
rows as the memory index takes them, and the change feed since the seq it has applied.

A space is read as the snapshot's columns (:data:`geosearch.layout.SNAPSHOT_COLUMNS`: the
feature head, the amenity bits, the city key and the text-search words as a load made
them) and the feed's seq of its last write, ``changed_seq``. The rows come in one
``COPY ... TO STDOUT`` as CSV, parsed column-wise by Arrow: no Python object per row, so a
million spaces read in seconds and in about their own size.

Every read of the feed happens in one ``REPEATABLE READ`` snapshot (:func:`read_since`):
the counter's seq, the entries up to it and the rows of the spaces they name are the
database as it stood at that seq. A write commits its row, its entry and the counter
together, and writers take turns on the counter, so the seq names exactly the changes
the rows hold.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from geosearch.layout import SNAPSHOT_COLUMNS

# The feed's seq of a space's last write (0: as loaded)
CHANGED = "changed_seq"
# The columns a follower keeps of a space, in order
ROW_COLUMNS = (*SNAPSHOT_COLUMNS, CHANGED)
# How each is read: a list as its items joined (amenity names and words hold neither
# separator: words are runs of \w), the feature as it is stored (its head and "}}")
_SELECT = {"amenities": "array_to_string(amenities, ',')",
           "search_words": "array_to_string(tsvector_to_array(search), ' ')"}
_LISTS = {"amenities": ",", "search_words": " "}
_TYPES = {"lat": pa.float64(), "lon": pa.float64(), "capacity": pa.int64(),
          "amenity_mask": pa.int64(), CHANGED: pa.int64()}
_ROWS_SQL = ("COPY (SELECT " + ", ".join(f"{_SELECT.get(c, c)} AS {c}" for c in ROW_COLUMNS)
             + " FROM spaces WHERE {where}) TO STDOUT (FORMAT csv, HEADER)")
_CSV = {"parse_options": pacsv.ParseOptions(newlines_in_values=True),
        # an unquoted empty field is NULL, a quoted one an empty string, as COPY writes them
        "convert_options": pacsv.ConvertOptions(
            column_types={c: _TYPES.get(c, pa.string()) for c in ROW_COLUMNS},
            strings_can_be_null=True, quoted_strings_can_be_null=False)}
# One row: the dataset version and the feed's last seq (none before a load)
_STAMP_SQL = ("SELECT v.version, coalesce((SELECT seq FROM change_counter), 0) "
              "FROM dataset_state v")
# One row: the spaces the entries in (since, seq] name, and whether one is a load's
_CHANGED_SQL = ("SELECT coalesce(array_agg(DISTINCT id) FILTER (WHERE id IS NOT NULL), "
                "'{}'), coalesce(bool_or(op = 'dataset'), false) FROM changes "
                "WHERE seq > %(since)s AND seq <= %(seq)s")


@dataclass(frozen=True)
class Delta:
    """What the database holds beyond a follower's seq, read in one snapshot: the dataset
    ``version`` and feed ``seq`` it stands at; with ``reload`` (a new dataset, or more
    changes than are worth applying one by one) every active space in ``rows``, else
    the ``ids`` written since and their rows as they now are (inactive ones too; a space
    named with no row has left the table)."""

    version: str
    seq: int
    reload: bool
    ids: list[str]
    rows: pa.Table


def _split(column: pa.ChunkedArray, separator: str) -> pa.ListArray:
    """Joined lists back as lists of strings (an empty or null field: an empty list)."""
    parts = pc.split_pattern(pc.fill_null(column, "").combine_chunks(), separator)
    items = pc.list_flatten(parts)
    keep = pc.not_equal(items, "").to_numpy(zero_copy_only=False)
    owners = pc.list_parent_indices(parts).to_numpy()[keep]
    offsets = np.concatenate(([0], np.cumsum(np.bincount(owners, minlength=len(parts)))))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), items.filter(pa.array(keep)))


def read_rows(cur: psycopg.Cursor, where: str, params: dict | None = None) -> pa.Table:
    """The rows (:data:`ROW_COLUMNS`) of the spaces ``where`` selects, as the memory index
    takes them: lists as lists, each feature as its head's bytes."""
    buffer = io.BytesIO()
    with cur.copy(_ROWS_SQL.format(where=where), params) as copy:
        for data in copy:
            buffer.write(data)
    buffer.seek(0)
    table = pacsv.read_csv(buffer, **_CSV)
    feature = pc.binary_slice(table["feature"].cast(pa.binary()), 0, -2)  # the head
    columns = {name: _split(table[name], sep) for name, sep in _LISTS.items()}
    columns["feature"] = feature
    for name, column in columns.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def read_since(conn: psycopg.Connection, version: str | None, since: int, most: int
               ) -> Delta | None:
    """What the database holds beyond ``since`` of dataset ``version`` (None: nothing
    held yet), read in one REPEATABLE READ snapshot; None when there is nothing new (or
    no dataset at all). A new dataset, or more than ``most`` spaces written, is read
    whole."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    with conn.transaction(), conn.cursor() as cur:
        stamp = cur.execute(_STAMP_SQL).fetchone()
        if stamp is None:
            return None
        now, seq = str(stamp[0]), int(stamp[1])
        if (now, seq) == (version, since):
            return None
        ids: list[str] = []
        reload = now != version
        if not reload:
            found = cur.execute(_CHANGED_SQL, {"since": since, "seq": seq}).fetchone()
            assert found is not None  # an aggregate answers one row
            ids, reload = list(found[0]), bool(found[1]) or len(found[0]) > most
        if reload:
            return Delta(now, seq, True, [], read_rows(cur, "status = 'active'"))
        return Delta(now, seq, False, ids, read_rows(cur, "id = ANY(%(ids)s)", {"ids": ids}))
