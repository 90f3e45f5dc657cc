"""Geodesy and geometry helpers: WGS84 distances, ECEF coordinates, areas, H3 cells.

Distances are geodesics on the WGS84 ellipsoid (pyproj's GeographicLib port), the same
quantity PostGIS returns for ``ST_Distance(geography, geography)``.
"""

from __future__ import annotations

import math

import h3
import numpy as np
import shapely
import shapely.affinity
from pyproj import Geod
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

WGS84 = Geod(ellps="WGS84")
_A = 6_378_137.0  # WGS84 semi-major axis, metres
_F = 1 / 298.257223563
_E2 = _F * (2 - _F)
H3_RESOLUTIONS = (7, 8, 9)


def geodesic_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Geodesic distance in metres between points (scalars or arrays, broadcast).

    >>> round(float(geodesic_m(52.52, 13.405, 48.8566, 2.3522)) / 1000)
    880
    """
    lat1, lon1, lat2, lon2 = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (lat1, lon1, lat2, lon2))
    )
    _, _, dist = WGS84.inv(lon1, lat1, lon2, lat2)
    return np.asarray(dist, dtype=float)


def geodesic_from(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Geodesic metres from one point to each of many (the hot path of every search).

    >>> geodesic_from(52.52, 13.405, np.array([48.8566]), np.array([2.3522])).round(-3)
    array([880000.])
    """
    n = len(lats)
    _, _, dist = WGS84.inv(np.full(n, lon), np.full(n, lat), lons, lats)
    return dist


def ecef_point(lat: float, lon: float) -> np.ndarray:
    """:func:`ecef` of one point, as a vector of 3 (without array overhead)."""
    phi, lam = math.radians(lat), math.radians(lon)
    sin_lat = math.sin(phi)
    n = _A / math.sqrt(1 - _E2 * sin_lat * sin_lat)
    return np.array([n * math.cos(phi) * math.cos(lam), n * math.cos(phi) * math.sin(lam),
                     n * (1 - _E2) * sin_lat])


def ecef(lat, lon) -> np.ndarray:
    """Earth-centred Cartesian coordinates (metres) of points on the WGS84 ellipsoid.

    The straight chord between two surface points is never longer than the geodesic
    between them, so a ball of radius r in these coordinates holds every point within
    geodesic distance r: a candidate filter that needs no care at the poles or at ±180°.
    """
    lat = np.radians(np.asarray(lat, dtype=float))
    lon = np.radians(np.asarray(lon, dtype=float))
    sin_lat = np.sin(lat)
    n = _A / np.sqrt(1 - _E2 * sin_lat**2)
    x = n * np.cos(lat) * np.cos(lon)
    y = n * np.cos(lat) * np.sin(lon)
    z = n * (1 - _E2) * sin_lat
    return np.stack([x, y, z], axis=-1)


def bbox_area(minlon: float, minlat: float, maxlon: float, maxlat: float) -> BaseGeometry:
    """The area of an RFC 7946 bbox; ``minlon > maxlon`` crosses the antimeridian.

    >>> bbox_area(170, -10, -170, 10).geom_type
    'MultiPolygon'
    """
    if minlon <= maxlon:
        return box(minlon, minlat, maxlon, maxlat)
    return MultiPolygon([box(minlon, minlat, 180.0, maxlat), box(-180.0, minlat, maxlon, maxlat)])


def polygon_parts(geom: BaseGeometry) -> list[Polygon]:
    """The polygons of a Polygon or MultiPolygon."""
    return list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]


def latlng_cells(lat: float, lon: float) -> dict[int, str]:
    """The H3 cells of a point at the resolutions geosearch stores (7, 8 and 9)."""
    return {res: h3.latlng_to_cell(lat, lon, res) for res in H3_RESOLUTIONS}


def cell_rings(cell: str) -> list[list[tuple[float, float]]]:
    """An H3 cell's outline as closed lon/lat rings: one, or two for a cell that crosses
    ±180° (split there, as RFC 7946 asks)."""
    ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(cell)]
    ring.append(ring[0])
    lons = [p[0] for p in ring]
    if max(lons) - min(lons) <= 180:
        return [ring]
    shifted = Polygon([(lng + 360 if lng < 0 else lng, lat) for lng, lat in ring])
    east = shifted.intersection(box(0, -90, 180, 90))
    west = shapely.affinity.translate(shifted.intersection(box(180, -90, 540, 90)), -360)
    return [list(p.exterior.coords) for p in polygon_parts(east) + polygon_parts(west)]


def cell_geojson(cell: str) -> dict:
    """An H3 cell as a GeoJSON Polygon, or a MultiPolygon when split at ±180°."""
    rings = cell_rings(cell)
    if len(rings) == 1:
        return {"type": "Polygon", "coordinates": [rings[0]]}
    return {"type": "MultiPolygon", "coordinates": [[r] for r in rings]}
