"""``MemoryBackend``: the embedded default, over columns held in numpy arrays.

Distance queries use a k-d tree (scipy's ``cKDTree``) over Earth-centred Cartesian
coordinates: a chord is never longer than the geodesic, so a ball of radius r holds every
candidate within r, with no special case at the poles or at ±180°. Candidates are then
measured exactly (WGS84 geodesic, pyproj). Area queries use shapely's ``STRtree`` over the
points with the ``covers`` predicate (boundary included, planar lon/lat edges, as in
PostGIS' ``ST_Covers`` on geometry). Rows are sorted by id, so index order is id order.

Every query costs what its candidates cost, never the size of the dataset: filters are
checked on candidates only, and a selective filter (a country, a city, a rare amenity)
is answered from its posting list (the sorted row numbers that have it) when that list is
smaller than the search around the origin would be. Nearest with ``q`` searches the
rarest term's words, which keep k-d trees of their own (:class:`TextIndex`).

The columns are numpy arrays and one buffer of feature bytes (:mod:`geosearch.features`),
read from the snapshot's Arrow columns without a Python object per row, so that gunicorn
workers forked after the load share them page for page.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from scipy.spatial import cKDTree
from shapely.strtree import STRtree

from geosearch.backends.base import ACTIVE_FRAME_COLUMNS, NoDataset, NodeStates, StaleVersion
from geosearch.backends.textindex import TextIndex
from geosearch.features import Hits, Slices, space_from_head
from geosearch.geo import (
    chord_at_most,
    chords_from,
    ecef,
    ecef_point,
    geodesic_at_most,
    geodesic_estimate,
    geodesic_from,
)
from geosearch.model import (
    POINT_ZOOM,
    Amenity,
    Filters,
    ListQuery,
    NearestQuery,
    Page,
    PolygonQuery,
    RadiusQuery,
    Space,
    TileQuery,
    amenity_mask,
)
from geosearch.snapshot import serving_table, table_from_frame
from geosearch.tiles import TileFeatures, TileIndex, cell_shift

_NO_ROWS = np.empty(0, dtype=np.int64)
# A text term whose words hold more than 1/8 of the rows is checked on candidates rather
# than answered from its rows (gathering them would cost more than the search).
_SELECTIVE = 8
# Nearest: a posting list is scanned instead of asking the k-d tree for more neighbours
# when it is at most this many times their number (a row of a list costs a chord).
_POSTING_PER_NEIGHBOUR = 16
# Nearest with ``q``: a term that is a prefix of at most this many words is searched in
# its words' k-d trees and rows (more words: their rows are checked on neighbours).
_NEAR_WORDS = 8
# ... with more than this many times k rows in hand, the k nearest by chord are measured
# first (their farthest bounds the rest), and more in a ball are thinned by Lambert's
# estimate before they are measured.
_MEASURED_PER_K = 4


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


def _k_nearest(idx: np.ndarray, dist: np.ndarray, limit: float, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The k rows nearest by (distance, row) among those within ``limit``, with their
    distances (row order is id order: ties go by id)."""
    keep = dist <= limit
    idx, dist = idx[keep], dist[keep]
    order = np.lexsort((idx, dist))[:k]
    return idx[order], dist[order]


def _after_distance(after: tuple) -> float:
    """The distance of a keyset ``(distance, id)``."""
    distance, _ = after
    return float(distance)


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


class MemoryBackend:
    """Answers every query from arrays in memory; built from a snapshot or a frame.

    >>> from geosearch.model import NearestQuery, Point
    >>> backend = MemoryBackend.from_frame(_example_frame(), version="demo")
    >>> [h.space.id for h in backend.nearest(NearestQuery(Point(52.52, 13.40), k=2))]
    ['b', 'a']
    """

    def __init__(self, table: pa.Table | pd.DataFrame, version: str) -> None:
        if isinstance(table, pd.DataFrame):
            table = table_from_frame(table)
        table = _active_by_id(table)
        self._version = version
        self._table = table
        # one array: a take from a chunked column joins every chunk first (3 ms at 1M)
        self._names = table["name"].combine_chunks()
        self.size = n = table.num_rows
        self.ids = np.asarray(table["id"].to_numpy(zero_copy_only=False), dtype=str)
        self.lat = table["lat"].to_numpy().astype(float)
        self.lon = table["lon"].to_numpy().astype(float)
        self.mask = table["amenity_mask"].to_numpy().astype(np.int64)
        self.capacity = table["capacity"].to_numpy(zero_copy_only=False).astype(float)
        self.country, self._country_code = _codes(table["country"])
        self.city, self._city_code = _codes(table["city_key"])
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

    @classmethod
    def from_snapshot(cls, path: str | Path) -> MemoryBackend:
        """Load the snapshot written by ``geosearch ingest --snapshot`` (columnar)."""
        table, meta = serving_table(path)
        return cls(table, str(meta.get("dataset_version", "unknown")))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, version: str = "adhoc") -> MemoryBackend:
        """Build from a frame with the snapshot's columns (tests, synthetic data)."""
        return cls(frame, version)

    # -- the protocol -------------------------------------------------------------------

    def dataset_version(self) -> str:
        """The version of the snapshot."""
        if self._version is None:
            raise NoDataset("no dataset loaded")
        return self._version

    def radius(self, query: RadiusQuery) -> Page:
        """Spaces within ``radius_m`` of the origin, by (distance, id).

        Only the candidates that can be on the page are measured exactly: the chord
        bounds the geodesic from both sides (:func:`_geodesic_at_most`), so the rows
        the chord places surely inside, after the cursor, and nearest, bound the page.
        """
        self._serves(query.version)
        lat, lon, r = query.origin.lat, query.origin.lon, query.radius_m
        idx = self._ball(lat, lon, r)
        idx = idx[self._passes(query.filters, idx)]
        if idx.size > 2 * (query.limit + 1):  # else measuring them all is cheaper
            idx = self._may_be_on_page(idx, lat, lon, r, query.limit + 1, query.after)
        dist = self._distances(lat, lon, idx)
        keep = dist <= r
        return self._distance_page(idx[keep], dist[keep], query.limit, query.after)

    def _may_be_on_page(self, idx: np.ndarray, lat: float, lon: float, r: float, want: int,
                        after: tuple | None) -> np.ndarray:
        """The candidates of a radius query that can be among its first ``want`` rows
        (within ``r``, after the cursor), decided on chords alone."""
        chord = self._chords(idx, ecef_point(lat, lon))
        upper = geodesic_at_most(chord)
        d0 = None if after is None else _after_distance(after)
        possible = chord <= r if d0 is None else (chord <= r) & (upper >= d0)
        idx, chord, upper = idx[possible], chord[possible], upper[possible]
        sure = upper <= r if d0 is None else (upper <= r) & (chord > d0)
        if np.count_nonzero(sure) < want:
            return idx
        # ``want`` rows surely qualify with a geodesic of at most ``cut``: no row farther
        # than that by chord can come before them.
        cut = np.partition(upper[sure], want - 1)[want - 1]
        return idx[chord <= cut]

    def nearest(self, query: NearestQuery) -> Hits:
        """The k nearest spaces that pass the filters (within ``max_distance_m``)."""
        lat, lon, k = query.origin.lat, query.origin.lon, query.k
        if query.filters.text:
            found = self._nearest_matches(lat, lon, k, query.filters, query.max_distance_m)
            if found is not None:
                return self._hits(*found)
        bound, pool = self._kth_distance_bound(lat, lon, k, query.filters)
        if bound is None:
            return Hits([], [], [])
        if query.max_distance_m is not None:
            bound = min(bound, query.max_distance_m)
        if pool is None:
            idx = self._ball(lat, lon, bound)
            idx = idx[self._passes(query.filters, idx)]
        else:  # every match is in the pool: measure those the chord does not rule out
            idx = pool[self._chords(pool, ecef_point(lat, lon)) <= chord_at_most(bound)]
        return self._hits(*_k_nearest(idx, self._distances(lat, lon, idx), bound, k))

    def polygon(self, query: PolygonQuery) -> Page:
        """Spaces covered by the area (boundary included)."""
        self._serves(query.version)
        idx = np.sort(self._strtree.query(query.area, predicate="covers"))
        idx = idx[self._passes(query.filters, idx)]
        if query.origin is None:
            return self._id_page(idx, query.limit, query.after)
        dist = self._distances(query.origin.lat, query.origin.lon, idx)
        return self._distance_page(idx, dist, query.limit, query.after)

    def list(self, query: ListQuery) -> Page:
        """Every space that passes the filters, by id: scans forward from the cursor
        (along the smallest posting list when a filter has one) until the page is full."""
        self._serves(query.version)
        start = 0 if query.after is None else self._after_id(query.after[-1])
        rows = self._posting(query.filters)
        want = query.limit + 1
        found: list[np.ndarray] = []
        count, step = 0, 4 * want
        if rows is None:
            position, end = start, self.size
        else:
            position, end = int(np.searchsorted(rows, start)), len(rows)
        while count < want and position < end:
            chunk = (np.arange(position, min(end, position + step)) if rows is None
                     else rows[position:position + step].astype(np.int64))
            chunk = chunk[self._passes(query.filters, chunk)]
            found.append(chunk)
            count += len(chunk)
            position += step
            step *= 4
        idx = np.concatenate(found) if found else _NO_ROWS
        return self._id_page(idx, query.limit, None)

    def tile(self, query: TileQuery) -> TileFeatures:
        """The tile's spaces as points, or (below POINT_ZOOM) its cluster cells: from
        prefix sums without a filter, by grouping the tile's passing rows with one."""
        z, x, y, filters = query.z, query.x, query.y, query.filters
        index = self._tiles
        if z < POINT_ZOOM and filters.is_empty:
            first, count, world_x, world_y = index.cells(z, x, y)
            return self._tile_features(query, index.order[first], count, world_x, world_y)
        start, stop = index.span(z, x, y)
        rows, keys = index.order[start:stop], index.keys[start:stop]
        passing = self._passes(filters, rows)
        rows = rows[passing]
        if z >= POINT_ZOOM:
            return self._tile_features(query, rows, np.ones(len(rows), dtype=np.int64),
                                       index.x[rows], index.y[rows])
        if not len(rows):
            return self._tile_features(query, rows, _NO_ROWS, index.x[rows], index.y[rows])
        cells = keys[passing] >> cell_shift(z)
        first = np.flatnonzero(np.concatenate(([True], cells[1:] != cells[:-1])))
        count = np.diff(np.append(first, len(rows)))
        world_x = np.add.reduceat(index.x[rows], first) / count
        world_y = np.add.reduceat(index.y[rows], first) / count
        return self._tile_features(query, rows[first], count, world_x, world_y)

    def _tile_features(self, query: TileQuery, rows: np.ndarray, count: np.ndarray,
                       world_x: np.ndarray, world_y: np.ndarray) -> TileFeatures:
        """Features at ``rows`` (a cluster's first space, or the one space of a cell):
        clusters keep their mean position, single spaces get their own attributes."""
        single = count == 1
        ids: list = [None] * len(rows)
        names: list = [None] * len(rows)
        amenities: list = [None] * len(rows)
        if single.any():
            at = np.flatnonzero(single)
            chosen = rows[at]
            world_x, world_y = world_x.copy(), world_y.copy()
            world_x[at], world_y[at] = self._tiles.x[chosen], self._tiles.y[chosen]
            for i, space_id, name, mask in zip(
                    at.tolist(), self.ids[chosen].tolist(),
                    self._names.take(chosen).to_pylist(),
                    self.mask[chosen].tolist(), strict=True):
                ids[i], names[i], amenities[i] = space_id, name, self._amenities_text(mask)
        return TileFeatures(query.z, query.x, query.y, world_x, world_y, count, ids, names,
                            amenities, self._version)

    def tile_mvt(self, query: TileQuery) -> tuple[bytes, str]:
        """The tile as MVT bytes, and the snapshot's version."""
        return self.tile(query).mvt(), self._version

    def _amenities_text(self, mask: int) -> str:
        """The amenities of a bitmask as comma-separated names, in vocabulary order."""
        text = self._amenity_text.get(mask)
        if text is None:
            text = self._amenity_text[mask] = ",".join(a.value for a in Amenity
                                                       if mask & a.bit)
        return text

    def count(self, query: ListQuery | PolygonQuery) -> int:
        """Matches of every page: the area's points (or the smallest posting list, or
        every row) that pass the filters."""
        self._serves(query.version)
        if isinstance(query, PolygonQuery):
            rows = self._strtree.query(query.area, predicate="covers")
        else:
            rows = self._posting(query.filters)
            if rows is None:
                if query.filters.is_empty:
                    return self.size
                rows = np.arange(self.size)
        return int(np.count_nonzero(self._passes(query.filters, rows)))

    def get(self, space_id: str) -> Space | None:
        """One active space by id."""
        i = int(np.searchsorted(self.ids, space_id))
        if i == self.size or self.ids[i] != space_id:
            return None
        return space_from_head(self._head(i))

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity."""
        return {a.value: len(self._by_amenity[a]) for a in Amenity}

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: the ACTIVE_FRAME_COLUMNS."""
        frame = self._table.select(list(ACTIVE_FRAME_COLUMNS)).to_pandas()
        frame["amenities"] = [list(a) for a in frame["amenities"]]
        return frame

    def nodes(self) -> NodeStates:
        """One store: this process' memory."""
        return [{"role": "memory", "healthy": True, "dataset_version": self._version}]

    def close(self) -> None:
        """Nothing to release."""

    def _serves(self, version: str | None) -> None:
        if version is not None and version != self._version:
            raise StaleVersion(f"this snapshot is version {self._version}, not {version}")

    # -- internals ----------------------------------------------------------------------

    def _after_id(self, space_id: object) -> int:
        """The first row whose id sorts after ``space_id`` (keyset paging)."""
        return int(np.searchsorted(self.ids, str(space_id), side="right"))

    def _head(self, i: int) -> bytes:
        return bytes(self._buffer[self._offsets[i]:self._offsets[i + 1]])

    def _hits(self, idx: np.ndarray, dist: np.ndarray | None) -> Hits:
        return Hits(self.ids[idx].tolist(), Slices(self._buffer, self._offsets, idx),
                    None if dist is None else dist.tolist())

    def _passes(self, filters: Filters, idx: np.ndarray) -> np.ndarray:
        """Boolean mask of which of the rows ``idx`` pass the filters."""
        ok = np.ones(len(idx), dtype=bool)
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
        if filters.text:
            ok &= self._text.matches(filters.text, idx)
        return ok

    def _posting(self, filters: Filters, text_at_most: int | None = None
                 ) -> np.ndarray | None:
        """The smallest posting list that holds every row passing the filters (sorted row
        numbers), or None when no filter has one; a text term's list only when it has at
        most ``text_at_most`` rows (by default an eighth of the dataset)."""
        lists: list[np.ndarray] = []
        if filters.city_key is not None:
            code = self._city_code.get(filters.city_key)
            lists.append(_NO_ROWS if code is None else self._by_city[code])
        if filters.countries:
            parts = [self._by_country[self._country_code[c]] for c in filters.countries
                     if c in self._country_code]
            lists.append(np.sort(np.concatenate(parts)) if len(parts) > 1
                         else parts[0] if parts else _NO_ROWS)
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
            return _NO_ROWS
        centre = ecef_point(lat, lon)
        found = self._kdtree.query_ball_point(centre, chord_at_most(radius_m),
                                              return_sorted=False)
        return np.asarray(found, dtype=np.int64)

    def _chords(self, idx: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Straight-line (ECEF) distances in metres from ``centre`` to the rows ``idx``."""
        return chords_from(centre, self._xyz[idx])

    def _distances(self, lat: float, lon: float, idx: np.ndarray) -> np.ndarray:
        if idx.size == 0:
            return np.empty(0, dtype=float)
        return geodesic_from(lat, lon, self.lat[idx], self.lon[idx])

    def _kth_distance_bound(self, lat: float, lon: float, k: int, filters: Filters
                            ) -> tuple[float | None, np.ndarray | None]:
        """A geodesic distance within which at least k matching spaces lie (or all of
        them), None when no space matches; and, when it came from a posting list, every
        matching row (else None: the matches within the bound are in its ball).

        The k matches nearest by chord lie within their largest geodesic distance, so at
        least k matches do. They come from ever larger k-d tree neighbourhoods of the
        origin, or from the posting list of a selective filter as soon as that list is
        the smaller search.
        """
        if self._kdtree is None:
            return None, None
        pool = None
        centre = ecef_point(lat, lon)
        want = k if filters.is_empty else 4 * k
        if filters.text:  # as many neighbours as should hold k matches of the rarest term
            share = self._text.rarest(filters.text)[2] / max(self.size, 1)
            want = min(self.size, max(want, int(2 * k / max(share, 1e-9))))
        # a term's rows are gathered only when they would be scanned
        rows = self._posting(filters, text_at_most=_POSTING_PER_NEIGHBOUR * want)
        reach, passing = 0.0, _NO_ROWS
        while True:
            # scanning a posting list costs far less per row than a k-d tree neighbour
            if rows is not None and len(rows) <= _POSTING_PER_NEIGHBOUR * want:
                pool = rows[self._passes(filters, rows)].astype(np.int64)
                chord = self._chords(pool, centre)
                take = pool[np.argpartition(chord, k - 1)[:k]] if len(pool) > k else pool
                break
            chords, found = self._kdtree.query(centre, k=min(want, self.size))
            found = np.atleast_1d(found)
            passing = found[self._passes(filters, found)]
            reach = math.inf if want >= self.size else float(np.atleast_1d(chords)[-1])
            take = passing[:k]
            if take.size >= k or want >= self.size:
                break
            want *= 4
        if take.size == 0:
            return None, None
        bound = float(self._distances(lat, lon, take).max())
        if pool is None and chord_at_most(bound) < reach:
            pool = passing  # the neighbourhood holds the ball of the bound: no new search
        return bound, pool

    def _nearest_matches(self, lat: float, lon: float, k: int, filters: Filters,
                         max_distance_m: float | None
                         ) -> tuple[np.ndarray, np.ndarray] | None:
        """The k nearest spaces that pass the filters, found among the rows of the rarest
        ``q`` term nearest the origin (rows and distances); None when that term is not
        the way: a prefix of many words, or another filter's posting list is shorter.

        The term's rows nearest by chord come from its words' k-d trees
        (:meth:`TextIndex.nearest`), more of them until k pass the other filters. The k
        nearest of those by geodesic bound the answer; when the chord ball that holds
        every space within that bound reaches beyond the rows found, the rows in that
        ball are gathered (:meth:`TextIndex.within`).
        """
        term, words, estimate = self._text.rarest(filters.text)
        if words[0] == words[1]:  # a term no word starts with
            return _NO_ROWS, np.empty(0)
        if words[1] - words[0] > _NEAR_WORDS:
            return None
        rest = replace(filters, text=tuple(t for t in filters.text if t != term))
        if not rest.is_empty:
            other = self._posting(rest)
            if other is not None and len(other) < estimate:
                return None
        centre = ecef_point(lat, lon)
        want = 2 * k
        while True:
            rows, chord, reach = self._text.nearest(words, centre, want)
            if not rest.is_empty:
                ok = self._passes(rest, rows)
                rows, chord = rows[ok], chord[ok]
            if len(rows) >= k or reach == math.inf:
                break
            want *= 4
        limit = math.inf if max_distance_m is None else max_distance_m
        if len(rows) > _MEASURED_PER_K * k:  # many: the k nearest by chord bound the limit
            near = rows[np.argpartition(chord, k - 1)[:k]]
            limit = min(limit, float(self._distances(lat, lon, near).max()))
            keep = chord <= chord_at_most(limit)
            rows, chord = rows[keep], chord[keep]
        dist = self._distances(lat, lon, rows)
        if len(rows) >= k:
            limit = min(limit, float(np.partition(dist, k - 1)[k - 1]))
        ball = chord_at_most(limit)
        if ball >= reach:  # matches within the limit may not be in hand
            rows = self._text.within(words, centre, ball)
            if not rest.is_empty:
                rows = rows[self._passes(rest, rows)]
            if len(rows) > _MEASURED_PER_K * k:  # far: the chord bounds loosely
                guess, error = geodesic_estimate(lat, lon, self.lat[rows], self.lon[rows])
                rows = rows[guess - error <= limit]
            dist = self._distances(lat, lon, rows)
        return _k_nearest(rows, dist, limit, k)

    def _distance_page(self, idx: np.ndarray, dist: np.ndarray, limit: int,
                       after: tuple | None) -> Page:
        order = np.lexsort((idx, dist))
        idx, dist = idx[order], dist[order]
        if after is not None:
            d0, cut = _after_distance(after), self._after_id(after[-1])
            later = (dist > d0) | ((dist == d0) & (idx >= cut))
            idx, dist = idx[later], dist[later]
        hits = self._hits(idx[:limit], dist[:limit])
        more = idx.size > limit
        last = (float(dist[limit - 1]), hits.ids[-1]) if more else None
        return Page(hits, last, self._version)

    def _id_page(self, idx: np.ndarray, limit: int, after: tuple | None) -> Page:
        if after is not None:
            idx = idx[idx >= self._after_id(after[-1])]
        hits = self._hits(idx[:limit], None)
        more = idx.size > limit
        return Page(hits, (hits.ids[-1],) if more else None, self._version)


def _example_frame() -> pd.DataFrame:
    """Two spaces in Berlin, for the docstring example."""
    return pd.DataFrame({
        "id": ["a", "b"], "name": ["A", "B"], "address": ["", ""], "city": ["Berlin"] * 2,
        "postcode": [None, None], "country": ["DE", "DE"], "lat": [52.53, 52.521],
        "lon": [13.41, 13.401], "amenities": [["wifi"], []], "capacity": [10, None],
        "price_day": [20.0, None], "currency": ["EUR", None], "status": ["active"] * 2,
        "h3_r7": ["", ""], "h3_r8": ["", ""], "h3_r9": ["", ""],
        "geocode_precision": ["input"] * 2,
    })
