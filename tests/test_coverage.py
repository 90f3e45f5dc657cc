"""Coverage reports: numbers known by construction, consistency, the API and the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest
from geographiclib.geodesic import Geodesic

from geosearch.api import create_app
from geosearch.backends.memory import MemoryBackend
from geosearch.model import Amenity
from geosearch.reference import market_cities
from geosearch.reports.coverage import Coverage, CoverageOptions

ROOT = Path(__file__).resolve().parents[1]


def city(name: str, country: str):
    cities = market_cities()
    return cities[(cities["name"] == name) & (cities["country_code"] == country)].iloc[0]


def offset(lat, lon, azimuth, metres):
    g = Geodesic.WGS84.Direct(lat, lon, azimuth, metres)
    return g["lat2"], g["lon2"]


@pytest.fixture(scope="module")
def handmade():
    """Two spaces in Berlin, one in Hamburg, one in the Harz far from any big city."""
    berlin, hamburg = city("Berlin", "DE"), city("Hamburg", "DE")
    east = offset(berlin.latitude, berlin.longitude, 90, 3000)
    rows = [("b1", berlin.latitude, berlin.longitude, ["wifi", "parking"]),
            ("b2", *east, ["wifi"]),
            ("h1", hamburg.latitude, hamburg.longitude, ["wifi"]),
            ("harz", 51.80, 10.62, ["wifi"])]
    return pd.DataFrame([{"id": i, "lat": a, "lon": b, "country": "DE", "city": "x",
                          "amenities": am} for i, a, b, am in rows])


def brute_cells(c, res=8):
    """The cells of a city found without polygon filling: a wide disk, then distances."""
    centre = h3.latlng_to_cell(c.latitude, c.longitude, res)
    cells = set()
    for cell in h3.grid_disk(centre, 60):
        lat, lon = h3.cell_to_latlng(cell)
        if Geodesic.WGS84.Inverse(c.latitude, c.longitude, lat, lon)["s12"] <= c.radius_m:
            cells.add(cell)
    return cells | {centre}


def nearest_to(cells, spaces):
    out = {}
    for cell in cells:
        lat, lon = h3.cell_to_latlng(cell)
        out[cell] = min(Geodesic.WGS84.Inverse(lat, lon, a, b)["s12"]
                        for a, b in zip(spaces["lat"], spaces["lon"], strict=True))
    return out


def test_handmade_counts_and_coverage(handmade):
    cov = Coverage(handmade, CoverageOptions())
    de = cov.country_table().set_index("country").loc["DE"]
    table = cov.city_table("DE").set_index("city")
    berlin = city("Berlin", "DE")

    assert (de["spaces"], de["spaces_in_cities"], de["spaces_outside_cities"]) == (4, 3, 1)
    assert de["cities_with_spaces"] == 2
    assert de["cities_without_spaces"] == de["cities"] - 2
    assert table.loc["Berlin", "spaces"] == 2 and table.loc["Hamburg", "spaces"] == 1
    assert table.loc["Berlin", "spaces_per_100k"] == pytest.approx(2 / berlin.population * 1e5,
                                                                   abs=1e-3)
    cells = brute_cells(berlin)
    nearest = nearest_to(cells, handmade)
    assert table.loc["Berlin", "cells"] == len(cells)
    assert table.loc["Berlin", "covered_cells"] == sum(d <= 1000 for d in nearest.values())
    assert table.loc["Berlin", "median_nearest_m"] == pytest.approx(
        np.median(list(nearest.values())), abs=0.5)
    assert table.loc["Munich", "spaces"] == 0 and table.loc["Munich", "covered_cells"] == 0
    assert "Munich" in [c["city"] for c in de["expansion_candidates"]]


def test_amenity_filter_counts_only_matching_spaces(handmade):
    cov = Coverage(handmade, CoverageOptions(amenities=frozenset({Amenity.PARKING})))
    table = cov.city_table("DE").set_index("city")
    assert table.loc["Berlin", "spaces"] == 1 and table.loc["Hamburg", "spaces"] == 0
    assert table.loc["Berlin", "share_parking"] == 1.0


def test_walking_distance_widens_coverage(handmade):
    near = Coverage(handmade, CoverageOptions(walk_m=500)).city_table("DE")
    far = Coverage(handmade, CoverageOptions(walk_m=3000)).city_table("DE")
    assert (far["covered_cells"].to_numpy() >= near["covered_cells"].to_numpy()).all()
    assert far["covered_cells"].sum() > near["covered_cells"].sum()


def test_consistency_on_the_full_dataset(memory_feed):
    spaces = memory_feed.active_frame()
    cov = Coverage(spaces, CoverageOptions())
    countries = cov.country_table()

    assert (countries["spaces"] == countries["spaces_in_cities"]
            + countries["spaces_outside_cities"]).all()
    assert countries["spaces"].sum() == len(spaces)
    assert len(countries) == 40
    in_cells = set(cov.cells["h3"])
    located = pd.Series([h3.latlng_to_cell(a, b, 8) for a, b in
                         zip(spaces["lat"], spaces["lon"], strict=True)])
    assert cov.cells["spaces"].sum() == located.isin(in_cells).sum()


def test_country_counts_match_the_search_api(client, memory_feed):
    body = client.get("/v1/coverage/countries").get_json()
    rows = {r["country"]: r for r in body["countries"]}
    for code in ("DE", "NZ", "SG"):
        listed = client.get(f"/v1/spaces?country={code}&limit=500").get_json()
        assert rows[code]["spaces"] == listed["numberReturned"]


def test_cities_and_hexes_endpoints(client):
    cities = client.get("/v1/coverage/cities?country=NZ&walk_m=2000").get_json()
    assert cities["country"] == "NZ" and cities["options"]["walk_m"] == 2000
    assert cities["cities"][0]["city"] == "Auckland"
    hexes = client.get("/v1/coverage/hexes?country=NZ&res=7&amenities=wifi")
    assert hexes.content_type == "application/geo+json"
    body = hexes.get_json()
    assert body["features"] and all(f["geometry"]["type"] in ("Polygon", "MultiPolygon")
                                    for f in body["features"])
    assert any(not f["properties"]["covered"] for f in body["features"])
    assert {h3.get_resolution(f["id"]) for f in body["features"]} == {7}


@pytest.mark.parametrize(("url", "param"), [
    ("/v1/coverage/cities", "country"), ("/v1/coverage/cities?country=Germany", "country"),
    ("/v1/coverage/cities?country=DE,DE", "country"),
    ("/v1/coverage/hexes?country=DE,AT", "country"),
    ("/v1/coverage/hexes?country=DE&res=12", "res"),
    ("/v1/coverage/countries?walk_m=0", "walk_m"),
    ("/v1/coverage/countries?amenities=sauna", "amenities"),
])
def test_coverage_errors(client, url, param):
    resp = client.get(url)
    assert resp.status_code == 400 and resp.content_type == "application/problem+json"
    assert param in {e["param"] for e in resp.get_json()["errors"]}


@pytest.mark.parametrize("view", ["cities", "hexes"])
def test_a_country_the_report_does_not_cover_is_400_listing_those_it_does(client, view):
    resp = client.get(f"/v1/coverage/{view}?country=xx")
    assert resp.status_code == 400 and resp.content_type == "application/problem+json"
    [error] = resp.get_json()["errors"]
    assert error["param"] == "country" and "XX" in error["message"]
    assert "DE" in error["message"] and "NZ" in error["message"]


def test_report_cli_writes_every_country(tmp_path, feed_result):
    from geosearch.snapshot import write_snapshot

    snap = tmp_path / "snap"
    write_snapshot(feed_result.frame, snap, feed_result.meta())
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "geosearch.cli", "report", "--out", str(out),
                           "--snapshot", str(snap)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    index = (out / "index.html").read_text()
    assert index.count('/index.html">') == 40
    assert "http" not in index
    for code in ("DE", "US", "SG"):
        assert (out / code / "map.png").stat().st_size > 10_000
        page = (out / code / "index.html").read_text()
        assert "<img src='map.png'" in page and "https://" not in page
        cities = pd.read_csv(out / code / "cities.csv")
        assert cities["spaces"].sum() <= len(feed_result.frame)


def test_app_caches_coverage_per_dataset(memory_feed):
    app = create_app(backend=memory_feed)
    client = app.test_client()
    assert client.get("/v1/coverage/countries").status_code == 200
    other = create_app(backend=MemoryBackend.from_frame(memory_feed.active_frame().assign(
        name="", address="", postcode=None, capacity=None, price_day=None, currency=None,
        status="active", h3_r7="", h3_r8="", h3_r9="", geocode_precision="input").head(10),
        "tiny"))
    tiny = other.test_client().get("/v1/coverage/countries").get_json()
    assert sum(r["spaces"] for r in tiny["countries"]) == 10


def test_equivalent_options_share_one_computation(memory_feed):
    from geosearch.settings import Settings

    app = create_app(Settings(heavy_rate_limit=""), backend=memory_feed)
    client = app.test_client()
    cache = app.extensions["coverage.cache"]
    urls = ["/v1/coverage/cities?country=DE&res=7&amenities=wifi",
            "/v1/coverage/cities?country=%20DE%20&res=7&amenities=wifi,wifi,WIFI",
            "/v1/coverage/cities?country=de&res=07&amenities=wifi&walk_m=1e3",
            "/v1/coverage/hexes?country=DE&res=7&amenities=wifi&walk_m=1000.0",
            "/v1/coverage/countries?res=7&amenities=%20wifi"]
    bodies = [client.get(u) for u in urls]
    assert all(b.status_code == 200 for b in bodies)
    assert bodies[0].get_json() == bodies[1].get_json() == bodies[2].get_json()
    assert cache.computed == 1


def test_concurrent_identical_requests_compute_once(memory_feed):
    import threading

    from geosearch.settings import Settings

    app = create_app(Settings(heavy_rate_limit=""), backend=memory_feed)
    cache = app.extensions["coverage.cache"]
    statuses = []

    def ask():
        statuses.append(app.test_client().get("/v1/coverage/countries?res=6").status_code)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 6
    assert cache.computed == 1


def test_heavy_endpoints_are_rate_limited_per_client_with_retry_after(memory_feed):
    from geosearch.settings import Settings

    client = create_app(Settings(heavy_rate_limit="2/minute"), backend=memory_feed).test_client()
    url = "/v1/coverage/cities?country=NZ"
    assert [client.get(url).status_code for _ in range(2)] == [200, 200]
    limited = client.get(url)
    assert limited.status_code == 429 and limited.content_type == "application/problem+json"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert "2 per 1 minute" in limited.get_json()["detail"]
    # another client is not limited, and the searches are not limited at all
    other = client.get(url, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert other.status_code == 200
    assert all(client.get("/v1/spaces?limit=1").status_code == 200 for _ in range(5))
