"""The rows a load writes, made from a frame of spaces: Arrow and numpy, no database.

:func:`load_tables` gives every table's rows (:mod:`geosearch.layout` declares their
columns); :mod:`geosearch.store` COPYs them into PostGIS. What needs the whole dataset
(the words, the tiles) is done once, up front; the spaces' rows are made a chunk at a
time, as they are read.

A space written alone through the API gets its row from :func:`space_values`, in plain
Python: the rules of a value (its words, its city key, its feature bytes, its EWKB, its
tile key) are scalar functions that the column-wise code applies per distinct value, or
that it mirrors with Arrow where a call per row would slow a load (a test holds the two
equal over every space of a feed).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from geosearch import wordplane
from geosearch.features import (
    CLOSE,
    city_key,
    feature_value,
    ranked_words,
    serving_columns,
    space_words,
    values_head,
)
from geosearch.layout import LOAD_COLUMNS, SEARCH_WORDS
from geosearch.model import SPACE_FIELDS, amenity_mask
from geosearch.tiles import TileIndex, point_tile

# The columns that rank a space across the dataset (the tile prefix sums)
RANKED = ("tile_rank", "tile_sum_x", "tile_sum_y")
# What a row holds only as one of a whole load: the ranks, and the place in the word plane
DATASET_WIDE = (*RANKED, "place")
# Between two words of a tsvector's text
_WORDS_APART = "' '"


def _tile_columns(frame: pd.DataFrame) -> tuple[dict[str, pa.Array], TileIndex]:
    """The tile columns of migration 0003 (NULL where they do not apply) and the index
    they come from (its totals go into ``dataset_state``)."""
    ids = frame["id"].astype(str).to_numpy()
    index = TileIndex(frame["lat"].to_numpy(float), frame["lon"].to_numpy(float),
                      np.unique(ids, return_inverse=True)[1],
                      (frame["status"] == "active").to_numpy())
    rank = index.ranks()
    outside, unranked = index.key < 0, rank < 0
    ranked = np.maximum(rank, 0)
    return {
        "tile_key": pa.array(index.key, mask=outside),
        "tile_x": pa.array(index.x, mask=outside),
        "tile_y": pa.array(index.y, mask=outside),
        "tile_rank": pa.array(rank, mask=unranked),
        "tile_sum_x": pa.array(index.prefix_x[ranked], mask=unranked),
        "tile_sum_y": pa.array(index.prefix_y[ranked], mask=unranked),
    }, index


def search_text(words: list[str]) -> str:
    """One space's words as ``tsvector`` text, taken as they are (no parser, no
    dictionary): ``'cafe' 'munchen'``; words are runs of ``\\w``, so nothing needs
    escaping.

    >>> search_text(["cafe", "munchen"]), search_text([])
    ("'cafe' 'munchen'", '')
    """
    return f"'{_WORDS_APART.join(words)}'" if words else ""


def _search_texts(words: pa.ListArray) -> pa.Array:
    """Each row's :func:`search_text`, column-wise."""
    quoted = pc.binary_join_element_wise("'", pc.binary_join(words, _WORDS_APART), "'", "")
    return pc.if_else(pc.equal(pc.list_value_length(words), 0), "", quoted)


def array_text(names: list[str]) -> str:
    """A ``text[]`` literal of names that need no quoting (amenities: ``{wifi,coffee}``)."""
    return "{" + ",".join(names) + "}"


def _array_texts(lists: pa.ListArray) -> pa.Array:
    """Each row's :func:`array_text`, column-wise."""
    return pc.binary_join_element_wise("{", pc.binary_join(lists, ","), "}", "")


def _word_tables(words: pa.ListArray, active: np.ndarray, lon: np.ndarray,
                 lat: np.ndarray) -> tuple[pa.Table, bytes]:
    """How many active spaces have each text-search word and its tile in the word plane
    (table ``search_words``: the words of active spaces), and the plane's points
    (``word_points``, binary COPY): one numbering of the words serves both."""
    vocabulary, word = ranked_words(pc.list_flatten(words))
    row = pc.list_parent_indices(words).to_numpy()
    spaces = np.bincount(word[active[row]], minlength=len(vocabulary))
    tile = wordplane.tiles(spaces, int(active.sum()))
    listed = spaces > 0
    counts = pa.table({"word": pa.array(vocabulary[listed], pa.string()),
                       "spaces": spaces[listed],
                       "tile": pa.array(tile[listed], mask=tile[listed] < 0)})
    pair_tile = tile[word]
    keep = active[row] & (pair_tile >= 0)
    return counts, wordplane.points_copy(row[keep], pair_tile[keep], lon, lat)


# EWKB of a point with an SRID, little-endian: byte order, type (point | SRID flag), SRID;
# the two coordinates follow as little-endian doubles
_EWKB_POINT_4326 = (b"\x01" + (0x20000001).to_bytes(4, "little")
                    + (4326).to_bytes(4, "little"))
_HEX_DIGITS = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)


def ewkb_points(lon: np.ndarray, lat: np.ndarray) -> pa.StringArray:
    """Hex EWKB (SRID 4326) of points, as PostGIS reads them in COPY, written column-wise
    (what ``shapely.to_wkb(..., hex=True, include_srid=True)`` writes, without a Python
    object per point)."""
    n = len(lon)
    wkb = np.empty((n, 25), dtype=np.uint8)
    wkb[:, :9] = np.frombuffer(_EWKB_POINT_4326, dtype=np.uint8)
    wkb[:, 9:17] = np.ascontiguousarray(lon, dtype="<f8").view(np.uint8).reshape(n, 8)
    wkb[:, 17:] = np.ascontiguousarray(lat, dtype="<f8").view(np.uint8).reshape(n, 8)
    text = np.empty((n, 50), dtype=np.uint8)
    text[:, 0::2] = _HEX_DIGITS[wkb >> 4]
    text[:, 1::2] = _HEX_DIGITS[wkb & 15]
    offsets = np.arange(0, 50 * n + 1, 50, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def ewkb_point(lon: float, lat: float) -> str:
    """The hex EWKB of one point, as :func:`ewkb_points` writes it.

    >>> ewkb_point(0.0, 0.0)
    '0101000020E610000000000000000000000000000000000000'
    """
    return (_EWKB_POINT_4326 + struct.pack("<dd", lon, lat)).hex().upper()


def load_tables(frame: pd.DataFrame, version: str, chunk_rows: int
                ) -> tuple[dict[str, Iterable[pa.Table] | bytes], TileIndex]:
    """The rows to COPY, by table, in the order to COPY them: ``word_points`` (binary COPY)
    and ``search_words``, then ``spaces`` (:func:`spaces_rows`: Arrow tables of
    ``chunk_rows`` rows, made as they are read); and the dataset's tile index. What needs
    the whole dataset (the words, the tiles) is done here."""
    frame = pd.DataFrame(frame.drop(columns="geometry", errors="ignore"))
    frame = frame.assign(**serving_columns(frame, [SEARCH_WORDS]))
    lon, lat = frame["lon"].to_numpy(float), frame["lat"].to_numpy(float)
    words = pa.array(frame[SEARCH_WORDS], pa.list_(pa.string()))
    tiles, index = _tile_columns(frame)
    counts, plane = _word_tables(words, (frame["status"] == "active").to_numpy(), lon, lat)
    return {"word_points": plane, "search_words": [counts],
            "spaces": spaces_rows(frame, version, tiles, words, chunk_rows)}, index


def spaces_rows(frame: pd.DataFrame, version: str, tiles: dict[str, pa.Array],
                words: pa.ListArray, chunk_rows: int) -> Iterator[pa.Table]:
    """The ``spaces`` rows in :data:`~geosearch.layout.LOAD_COLUMNS` order, ``chunk_rows``
    at a time, in the frame's order (rows sorted by tile key made the geography GiST
    index, built by insertion, slower to search). Built column by column: no Python work
    per row beyond the feature bytes, when the frame lacks them."""
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start:start + chunk_rows]
        part = part.assign(**serving_columns(part))
        n = len(part)
        lon, lat = part["lon"].to_numpy(float), part["lat"].to_numpy(float)
        ewkb = ewkb_points(lon, lat)
        amenities = pa.array(part["amenities"].tolist(), pa.list_(pa.string()))
        feature = pa.array(part["feature"].tolist(), pa.binary()).cast(pa.string())
        plain = [c for c in LOAD_COLUMNS
                 if c in part and c not in ("amenities", "feature", "search") and c not in tiles]
        table = pa.Table.from_pandas(part[plain], preserve_index=False)
        columns = {
            **{name: column.slice(start, n) for name, column in tiles.items()},
            **{name: table[name] for name in table.column_names},
            "geog": ewkb, "geom": ewkb,
            "amenities": _array_texts(amenities),
            "feature": pc.binary_join_element_wise(feature, "}}", ""),
            "search": _search_texts(words.slice(start, n)),
            "dataset_version": pa.array([version] * n, pa.string()),
            "place": pa.array(np.arange(start, start + n), pa.int32()),  # word_points name it
        }
        yield pa.table({name: columns[name] for name in LOAD_COLUMNS})


def space_values(fields: Mapping[str, Any], feed_row: int, version: str
                 ) -> tuple[dict[str, object], list[str]]:
    """One space's ``spaces`` row in dataset ``version`` (column -> value in
    :data:`LOAD_COLUMNS` order, each value what :func:`spaces_rows` makes of the space)
    and its text-search words, without a frame: a space written alone. ``fields``: its
    Space fields' values as a load's frame holds them
    (:func:`geosearch.ingest.pipeline.field_value`). The :data:`DATASET_WIDE` columns are
    None."""
    lat, lon = float(fields["lat"]), float(fields["lon"])
    words = space_words(fields["name"], fields["address"], fields["city"])
    amenities = list(fields["amenities"])
    key, x, y = point_tile(lat, lon) or (None, None, None)
    ewkb = ewkb_point(lon, lat)
    values = {name: feature_value(name, fields[name]) for name in SPACE_FIELDS}
    values.update({
        "lat": lat, "lon": lon, "amenities": array_text(amenities), "feed_row": feed_row,
        "feature": (values_head(str(fields["id"]), lat, lon, fields) + CLOSE).decode(),
        "amenity_mask": amenity_mask(amenities), "city_key": city_key(fields["city"]),
        "geog": ewkb, "geom": ewkb, "dataset_version": version, "tile_key": key,
        "tile_x": x, "tile_y": y, "search": search_text(words),
        **dict.fromkeys(DATASET_WIDE)})
    return {name: values[name] for name in LOAD_COLUMNS}, words
