"""The in-memory index under ``MemoryBackend``: the active rows of a snapshot (or a frame)
as columns, the indexes over them, and the steps every query takes on them.

The columns are numpy arrays and one buffer of feature bytes (:mod:`geosearch.features`),
read from the snapshot's Arrow columns without a Python object per row, so that gunicorn
workers forked after the load share them page for page. Rows are sorted by id, so index
order is id order.

Over the columns: a k-d tree (scipy's ``cKDTree``) over Earth-centred Cartesian
coordinates, shapely's ``STRtree`` over the points, posting lists (the sorted row numbers
of each country, city and amenity), the words' :class:`TextIndex` and the
:class:`TileIndex`. :class:`MemoryIndex` builds them and holds what the searches, tiles
and counts share: the filters checked on candidates, the smallest posting list, the chord
ball around an origin, exact distances, hits from rows and the version check.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Self

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from scipy.spatial import cKDTree
from shapely.strtree import STRtree

from geosearch import predicate
from geosearch.backends.base import StaleVersion
from geosearch.backends.textindex import TextIndex
from geosearch.features import Hits, Slices
from geosearch.geo import chord_at_most, chords_from, ecef, ecef_point, geodesic_from
from geosearch.model import Amenity, Filters, amenity_mask
from geosearch.snapshot import table_from_frame
from geosearch.tiles import TileIndex

NO_ROWS = np.empty(0, dtype=np.int64)
# A text term whose words hold more than 1/8 of the rows is checked on candidates rather
# than answered from its rows (gathering them would cost more than the search).
_SELECTIVE = 8


def _codes(values: pa.ChunkedArray) -> tuple[np.ndarray, dict[str, int]]:
    """Dictionary-encode a string column: per-row codes and the code of each value."""
    encoded = values.combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, {v: i for i, v in enumerate(encoded.dictionary.to_pylist())}


def _postings(codes: np.ndarray, count: int) -> list[np.ndarray]:
    """For each code, the sorted row numbers that have it."""
    order = np.argsort(codes, kind="stable").astype(np.int32)
    bounds = np.searchsorted(codes[order], np.arange(count + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(count)]


def _active_by_id(table: pa.Table) -> pa.Table:
    """The active rows sorted by id: a zero-copy slice of a snapshot, which stores them
    first and in order; a filter and a sort for any other table."""
    active = pa.compute.equal(table["status"], "active")
    count = pa.compute.sum(active).as_py() or 0
    head = table.slice(0, count)
    ids = head["id"]
    in_order = pa.compute.all(pa.compute.equal(head["status"], "active")).as_py() is not False
    if in_order and count > 1:
        ids = ids.combine_chunks()
        in_order = pa.compute.all(pa.compute.less(ids.slice(0, count - 1),
                                                  ids.slice(1))).as_py()
    if in_order:
        return head
    return table.filter(active).sort_by("id")


class MemoryIndex:
    """The columns and indexes of the active rows, and the steps on them every query
    shares; :class:`~geosearch.backends.memory.MemoryBackend` answers the queries."""

    def __init__(self, table: pa.Table | pd.DataFrame, version: str) -> None:
        if isinstance(table, pd.DataFrame):
            table = table_from_frame(table)
        table = _active_by_id(table)
        self._version = version
        self._table = table
        # one array: a take from a chunked column joins every chunk first
        self._names = table["name"].combine_chunks()
        self.size = n = table.num_rows
        self.ids = np.asarray(table["id"].to_numpy(zero_copy_only=False), dtype=str)
        self.lat = table["lat"].to_numpy().astype(float)
        self.lon = table["lon"].to_numpy().astype(float)
        self.mask = table["amenity_mask"].to_numpy().astype(np.int64)
        self.capacity = table["capacity"].to_numpy(zero_copy_only=False).astype(float)
        self.country, self._country_code = _codes(table["country"])
        self.city, self._city_code = _codes(table["city_key"])
        self._country_names = np.array(list(self._country_code), dtype=object)
        self._city_names = np.array(list(self._city_code), dtype=object)
        feature = table["feature"].combine_chunks().cast(pa.large_binary())
        _, offsets, data = feature.buffers()
        first = feature.offset
        self._offsets = np.frombuffer(offsets, dtype=np.int64)[first:first + n + 1]
        self._buffer = memoryview(data if data is not None else b"")
        self._xyz = ecef(self.lat, self.lon).reshape(-1, 3)
        self._kdtree = cKDTree(self._xyz) if n else None
        self._strtree = STRtree(shapely.points(self.lon, self.lat))
        self._by_country = _postings(self.country, len(self._country_code))
        self._by_city = _postings(self.city, len(self._city_code))
        self._by_amenity = {a: np.flatnonzero(self.mask & a.bit).astype(np.int32)
                            for a in Amenity}
        self._text = TextIndex(table["search_words"], n, self._xyz)
        self._tiles = TileIndex(self.lat, self.lon, None, np.ones(n, dtype=bool))  # id order
        self._amenity_text: dict[int, str] = {}
        # A view's rows that every query passes over (:meth:`without`): a mask, the rows
        # and their positions in the tile order; None and empty in the index itself.
        self._hidden: np.ndarray | None = None
        self._hidden_rows = self._hidden_at = NO_ROWS
        self._tile_rank: np.ndarray | None = None

    def without(self, hidden: np.ndarray) -> Self:
        """A view of the index that passes over the rows where the boolean ``hidden`` is
        set (a live follower's spaces written since the index was built): a shallow copy
        sharing every column and index, its searches, counts and tiles made as if those
        rows were not there. The index itself is left as it is."""
        if self._tile_rank is None:  # kept on the index: every view shares it
            self._tile_rank = self._tiles.ranks()
        view = copy.copy(self)
        view._hidden = hidden
        view._hidden_rows = np.flatnonzero(hidden)
        at = self._tile_rank[view._hidden_rows]
        view._hidden_at = np.sort(at[at >= 0])
        return view

    def _serves(self, version: str | None) -> None:
        if version is not None and version != self._version:
            raise StaleVersion(f"this snapshot is version {self._version}, not {version}")

    def _after_id(self, space_id: object) -> int:
        """The first row whose id sorts after ``space_id`` (keyset paging)."""
        return int(np.searchsorted(self.ids, str(space_id), side="right"))

    def _head(self, i: int) -> bytes:
        return bytes(self._buffer[self._offsets[i]:self._offsets[i + 1]])

    def _hits(self, idx: np.ndarray, dist: np.ndarray | None) -> Hits:
        return Hits(self.ids[idx].tolist(), Slices(self._buffer, self._offsets, idx),
                    None if dist is None else dist.tolist())

    def _passes(self, filters: Filters, idx: np.ndarray) -> np.ndarray:
        """Boolean mask of which of the rows ``idx`` pass the filters (and are not
        hidden in a view)."""
        ok = np.ones(len(idx), dtype=bool) if self._hidden is None else ~self._hidden[idx]
        if filters.all_amenities:
            need = amenity_mask(filters.all_amenities)
            ok &= (self.mask[idx] & need) == need
        if filters.any_amenities:
            ok &= (self.mask[idx] & amenity_mask(filters.any_amenities)) != 0
        if filters.countries:
            codes = [self._country_code[c] for c in filters.countries if c in self._country_code]
            ok &= np.isin(self.country[idx], codes)
        if filters.city_key is not None:
            ok &= self.city[idx] == self._city_code.get(filters.city_key, -1)
        if filters.min_capacity is not None:
            ok &= self.capacity[idx] >= filters.min_capacity
        if filters.where is not None:
            ok &= predicate.truth(filters.where, partial(self._field, idx), len(idx)) == \
                predicate.TRUE
        if filters.text:
            ok &= self._text.matches(filters.text, idx)
        return ok

    def _field(self, idx: np.ndarray, name: str) -> np.ndarray:
        """The values of a field of :mod:`geosearch.predicate` at the rows ``idx``."""
        if name == "capacity":
            return self.capacity[idx]
        codes, names = ((self.country, self._country_names) if name == "country"
                        else (self.city, self._city_names))
        return names[codes[idx]]

    def _posting(self, filters: Filters, text_at_most: int | None = None
                 ) -> np.ndarray | None:
        """The smallest posting list that holds every row passing the filters (sorted row
        numbers), or None when no filter has one; a text term's list only when it has at
        most ``text_at_most`` rows (by default an eighth of the dataset)."""
        lists: list[np.ndarray] = []
        if filters.city_key is not None:
            code = self._city_code.get(filters.city_key)
            lists.append(NO_ROWS if code is None else self._by_city[code])
        if filters.countries:
            parts = [self._by_country[self._country_code[c]] for c in filters.countries
                     if c in self._country_code]
            lists.append(np.sort(np.concatenate(parts)) if len(parts) > 1
                         else parts[0] if parts else NO_ROWS)
        lists += [self._by_amenity[a] for a in filters.all_amenities]
        if filters.text:  # the rarest term's rows, when selective and the shortest list
            term, _, rows = self._text.rarest(filters.text)
            most = self.size // _SELECTIVE if text_at_most is None else text_at_most
            if rows <= most and (not lists or rows < min(map(len, lists))):
                lists.append(self._text.rows(term))
        return min(lists, key=len) if lists else None

    def _ball(self, lat: float, lon: float, radius_m: float) -> np.ndarray:
        """Indices of every space within the geodesic ``radius_m`` (and a few beyond:
        the chord ball that holds them)."""
        if self._kdtree is None:
            return NO_ROWS
        centre = ecef_point(lat, lon)
        found = self._kdtree.query_ball_point(centre, chord_at_most(radius_m),
                                              return_sorted=False)
        return np.asarray(found, dtype=np.int64)

    def nearest_chord(self, lat: float, lon: float) -> float:
        """The straight-line (ECEF) distance in metres from (lat, lon) to the nearest row
        (a hidden one too), infinite when there is none: a lower bound of the geodesic
        to every row (a follower skips a small index that cannot hold a match)."""
        if self._kdtree is None:
            return math.inf
        chord, _ = self._kdtree.query(ecef_point(lat, lon), k=1)
        return float(chord)

    def _chords(self, idx: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Straight-line (ECEF) distances in metres from ``centre`` to the rows ``idx``."""
        return chords_from(centre, self._xyz[idx])

    def _distances(self, lat: float, lon: float, idx: np.ndarray) -> np.ndarray:
        if idx.size == 0:
            return np.empty(0, dtype=float)
        return geodesic_from(lat, lon, self.lat[idx], self.lon[idx])
