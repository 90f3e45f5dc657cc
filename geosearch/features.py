"""GeoJSON bytes of spaces, built once per dataset, and responses spliced from them.

A space's *head* is its GeoJSON Feature serialised without the two closing braces, so
that a response appends either ``,"distance_m":412.7}}`` or ``}}``:

    {"type":"Feature","id":"sd-de-00017","geometry":{...},"properties":{"name":...,
     "geocode_precision":"input"

Heads are written at ingest (a snapshot column, a PostGIS column) and read back as
bytes; a request never builds a dict or a Space for a result it only renders.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
import orjson
import pandas as pd

from geosearch.model import Hit, Space, amenity_mask

# The properties of a result feature, in the order they are written.
PROPERTIES = ("name", "address", "city", "postcode", "country", "amenities", "capacity",
              "price_day", "currency", "h3_r7", "h3_r8", "h3_r9", "geocode_precision")
CLOSE = b"}}"


def _plain(value: object) -> object:
    """A frame cell as a JSON value: missing markers become null, numpy values Python."""
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def head(space_id: str, lat: float, lon: float, properties: dict) -> bytes:
    """The head of one feature (see the module docstring)."""
    doc = {"type": "Feature", "id": space_id,
           "geometry": {"type": "Point", "coordinates": [lon, lat]},
           "properties": properties}
    return orjson.dumps(doc)[:-2]


def space_head(space: Space) -> bytes:
    """The head of a :class:`Space`."""
    props = {k: getattr(space, k) for k in PROPERTIES}
    props["amenities"] = list(space.amenities)
    return head(space.id, space.lat, space.lon, props)


def frame_heads(frame: pd.DataFrame) -> list[bytes]:
    """The heads of every row of a frame with the snapshot's columns, in row order."""
    columns = {k: frame[k].tolist() for k in ("id", "lat", "lon", *PROPERTIES)}
    out = []
    for i in range(len(frame)):
        props = {k: _plain(columns[k][i]) for k in PROPERTIES}
        if props["capacity"] is not None:
            props["capacity"] = int(props["capacity"])
        if props["price_day"] is not None:
            props["price_day"] = float(props["price_day"])
        props["amenities"] = props["amenities"] or []
        out.append(head(columns["id"][i], float(columns["lat"][i]), float(columns["lon"][i]),
                        props))
    return out


def serving_columns(frame: pd.DataFrame) -> dict[str, object]:
    """The columns derived once per dataset for serving: ``feature`` (the heads),
    ``amenity_mask`` (the amenities as bits) and ``city_key`` (the city as compared)."""
    return {"feature": frame_heads(frame),
            "amenity_mask": np.fromiter((amenity_mask(a) for a in frame["amenities"]),
                                        dtype=np.int64, count=len(frame)),
            "city_key": frame["city"].fillna("").str.strip().str.casefold()}


def space_from_head(data: bytes, status: str = "active") -> Space:
    """The :class:`Space` a head was written from (served spaces are active)."""
    doc = orjson.loads(data + CLOSE)
    props = doc["properties"]
    lon, lat = doc["geometry"]["coordinates"]
    return Space(id=doc["id"], lat=lat, lon=lon, status=status,
                 **{**props, "amenities": tuple(props["amenities"])})


def distance_tail(distance_m: float) -> bytes:
    """The end of a feature with its distance (metres, mm precision)."""
    return b',"distance_m":' + repr(round(distance_m, 3)).encode() + CLOSE


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
        buffer, offsets = self._buffer, self._offsets
        for start, end in zip(offsets[self._rows].tolist(), offsets[self._rows + 1].tolist(),
                              strict=True):
            yield bytes(buffer[start:end])


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
        distances = [h.distance_m for h in hits]
        return cls([h.space.id for h in hits], [space_head(h.space) for h in hits],
                   None if any(d is None for d in distances) else distances)

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
        """The features as a JSON array body (without brackets), distances spliced in."""
        if self.distances is None:
            return b",".join(h + CLOSE for h in self.heads)
        return b",".join(h + distance_tail(float(d))
                         for h, d in zip(self.heads, self.distances, strict=True))
