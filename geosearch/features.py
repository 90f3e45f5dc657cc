"""GeoJSON bytes of spaces, built once per dataset, and responses spliced from them.

A space's *head* is its GeoJSON Feature serialised without the two closing braces, so
that a response appends either ``,"distance_m":412.7}}`` or ``}}``:

    {"type":"Feature","id":"sd-de-00017","geometry":{...},"properties":{"name":...,
     "geocode_precision":"input"

Heads are written at ingest (a snapshot column, a PostGIS column) and read back as
bytes; a request never builds a dict or a Space for a result it only renders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain, repeat
from typing import Any, overload

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from geosearch.layout import DERIVED_COLUMNS
from geosearch.model import FEATURE_PROPERTIES, Hit, Space, amenity_mask
from geosearch.text import MAX_Q_CHARS, TEXT_FIELDS, words

CLOSE = b"}}"
CLOSE_NEXT = b"}},"
DISTANCE = b',"distance_m":'


# The nullable numbers of a frame, by their dtype there
_NUMBER_DTYPES = {"capacity": "Int64", "price_day": "Float64"}


def feature_value(name: str, value: Any) -> object:
    """A Space field's value as a feature's properties hold it: the amenities a list
    (none given: empty), ``capacity`` an int and ``price_day`` a float, None where either
    is missing; the rest as given (a write's record and a load's frame agree through it).

    >>> feature_value("price_day", 20), feature_value("amenities", ("wifi",))
    (20.0, ['wifi'])
    """
    if name == "amenities":
        return [] if value is None else value if isinstance(value, list) else list(value)
    if value is None:
        return None
    if name == "capacity":
        return int(value)
    return float(value) if name == "price_day" else value


def _column(frame: pd.DataFrame, name: str) -> list:
    """A column as plain Python values for JSON (:func:`feature_value`; missing markers
    become None, amenity arrays from Parquet lists)."""
    series = frame[name]
    if name == "amenities":
        values = series.tolist()
    elif name in _NUMBER_DTYPES:
        values = series.astype(_NUMBER_DTYPES[name]).to_numpy(dtype=object, na_value=None)
    else:
        return series.to_numpy(dtype=object, na_value=None).tolist()
    return [feature_value(name, v) for v in values]


def head(space_id: str, lat: float, lon: float, properties: dict) -> bytes:
    """The head of one feature (see the module docstring)."""
    doc = {"type": "Feature", "id": space_id,
           "geometry": {"type": "Point", "coordinates": [lon, lat]},
           "properties": properties}
    return orjson.dumps(doc)[:-2]


def values_head(space_id: str, lat: float, lon: float, values: Mapping[str, object]
                ) -> bytes:
    """The head of one space from its Space fields' values (one for each of
    :data:`~geosearch.model.FEATURE_PROPERTIES`), as :func:`frame_heads` writes a row's."""
    return head(space_id, lat, lon,
                {name: feature_value(name, values[name]) for name in FEATURE_PROPERTIES})


def space_head(space: Space) -> bytes:
    """The head of a :class:`Space`."""
    props = {k: getattr(space, k) for k in FEATURE_PROPERTIES}
    props["amenities"] = list(space.amenities)
    return head(space.id, space.lat, space.lon, props)


def frame_heads(frame: pd.DataFrame) -> list[bytes]:
    """The heads of every row of a frame with the snapshot's columns, in row order."""
    ids = frame["id"].astype(str).tolist()
    lats = frame["lat"].astype(float).tolist()
    lons = frame["lon"].astype(float).tolist()
    rows = zip(*(_column(frame, k) for k in FEATURE_PROPERTIES), strict=True)
    return [head(i, lat, lon, dict(zip(FEATURE_PROPERTIES, values, strict=True)))
            for i, lat, lon, values in zip(ids, lats, lons, rows, strict=True)]


def amenity_masks(amenities: pd.Series) -> np.ndarray:
    """The amenity bitmask of every row of a column of amenity lists, column-wise.

    >>> amenity_masks(pd.Series([["wifi", "coffee"], [], ["coffee"]])).tolist()
    [3, 0, 2]
    """
    lists = pa.array(amenities.tolist(), pa.list_(pa.string()))
    flat = pc.list_flatten(lists).dictionary_encode()
    bits = np.array([amenity_mask([name]) for name in flat.dictionary.to_pylist()],
                    dtype=np.int64)
    masks = np.zeros(len(lists), dtype=np.int64)
    np.bitwise_or.at(masks, pc.list_parent_indices(lists).to_numpy(),
                     bits[flat.indices.to_numpy()] if len(flat) else bits[:0])
    return masks


def field_words(text: object) -> list[str]:
    """The text-search words of one field's value: its :func:`geosearch.text.words`, each
    cut to :data:`~geosearch.text.MAX_Q_CHARS` (no term is longer: a longer word matches as
    its start does); none for a missing value."""
    return [w[:MAX_Q_CHARS] for w in words(text)] if isinstance(text, str) else []


def space_words(name: str, address: str, city: str) -> list[str]:
    """One space's text-search words: the distinct :func:`field_words` of its name,
    address and city, sorted (code point order), as :func:`search_words` gives a row's.

    >>> space_words("Café Zürich", "Zürichstraße 3", "Zürich")
    ['3', 'cafe', 'zurich', 'zurichstrasse']
    """
    return sorted({w for text in (name, address, city) for w in field_words(text)})


def search_words(frame: pd.DataFrame) -> pd.Series:
    """Each row's text-search words (:func:`space_words`), column-wise: each distinct
    field value is folded once (:func:`field_words`), the rows' lists are assembled with
    numpy."""
    rows, found = [], []
    for name in TEXT_FIELDS:
        codes, values = pd.factorize(frame[name], use_na_sentinel=True)
        per_value = pa.array([field_words(v) for v in values] + [[]], pa.list_(pa.string()))
        taken = per_value.take(pa.array(np.where(codes < 0, len(values), codes)))
        rows.append(pc.list_parent_indices(taken).to_numpy())
        found.append(pc.list_flatten(taken))
    vocabulary, numbers = ranked_words(pa.chunked_array(found, pa.string()).combine_chunks())
    size = max(len(vocabulary), 1)
    # (row, word) once each, by row and then by word
    key = np.sort(np.concatenate(rows).astype(np.int64) * size + numbers)
    key = key[np.concatenate(([True], key[1:] != key[:-1]))] if key.size else key
    row, word = np.divmod(key, size)
    offsets = np.concatenate(([0], np.cumsum(np.bincount(row, minlength=len(frame)))))
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                     pa.array(vocabulary, pa.string()).take(pa.array(word)))
    return lists.to_pandas().set_axis(frame.index)  # each row's words as an array


def city_key(city: str) -> str:
    """A city as filters compare it: trimmed, case-folded.

    >>> city_key("  Straße ")
    'strasse'
    """
    return city.strip().casefold()


def city_keys(cities: pd.Series) -> pd.Series:
    """The :func:`city_key` of every row (a missing city is ""), each distinct city once."""
    codes, values = pd.factorize(cities.fillna(""))
    keys = np.array([city_key(v) for v in values], dtype=object)
    return pd.Series(keys[codes], index=cities.index)


def ranked_words(words: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The distinct words, sorted (code point order), and each word's number in them.

    >>> ranked_words(pa.array(["munchen", "cafe", "munchen"]))
    (array(['cafe', 'munchen'], dtype='<U7'), array([1, 0, 1]))
    """
    if not len(words):
        return np.array([], dtype=str), np.empty(0, dtype=np.int64)
    encoded = words.dictionary_encode()
    vocabulary = np.array(encoded.dictionary.to_pylist(), dtype=str)
    order = np.argsort(vocabulary, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return vocabulary[order], rank[encoded.indices.to_numpy()]


# How each of geosearch.layout's DERIVED_COLUMNS is derived from a frame of spaces.
_DERIVE: dict[str, Callable[[pd.DataFrame], object]] = {
    "feature": frame_heads,
    "amenity_mask": lambda frame: amenity_masks(frame["amenities"]),
    "city_key": lambda frame: city_keys(frame["city"]),
    "search_words": search_words,
}


def serving_columns(frame: pd.DataFrame, names: Iterable[str] | None = None
                    ) -> dict[str, object]:
    """The columns derived once per dataset for serving that ``frame`` lacks: ``feature``
    (the heads), ``amenity_mask`` (the amenities as bits), ``city_key`` (the city as
    compared) and ``search_words`` (the words text search matches); only those of
    ``names`` when given (:data:`~geosearch.layout.DERIVED_COLUMNS`, in its order)."""
    wanted = set(DERIVED_COLUMNS if names is None else names)
    return {name: _DERIVE[name](frame) for name in DERIVED_COLUMNS
            if name in wanted and name not in frame}


def space_from_head(data: bytes, status: str = "active") -> Space:
    """The :class:`Space` a head was written from (served spaces are active)."""
    doc = orjson.loads(data + CLOSE)
    props = doc["properties"]
    lon, lat = doc["geometry"]["coordinates"]
    return Space(id=doc["id"], lat=lat, lon=lon, status=status,
                 **{**props, "amenities": tuple(props["amenities"])})


class Slices(Sequence[bytes]):
    """Byte strings cut on demand from one buffer: item ``i`` is
    ``buffer[offsets[rows[i]]:offsets[rows[i] + 1]]`` (a backend's heads, no copy made
    until a caller asks)."""

    __slots__ = ("_buffer", "_offsets", "_rows")

    def __init__(self, buffer: memoryview, offsets: np.ndarray, rows: np.ndarray) -> None:
        self._buffer = buffer
        self._offsets = offsets
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> bytes: ...

    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...

    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self._rows[i]
        return bytes(self._buffer[self._offsets[row]:self._offsets[row + 1]])

    def __iter__(self) -> Iterator[bytes]:
        return (bytes(v) for v in self.views())

    def views(self) -> list[memoryview]:
        """The items as views of the buffer (no copy), for joining into a response."""
        buffer = self._buffer
        return [buffer[start:end] for start, end in
                zip(self._offsets[self._rows].tolist(), self._offsets[self._rows + 1].tolist(),
                    strict=True)]


class Hits(Sequence[Hit]):
    """Search results held as heads (bytes) and distances; a :class:`Hit`, with its
    :class:`Space`, is only built when a caller asks for it.

    ``ids`` are the spaces' ids, ``heads`` their feature heads, ``distances`` the geodesic
    metres from the query's origin (None when the query had none).
    """

    __slots__ = ("_built", "distances", "heads", "ids")

    def __init__(self, ids: Sequence[str], heads: Sequence[bytes],
                 distances: Sequence[float] | None = None) -> None:
        self.ids = ids
        self.heads = heads
        self.distances = distances
        self._built: list[Hit] | None = None

    @classmethod
    def of(cls, hits: Sequence[Hit]) -> Hits:
        """Hits of any backend as heads (spaces serialised here, once)."""
        if isinstance(hits, Hits):
            return hits
        known = [h.distance_m for h in hits if h.distance_m is not None]
        return cls([h.space.id for h in hits], [space_head(h.space) for h in hits],
                   known if len(known) == len(hits) else None)

    def _hits(self) -> list[Hit]:
        if self._built is None:
            d = self.distances
            self._built = [Hit(space_from_head(h), None if d is None else float(d[i]))
                           for i, h in enumerate(iter(self.heads))]
        return self._built

    def __len__(self) -> int:
        return len(self.heads)

    @overload
    def __getitem__(self, i: int) -> Hit: ...

    @overload
    def __getitem__(self, i: slice) -> list[Hit]: ...

    def __getitem__(self, i: int | slice) -> Hit | list[Hit]:
        return self._hits()[i]

    def __iter__(self) -> Iterator[Hit]:
        return iter(self._hits())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Hits({list(self.ids)!r})"

    def features(self) -> bytes:
        """The features as a JSON array body (without brackets), distances spliced in
        (metres, millimetre precision: ``numpy.round(d, 3)``, halves to even)."""
        heads = self.heads
        views: Sequence[bytes | memoryview] = (
            heads.views() if type(heads) is Slices else list(heads))
        if not views:
            return b""
        if self.distances is None:
            return b"".join(chain.from_iterable(zip(views, repeat(CLOSE_NEXT))))[:-1]
        d = self.distances
        metres = d.tolist() if isinstance(d, np.ndarray) else d
        # round(x) is numpy's rint: the same doubles as numpy.round, without numpy's
        # dispatch (a request's page has a few dozen distances at most); %r writes them
        # as JSON does (the shortest repr; plain decimals from 0.001 m to 1e16 m).
        parts: list[bytes | memoryview] = []
        for head, m in zip(views, metres, strict=True):
            parts += (head, DISTANCE, b"%r" % (round(m * 1000.0) / 1000.0), CLOSE_NEXT)
        return b"".join(parts)[:-1]
