"""The floors that `make bench` measures geosearch against, in the same run.

- :class:`KdFloor`: the least work a radius or nearest query can do in memory: a plain
  k-d tree over Earth-centred coordinates, exact WGS84 distances (pyproj) for the
  candidates, the amenity bitmask, a sort by (distance, row). No paging, no filters but
  the bitmask, no result objects: the page's ids and distances only.
- ``floor_app``: a minimal Flask app under the same gunicorn server and settings as
  ``geosearch serve``, answering each benchmark URL with the bytes geosearch returned for
  it (read from the file ``GEOSEARCH_FLOOR_RESPONSES``), or, with
  ``GEOSEARCH_FLOOR_DSN`` set, running the raw SQL of the PostGIS backend with psycopg's
  prepared statements and returning its JSON.
"""

from __future__ import annotations

import numpy as np
from pyproj import Geod
from scipy.spatial import cKDTree

GEOD = Geod(ellps="WGS84")
_A, _F = 6_378_137.0, 1 / 298.257223563
_E2 = _F * (2 - _F)


def ecef(lat, lon) -> np.ndarray:
    """Earth-centred coordinates of WGS84 points (metres)."""
    lat, lon = np.radians(lat), np.radians(lon)
    n = _A / np.sqrt(1 - _E2 * np.sin(lat) ** 2)
    return np.stack([n * np.cos(lat) * np.cos(lon), n * np.cos(lat) * np.sin(lon),
                     n * (1 - _E2) * np.sin(lat)], axis=-1)


class KdFloor:
    """Radius and nearest over arrays, with nothing but the necessary work."""

    def __init__(self, ids: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                 mask: np.ndarray) -> None:
        self.ids, self.lat, self.lon, self.mask = ids, lat, lon, mask
        self.tree = cKDTree(ecef(lat, lon))

    def radius(self, lat: float, lon: float, radius_m: float, need: int, limit: int):
        """(ids, distances) of the first page of a radius query."""
        idx = np.asarray(self.tree.query_ball_point(ecef(lat, lon), radius_m + 1e-3),
                         dtype=np.int64)
        idx = idx[(self.mask[idx] & need) == need]
        _, _, d = GEOD.inv(np.full(idx.size, lon), np.full(idx.size, lat), self.lon[idx],
                           self.lat[idx])
        keep = d <= radius_m
        idx, d = idx[keep], d[keep]
        order = np.lexsort((idx, d))[:limit]
        return self.ids[idx[order]].tolist(), d[order].tolist()

    def nearest(self, lat: float, lon: float, k: int, need: int):
        """(ids, distances) of the k nearest rows that have the amenities ``need``."""
        centre = ecef(lat, lon)
        want = 4 * k
        while True:
            _, found = self.tree.query(centre, k=min(want, len(self.ids)))
            take = found[(self.mask[found] & need) == need][:k]
            if take.size >= k or want >= len(self.ids):
                break
            want *= 4
        _, _, d = GEOD.inv(np.full(take.size, lon), np.full(take.size, lat),
                           self.lon[take], self.lat[take])
        idx = np.asarray(self.tree.query_ball_point(centre, float(d.max()) + 1e-3),
                         dtype=np.int64)
        idx = idx[(self.mask[idx] & need) == need]
        _, _, d = GEOD.inv(np.full(idx.size, lon), np.full(idx.size, lat), self.lon[idx],
                           self.lat[idx])
        order = np.lexsort((idx, d))[:k]
        return self.ids[idx[order]].tolist(), d[order].tolist()
