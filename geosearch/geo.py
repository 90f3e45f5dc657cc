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
_B = _A * (1 - _F)  # semi-minor axis
# the radii of curvature of the ellipsoid lie between b²/a (across the equator) and a²/b
# (at the poles)
R_LOW = _B * _B / _A
_R_HIGH = _A * _A / _B
_LONGEST = 20_003_932.0  # metres: the longest geodesic (half a meridian), rounded up
_LONG_CHORD = 12_000_000.0
H3_RESOLUTIONS = (7, 8, 9)
# lon_lat_boxes: a strip per this many degrees of latitude, at most _MAX_STRIPS; boxes are
# widened by BOX_PAD degrees (rounding, here and in the coordinates boxes are tested on)
_STRIP_DEG = 2.0
_MAX_STRIPS = 16
BOX_PAD = 1e-6


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


def chords_from(centre: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Straight-line distances in metres from an Earth-centred point to each of many."""
    d = xyz - centre
    return np.sqrt(np.einsum("ij,ij->i", d, d))


def chord_at_most(geodesic_m: float) -> float:
    """The longest chord between two points of the WGS84 ellipsoid whose geodesic is at
    most ``geodesic_m`` metres: the chord ball of this radius holds every point within
    that geodesic, and is tight to a few parts in a thousand at any length.

    A geodesic curves in space as the surface does along it, never less than a circle
    of radius a²/b; by Schur's comparison theorem its chord is then at most that of an
    arc of this circle as long as it (every geodesic is shorter than half the circle).
    A micrometre is added for rounding.
    """
    return 2 * _R_HIGH * math.sin(min(geodesic_m + 1e-6, math.pi * _R_HIGH) / (2 * _R_HIGH))


def geodesic_at_most(chord: np.ndarray) -> np.ndarray:
    """An upper bound of the WGS84 geodesic for each chord (metres): exceeds it by less
    than chord³ / (24 R²) near by, by less than 0.5% to 12,000 km of chord, and is the
    longest geodesic beyond.

    A geodesic curves in space at most as a circle of radius b²/a does; by Schur's
    theorem its chord is at least that of an arc of this circle as long as it, for arcs
    up to half the circle (19,903 km). On the ellipsoid, which departs from a sphere by
    0.34%, a chord under 12,000 km (15,500 km of arc on a sphere) has a geodesic far
    shorter than that; longer chords get the longest geodesic.
    """
    chord = np.asarray(chord, dtype=float)
    arc = 2 * R_LOW * np.arcsin(np.minimum(chord / (2 * R_LOW), 1.0))
    return np.where(chord < _LONG_CHORD, arc * (1 + 1e-12) + 1e-6, _LONGEST)


def geodesic_estimate(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic metres from one point to each of many by Lambert's formula (first order in
    the flattening), and how far each may be from the true geodesic: a fraction of it
    (2e-4, ten times the largest error seen over millions of pairs up to 19,000 km) plus
    a metre; an infinite margin for nearly antipodal pairs, where the formula fails.

    A closed form evaluated on whole arrays, far cheaper than the exact geodesic's
    iteration: it rules out far candidates before they are measured.
    """
    b1 = math.atan((1 - _F) * math.tan(math.radians(lat)))
    b2 = np.arctan((1 - _F) * np.tan(np.radians(lats)))
    half_dlon = np.radians(lons - lon) / 2
    h = np.sin((b2 - b1) / 2) ** 2 + math.cos(b1) * np.cos(b2) * np.sin(half_dlon) ** 2
    sigma = 2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    p, q = (b1 + b2) / 2, (b2 - b1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (sigma - np.sin(sigma)) * (np.sin(p) * np.cos(q) / np.cos(sigma / 2)) ** 2
        y = (sigma + np.sin(sigma)) * (np.cos(p) * np.sin(q) / np.sin(sigma / 2)) ** 2
    estimate = _A * (sigma - _F / 2 * (np.nan_to_num(x) + np.nan_to_num(y)))
    margin = np.where(sigma < 3.0, 2e-4 * estimate + 1.0, np.inf)
    return estimate, margin


def parallel(lat: float) -> tuple[float, float]:
    """The radius (distance from the axis) and height, in metres, of the WGS84 parallel
    at geodetic latitude ``lat`` (degrees)."""
    phi = math.radians(lat)
    n = _A / math.sqrt(1 - _E2 * math.sin(phi) ** 2)
    return n * math.cos(phi), n * (1 - _E2) * math.sin(phi)


def lon_lat_boxes(lat: float, lon: float, reach: float
                  ) -> list[tuple[float, float, float, float]]:
    """Longitude-latitude boxes ``(west, south, east, north)`` in degrees, west <= east
    within ±180, that together hold every point within ``reach`` metres (geodesic) of
    ``(lat, lon)``, at the poles and across ±180° too; ``reach`` may be infinite.

    A latitude band, cut into strips, each as wide as its points within the chord of
    ``reach`` (:func:`chord_at_most`) can be:

    - the band: a geodesic is at least as long as the meridian arc between the parallels
      of its ends, and a meridian curves at most as a circle of radius b²/a does;
    - a strip: a point of the parallel of radius ρ and height z is at the chord
      c² = (ρ0 - ρ)² + (z0 - z)² + 4 ρ0 ρ sin²(Δλ/2) from the origin (ρ0, z0); over the
      strip, the least (ρ0 - ρ)² and (z0 - z)² and the least ρ bound its Δλ.

    Far from the poles and ±180° a small reach gives one box; a continent-sized one,
    several strips that follow its cap, where a single box would hold most of the Earth.
    """
    chord = chord_at_most(reach)
    band = math.degrees(reach / R_LOW) + BOX_PAD
    south, north = max(-90.0, lat - band), min(90.0, lat + band)
    count = min(_MAX_STRIPS, max(1, math.ceil((north - south) / _STRIP_DEG)))
    edges = np.linspace(south, north, count + 1)
    rho0, z0 = parallel(lat)
    boxes: list[tuple[float, float, float, float]] = []
    for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        (rho_a, z_a), (rho_b, z_b) = parallel(a), parallel(b)
        rho_low, rho_high = min(rho_a, rho_b), _A if a <= 0 <= b else max(rho_a, rho_b)
        d_rho = 0.0 if rho_low <= rho0 <= rho_high else min(abs(rho0 - rho_low),
                                                             abs(rho0 - rho_high))
        d_z = 0.0 if z_a <= z0 <= z_b else min(abs(z0 - z_a), abs(z0 - z_b))
        room = chord * chord - d_rho * d_rho - d_z * d_z
        if room < 0:
            continue  # no point of the strip is that near
        h = room / (4 * rho0 * rho_low) if rho0 * rho_low > 0 else math.inf
        if h >= 1:  # the whole parallel: one box with the strip before when it was too
            if boxes and boxes[-1] == (-180.0, boxes[-1][1], 180.0, a):
                boxes[-1] = (-180.0, boxes[-1][1], 180.0, b)
            else:
                boxes.append((-180.0, a, 180.0, b))
            continue
        half = math.degrees(2 * math.asin(math.sqrt(h))) + BOX_PAD
        west, east = lon - half, lon + half
        boxes.append((max(west, -180.0), a, min(east, 180.0), b))
        if west < -180:
            boxes.append((west + 360, a, 180.0, b))
        if east > 180:
            boxes.append((-180.0, a, east - 360, b))
    return boxes


def ecef_point(lat: float, lon: float) -> np.ndarray:
    """:func:`ecef` of one point, as a vector of 3 (without array overhead)."""
    rho, z = parallel(lat)
    lam = math.radians(lon)
    return np.array([rho * math.cos(lam), rho * math.sin(lam), z])


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
    if minlon <= maxlon:  # shapely.box builds it in C; shapely.geometry.box in Python
        return shapely.box(minlon, minlat, maxlon, maxlat)
    return MultiPolygon([shapely.box(minlon, minlat, 180.0, maxlat),
                         shapely.box(-180.0, minlat, maxlon, maxlat)])


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
