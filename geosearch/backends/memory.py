"""``MemoryBackend``: the embedded default, over parallel arrays held in memory.

Distance queries use a k-d tree (scipy's ``cKDTree``) over Earth-centred Cartesian
coordinates: a chord is never longer than the geodesic, so a ball of radius r holds every
candidate within r, with no special case at the poles or at ±180°. Candidates are then
measured exactly (WGS84 geodesic, pyproj). Area queries use shapely's ``STRtree`` over the
points with the ``covers`` predicate (boundary included, planar lon/lat edges, as in
PostGIS' ``ST_Covers`` on geometry). Arrays are sorted by id, so index order is id order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree
from shapely.strtree import STRtree

from geosearch.backends.base import NoDataset
from geosearch.geo import ecef, geodesic_m
from geosearch.model import (
    Amenity,
    Filters,
    Hit,
    ListQuery,
    NearestQuery,
    Page,
    PolygonQuery,
    RadiusQuery,
    Space,
    amenity_mask,
)
from geosearch.snapshot import read_snapshot

_SPACE_FIELDS = ("id", "name", "address", "city", "postcode", "country", "lat", "lon",
                 "amenities", "capacity", "price_day", "currency", "status", "h3_r7",
                 "h3_r8", "h3_r9", "geocode_precision")
# The chord-to-geodesic ratio is 1 - O(d^2/R^2): a relative margin keeps the ball safe.
_BALL_MARGIN = 1e-9


class MemoryBackend:
    """Answers every query from arrays in memory; built from a snapshot or a frame.

    >>> from geosearch.model import NearestQuery, Point
    >>> backend = MemoryBackend.from_frame(_example_frame(), version="demo")
    >>> [h.space.id for h in backend.nearest(NearestQuery(Point(52.52, 13.40), k=2))]
    ['b', 'a']
    """

    def __init__(self, frame: pd.DataFrame, version: str) -> None:
        frame = frame[frame["status"] == "active"].sort_values("id", kind="stable")
        frame = frame.reset_index(drop=True)
        self._version = version
        self._columns = {f: frame[f].tolist() for f in _SPACE_FIELDS}
        self.ids = np.asarray(frame["id"].tolist(), dtype=object)
        self.lat = frame["lat"].to_numpy(dtype=float)
        self.lon = frame["lon"].to_numpy(dtype=float)
        self.size = len(frame)
        self.mask = np.fromiter((amenity_mask(am) for am in frame["amenities"]),
                                dtype=np.int64, count=len(frame))
        self.country = frame["country"].to_numpy(dtype=object)
        self.city_key = np.asarray([c.strip().casefold() for c in frame["city"]], dtype=object)
        self.capacity = pd.to_numeric(frame["capacity"]).to_numpy(dtype=float, na_value=np.nan)
        self._xyz = ecef(self.lat, self.lon).reshape(-1, 3)
        self._kdtree = cKDTree(self._xyz) if self.size else None
        self._points = shapely.points(self.lon, self.lat)
        self._strtree = STRtree(self._points)
        self._position = {sid: i for i, sid in enumerate(self.ids)}

    @classmethod
    def from_snapshot(cls, path: str | Path) -> MemoryBackend:
        """Load the snapshot written by ``geosearch ingest --snapshot``."""
        snap = read_snapshot(path)
        return cls(snap.frame, snap.version)

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
        """Spaces within ``radius_m`` of the origin, by (distance, id)."""
        idx = self._ball(query.origin.lat, query.origin.lon, query.radius_m)
        idx = idx[self._passes(query.filters, idx)]
        dist = self._distances(query.origin.lat, query.origin.lon, idx)
        keep = dist <= query.radius_m
        return self._distance_page(idx[keep], dist[keep], query.limit, query.after)

    def nearest(self, query: NearestQuery) -> list[Hit]:
        """The k nearest spaces that pass the filters (within ``max_distance_m``)."""
        lat, lon, k = query.origin.lat, query.origin.lon, query.k
        matching = np.nonzero(self._passes(query.filters, None))[0]
        if matching.size == 0:
            return []
        cutoff = self._kth_distance_bound(lat, lon, k, matching, query.filters)
        if query.max_distance_m is not None:
            cutoff = min(cutoff, query.max_distance_m)
        idx = self._ball(lat, lon, cutoff)
        idx = idx[self._passes(query.filters, idx)]
        dist = self._distances(lat, lon, idx)
        keep = dist <= cutoff
        order = np.lexsort((idx[keep], dist[keep]))[:k]
        return [Hit(self._space(i), float(d))
                for i, d in zip(idx[keep][order], dist[keep][order], strict=True)]

    def polygon(self, query: PolygonQuery) -> Page:
        """Spaces covered by the area (boundary included)."""
        idx = np.sort(self._strtree.query(query.area, predicate="covers"))
        idx = idx[self._passes(query.filters, idx)]
        if query.origin is None:
            return self._id_page(idx, query.limit, query.after)
        dist = self._distances(query.origin.lat, query.origin.lon, idx)
        return self._distance_page(idx, dist, query.limit, query.after)

    def list(self, query: ListQuery) -> Page:
        """Every space that passes the filters, by id."""
        idx = np.nonzero(self._passes(query.filters, None))[0]
        return self._id_page(idx, query.limit, query.after)

    def get(self, space_id: str) -> Space | None:
        """One active space by id."""
        i = self._position.get(space_id)
        return None if i is None else self._space(i)

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity."""
        return {a.value: int(np.count_nonzero(self.mask & a.bit)) for a in Amenity}

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: id, lat, lon, country, city, amenities."""
        return pd.DataFrame({k: self._columns[k] for k in
                             ("id", "lat", "lon", "country", "city", "amenities")})

    def close(self) -> None:
        """Nothing to release."""

    # -- internals ----------------------------------------------------------------------

    def _space(self, i: int) -> Space:
        values = {f: self._columns[f][i] for f in _SPACE_FIELDS}
        values["amenities"] = tuple(values["amenities"])
        for key in ("capacity", "price_day", "postcode", "currency"):
            if pd.isna(values[key]):
                values[key] = None
        if values["capacity"] is not None:
            values["capacity"] = int(values["capacity"])
        if values["price_day"] is not None:
            values["price_day"] = float(values["price_day"])
        return Space(**values)

    def _passes(self, filters: Filters, idx: np.ndarray | None) -> np.ndarray:
        """Boolean mask of which spaces (all, or ``idx``) pass the filters."""
        sel = slice(None) if idx is None else idx
        ok = np.ones(self.size if idx is None else len(idx), dtype=bool)
        if filters.all_amenities:
            need = amenity_mask(filters.all_amenities)
            ok &= (self.mask[sel] & need) == need
        if filters.any_amenities:
            ok &= (self.mask[sel] & amenity_mask(filters.any_amenities)) != 0
        if filters.countries:
            ok &= np.isin(self.country[sel], list(filters.countries))
        if filters.city_key is not None:
            ok &= self.city_key[sel] == filters.city_key
        if filters.min_capacity is not None:
            ok &= self.capacity[sel] >= filters.min_capacity
        return ok

    def _ball(self, lat: float, lon: float, radius_m: float) -> np.ndarray:
        """Indices of every space whose chord distance is <= radius (a superset)."""
        if self._kdtree is None:
            return np.empty(0, dtype=np.int64)
        centre = ecef(lat, lon).reshape(3)
        found = self._kdtree.query_ball_point(centre, radius_m * (1 + _BALL_MARGIN) + 1e-6)
        return np.sort(np.asarray(found, dtype=np.int64))

    def _distances(self, lat: float, lon: float, idx: np.ndarray) -> np.ndarray:
        if idx.size == 0:
            return np.empty(0, dtype=float)
        return geodesic_m(lat, lon, self.lat[idx], self.lon[idx]).reshape(-1)

    def _kth_distance_bound(self, lat: float, lon: float, k: int, matching: np.ndarray,
                            filters: Filters) -> float:
        """A geodesic distance within which at least k matching spaces lie (or all)."""
        centre = ecef(lat, lon).reshape(3)
        if matching.size <= max(4 * k, self.size // 16):
            # Few matches: measure the chord to each and keep the k closest.
            chord = np.linalg.norm(self._xyz[matching] - centre, axis=1)
            take = matching[np.argsort(chord, kind="stable")[:k]]
        else:
            want = 4 * k
            while True:
                _, found = self._kdtree.query(centre, k=min(want, self.size))
                found = np.atleast_1d(found)
                take = found[self._passes(filters, found)][:k]
                if take.size >= k or want >= self.size:
                    break
                want *= 4
        return float(self._distances(lat, lon, take).max())

    def _distance_page(self, idx: np.ndarray, dist: np.ndarray, limit: int,
                       after: tuple | None) -> Page:
        order = np.lexsort((idx, dist))
        idx, dist = idx[order], dist[order]
        if after is not None:
            d0, id0 = float(after[0]), str(after[1])
            later = (dist > d0) | ((dist == d0) & (self.ids[idx] > id0))
            idx, dist = idx[later], dist[later]
        hits = [Hit(self._space(i), float(d)) for i, d in zip(idx[:limit], dist[:limit],
                                                              strict=True)]
        more = idx.size > limit
        return Page(hits, (hits[-1].distance_m, hits[-1].space.id) if more else None,
                    self._version)

    def _id_page(self, idx: np.ndarray, limit: int, after: tuple | None) -> Page:
        if after is not None:
            idx = idx[self.ids[idx] > str(after[-1])]
        hits = [Hit(self._space(i)) for i in idx[:limit]]
        more = idx.size > limit
        return Page(hits, (hits[-1].space.id,) if more else None, self._version)


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
