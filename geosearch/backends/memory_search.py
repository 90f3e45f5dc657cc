"""The radius, nearest, polygon and list searches of the in-memory backend, with their
keyset paging (:class:`MemorySearches`).

Distance queries take their candidates from the k-d tree's chord ball: a chord is never
longer than the geodesic, so a ball of radius r holds every candidate within r, with no
special case at the poles or at ±180°. Candidates are then measured exactly (WGS84
geodesic, pyproj). Area queries use the ``STRtree`` with the ``covers`` predicate (boundary
included, planar lon/lat edges, as in PostGIS' ``ST_Covers`` on geometry).

Every query costs what its candidates cost, never the size of the dataset: filters are
checked on candidates only, and a selective filter (a country, a city, a rare amenity)
is answered from its posting list (the sorted row numbers that have it) when that list is
smaller than the search around the origin would be. Nearest with ``q`` searches the
rarest term's words, which keep k-d trees of their own (:class:`TextIndex`).

Pages go by (distance, id) or by id; a page's cursor is the key of its last row, and the
next page starts after it.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from geosearch.backends.memory_index import NO_ROWS, MemoryIndex
from geosearch.features import Hits
from geosearch.geo import chord_at_most, ecef_point, geodesic_at_most, geodesic_estimate
from geosearch.model import Filters, ListQuery, NearestQuery, Page, PolygonQuery, RadiusQuery

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


def _k_nearest(idx: np.ndarray, dist: np.ndarray, limit: float, k: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """The k rows nearest by (distance, row) among those within ``limit``, with their
    distances (row order is id order: ties go by id)."""
    keep = dist <= limit
    idx, dist = idx[keep], dist[keep]
    order = np.lexsort((idx, dist))[:k]
    return idx[order], dist[order]


# The change feed's seq of a walk by distance over a snapshot, which takes no write
SNAPSHOT_SEQ = 0


def _after_distance(after: tuple) -> float:
    """The distance of a keyset ``(distance, id, walk seq)``."""
    distance, _, _ = after
    return float(distance)


class MemorySearches(MemoryIndex):
    """Radius, nearest, polygon and list over the index, paged by keyset."""

    def radius(self, query: RadiusQuery) -> Page:
        """Spaces within ``radius_m`` of the origin, by (distance, id).

        Only the candidates that can be on the page are measured exactly: the chord
        bounds the geodesic from both sides (:func:`~geosearch.geo.geodesic_at_most`), so the rows
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
        idx = np.concatenate(found) if found else NO_ROWS
        return self._id_page(idx, query.limit, None)

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
        reach, passing = 0.0, NO_ROWS
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
            return NO_ROWS, np.empty(0)
        if words[1] - words[0] > _NEAR_WORDS:
            return None
        rest = replace(filters, text=tuple(t for t in filters.text if t != term))
        if not rest.is_empty:
            other = self._posting(rest)
            if other is not None and len(other) < estimate:
                return None
        centre = ecef_point(lat, lon)
        want = 2 * k
        checked = not rest.is_empty or self._hidden is not None  # rows to pass over
        while True:
            rows, chord, reach = self._text.nearest(words, centre, want)
            if checked:
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
            if checked:
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
            d0, cut = _after_distance(after), self._after_id(after[1])
            later = (dist > d0) | ((dist == d0) & (idx >= cut))
            idx, dist = idx[later], dist[later]
        hits = self._hits(idx[:limit], dist[:limit])
        more = idx.size > limit
        last = (float(dist[limit - 1]), hits.ids[-1], SNAPSHOT_SEQ) if more else None
        return Page(hits, last, self._version)

    def _id_page(self, idx: np.ndarray, limit: int, after: tuple | None) -> Page:
        if after is not None:
            idx = idx[idx >= self._after_id(after[-1])]
        hits = self._hits(idx[:limit], None)
        more = idx.size > limit
        return Page(hits, (hits.ids[-1],) if more else None, self._version)
