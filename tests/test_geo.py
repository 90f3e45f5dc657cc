"""The bounds between chords and WGS84 geodesics that the memory backend's searches rely
on, Lambert's estimate with its stated error, and the longitude-latitude boxes of a
geodesic disk (PostGIS's word plane), against pyproj's exact geodesic over random pairs
of every length: neighbours, cities apart, continents apart, near the poles, across ±180°
and nearly antipodal."""

from __future__ import annotations

import numpy as np
import pytest

from geosearch.geo import (
    chord_at_most,
    ecef,
    geodesic_at_most,
    geodesic_estimate,
    geodesic_m,
    lon_lat_boxes,
)


@pytest.fixture(scope="module")
def pairs():
    """300,000 pairs: (lat1, lon1, lat2, lon2, chord, geodesic)."""
    rng = np.random.default_rng(20)
    n = 300_000
    lat1 = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon1 = rng.uniform(-180, 180, n)
    scale = 10 ** rng.uniform(-5, 2.3, n)  # degrees apart: a metre to the whole globe
    lat2 = np.clip(lat1 + rng.normal(0, 1, n) * scale, -90, 90)
    lon2 = (lon1 + rng.normal(0, 1, n) * scale + 180) % 360 - 180
    far = rng.random(n) < 0.1  # nearly antipodal
    lat2[far] = np.clip(-lat1[far] + rng.normal(0, 0.3, far.sum()), -90, 90)
    lon2[far] = (lon1[far] + 360 + rng.normal(0, 0.3, far.sum())) % 360 - 180
    polar = rng.random(n) < 0.05
    lat1[polar] = np.sign(lat1[polar]) * rng.uniform(89.0, 90.0, polar.sum())
    chord = np.linalg.norm(ecef(lat1, lon1) - ecef(lat2, lon2), axis=1)
    return lat1, lon1, lat2, lon2, chord, geodesic_m(lat1, lon1, lat2, lon2)


def test_the_geodesic_is_at_most_its_bound_from_the_chord(pairs):
    *_, chord, geodesic = pairs
    assert geodesic.max() > 19_900_000  # the sample reaches the antipodes
    bound = geodesic_at_most(chord)
    assert (geodesic <= bound).all()
    near = chord < 100_000  # and the bound is tight where radius searches use it
    assert ((bound - geodesic)[near] <= 1e-4 * geodesic[near] + 1e-5).all()


def test_every_point_within_a_geodesic_is_within_its_chord_ball(pairs):
    *_, chord, geodesic = pairs
    reach = np.array([chord_at_most(g) for g in geodesic])
    assert (chord <= reach).all()
    assert (reach <= chord * 1.01 + 1e-5).all()  # within 1%: few extra candidates


def test_lamberts_estimate_stays_within_its_stated_error(pairs):
    _, _, lat2, lon2, _, _ = pairs
    for lat, lon in ((0.0, 0.0), (51.5, -0.12), (-33.9, 151.2), (89.99, 10.0),
                     (-17.7, 179.99), (64.1, -21.9)):
        # from one origin to the far ends of the random pairs
        estimate, error = geodesic_estimate(lat, lon, lat2, lon2)
        exact = geodesic_m(lat, lon, lat2, lon2)
        assert (np.abs(estimate - exact) <= error).all(), (lat, lon)
        assert np.isfinite(error).mean() > 0.9  # only the nearly antipodal go unbounded


def _inside(boxes, lat, lon) -> np.ndarray:
    return np.any([(w <= lon) & (lon <= e) & (s <= lat) & (lat <= n) for w, s, e, n in boxes],
                  axis=0)


def test_every_point_within_the_reach_is_in_a_box_of_its_disk():
    """From origins anywhere (at and near the poles, beside ±180°), points pyproj puts at
    any distance up to the reach, in every direction, on the edge too, lie in one of the
    boxes, for a reach of a metre to beyond half the globe."""
    from geosearch.geo import WGS84

    rng = np.random.default_rng(21)
    origins = [(90.0, 0.0), (-90.0, 33.0), (89.9999, -179.99), (-17.7, 179.999),
               (64.0, -179.98), (0.0, 0.0), (52.52, 13.4)]
    origins += [(float(np.degrees(np.arcsin(u))), float(v)) for u, v in
                zip(rng.uniform(-1, 1, 40), rng.uniform(-180, 180, 40), strict=True)]
    n = 4_000
    for lat, lon in origins:
        for reach in (1.0, 75.0, 2_000.0, 40_000.0, 900_000.0, 6e6, 1.3e7, 2.1e7):
            boxes = lon_lat_boxes(lat, lon, reach)
            distance = np.concatenate([rng.uniform(0, reach, n - 500), np.full(500, reach)])
            lon2, lat2, _ = WGS84.fwd(np.full(n, lon), np.full(n, lat),
                                      rng.uniform(-180, 180, n), distance)
            assert _inside(boxes, lat2, lon2).all(), (lat, lon, reach)


def test_a_small_disk_has_boxes_not_much_larger_than_it():
    """The boxes follow the disk: for a city-sized reach away from the poles, their area
    (on the sphere) is under twice the disk's; for a continent-sized one, under three
    times (a single box would be most of the globe)."""
    def sphere_area(boxes):
        return sum(np.radians(e - w) * (np.sin(np.radians(n)) - np.sin(np.radians(s)))
                   for w, s, e, n in boxes) * 6_371_008.8 ** 2

    for lat, lon in ((48.85, 2.35), (-33.9, 151.2), (64.1, -21.9), (1.3, 103.8)):
        for reach, most in ((2_000.0, 2.0), (50_000.0, 2.0), (3e6, 3.0)):
            cap = 2 * np.pi * 6_371_008.8 ** 2 * (1 - np.cos(reach / 6_371_008.8))
            assert sphere_area(lon_lat_boxes(lat, lon, reach)) < most * cap, (lat, reach)


def test_the_loaders_point_ewkb_is_shapelys():
    """The hex EWKB the PostGIS load writes column-wise is the one shapely writes."""
    import shapely

    from geosearch.loadrows import ewkb_points

    rng = np.random.default_rng(21)
    lon = np.concatenate([[-180.0, 180.0, -0.0, 13.404954], rng.uniform(-180, 180, 1000)])
    lat = np.concatenate([[90.0, -90.0, 0.0, 52.520008], rng.uniform(-90, 90, 1000)])
    points = shapely.set_srid(shapely.points(lon, lat), 4326)
    assert ewkb_points(lon, lat).to_pylist() == list(shapely.to_wkb(points, hex=True,
                                                                    include_srid=True))
