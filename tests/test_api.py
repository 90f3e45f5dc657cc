"""The HTTP contract (shared/api.md): every endpoint and every error case."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from flask import request
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from geosearch.api import create_app
from geosearch.api.paging import own_url
from geosearch.api.params import query_args
from geosearch.backends.memory import MemoryBackend
from geosearch.features import Hits
from geosearch.model import Amenity, Filters
from geosearch.settings import Settings
from geosearch.testing import oracle

BERLIN = {"lat": 52.52, "lon": 13.405}
SQUARE = {"type": "Polygon", "coordinates": [[[13.2, 52.4], [13.6, 52.4], [13.6, 52.6],
                                              [13.2, 52.6], [13.2, 52.4]]]}


def problem_of(resp, status: int) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.content_type == "application/problem+json"
    body = resp.get_json()
    assert {"type", "title", "status", "detail", "errors"} <= set(body)
    assert body["status"] == status
    text = resp.get_data(as_text=True)
    assert "Traceback" not in text and "SELECT" not in text
    return body


def params_named(body: dict) -> set[str]:
    return {e["param"] for e in body["errors"]}


def walk(client, url, **kwargs):
    """Follow ``next`` cursors to the end; returns all features."""
    features, cursor = [], None
    while True:
        sep = "&" if "?" in url else "?"
        page_url = url if cursor is None else f"{url}{sep}cursor={cursor}"
        resp = client.post(page_url, **kwargs) if "json" in kwargs else client.get(page_url)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        body = resp.get_json()
        assert body["numberReturned"] == len(body["features"])
        features += body["features"]
        cursor = body.get("next")
        if cursor is None:
            assert not any(link["rel"] == "next" for link in body["links"])
            return features
        assert any(link["rel"] == "next" for link in body["links"])


def test_radius_returns_geojson_with_distances_in_order(client, feed_result):
    resp = client.get("/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=8000&amenities=wifi")

    assert resp.status_code == 200 and resp.content_type == "application/geo+json"
    body = resp.get_json()
    want = oracle.radius(oracle_frame(feed_result), 52.52, 13.405, 8000,
                         Filters(all_amenities=frozenset({Amenity.WIFI})))
    assert [f["id"] for f in body["features"]] == [i for i, _ in want][:50]
    for f, (_, d) in zip(body["features"], want, strict=False):
        assert f["properties"]["distance_m"] == pytest.approx(d, abs=1.0)
        assert f["geometry"]["type"] == "Point"
        assert "wifi" in f["properties"]["amenities"]


def oracle_frame(result):
    frame = result.frame
    return frame[frame["status"] == "active"].reset_index(drop=True)


def test_radius_pages_walk_every_match_once(client, feed_result):
    features = walk(client, "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=30000&limit=7")

    want = oracle.radius(oracle_frame(feed_result), 52.52, 13.405, 30000, Filters())
    assert [f["id"] for f in features] == [i for i, _ in want]
    assert len(features) > 14


def test_nearest_applies_filters_before_k(client):
    body = client.get("/v1/spaces/nearest?lat=35.68&lon=139.69&k=5&amenities=childcare"
                      "&country=JP").get_json()

    assert body["numberReturned"] == 5
    assert all("childcare" in f["properties"]["amenities"] for f in body["features"])
    distances = [f["properties"]["distance_m"] for f in body["features"]]
    assert distances == sorted(distances)


def test_nearest_honours_max_distance(client):
    body = client.get("/v1/spaces/nearest?lat=52.52&lon=13.405&k=100&max_distance_m=3000"
                      ).get_json()
    assert all(f["properties"]["distance_m"] <= 3000 for f in body["features"])


def test_polygon_body_and_feature_body_agree_and_page(client):
    as_geometry = walk(client, "/v1/spaces/polygon?limit=5", json=SQUARE)
    as_feature = walk(client, "/v1/spaces/polygon?limit=5",
                      json={"type": "Feature", "properties": {}, "geometry": SQUARE})

    ids = [f["id"] for f in as_geometry]
    assert ids == [f["id"] for f in as_feature] and ids == sorted(ids) and len(ids) > 5
    assert all("distance_m" not in f["properties"] for f in as_geometry)


def test_polygon_with_origin_orders_by_distance(client):
    body = client.post("/v1/spaces/polygon?lat=52.52&lon=13.405", json=SQUARE).get_json()
    distances = [f["properties"]["distance_m"] for f in body["features"]]
    assert distances and distances == sorted(distances)


def test_bbox_matches_the_same_polygon(client):
    box = walk(client, "/v1/spaces/bbox?bbox=13.2,52.4,13.6,52.6&limit=4")
    poly = walk(client, "/v1/spaces/polygon?limit=500", json=SQUARE)
    assert [f["id"] for f in box] == [f["id"] for f in poly]


def test_bbox_across_the_antimeridian(client):
    body = client.get("/v1/spaces/bbox?bbox=170,-50,-170,-30&limit=500").get_json()
    ids = {f["id"] for f in body["features"]}
    lons = [f["geometry"]["coordinates"][0] for f in body["features"]]
    assert any(i.startswith("sd-nz") for i in ids)
    assert all(lon >= 170 or lon <= -170 for lon in lons)


def test_list_walks_all_active_spaces_by_id(client, feed_result):
    features = walk(client, "/v1/spaces?limit=500")
    frame = oracle_frame(feed_result)
    assert [f["id"] for f in features] == sorted(frame["id"])


def test_filters_country_city_capacity(client):
    body = client.get("/v1/spaces?country=de,AT&city=BERLIN&min_capacity=50&limit=500"
                      ).get_json()
    assert body["features"]
    for f in body["features"]:
        p = f["properties"]
        assert p["country"] == "DE" and p["city"] == "Berlin" and p["capacity"] >= 50


def test_amenities_any(client):
    body = client.get("/v1/spaces?amenities_any=childcare,pet_friendly&limit=100").get_json()
    assert all({"childcare", "pet_friendly"} & set(f["properties"]["amenities"])
               for f in body["features"])


def test_one_space_and_unknown_id(client, feed_result):
    space_id = oracle_frame(feed_result)["id"].iloc[0]
    resp = client.get(f"/v1/spaces/{space_id}")
    assert resp.status_code == 200 and resp.get_json()["id"] == space_id
    assert "distance_m" not in resp.get_json()["properties"]
    problem_of(client.get("/v1/spaces/no-such-space"), 404)


def test_amenities_lists_the_vocabulary_with_counts(client, feed_result):
    body = client.get("/v1/amenities").get_json()
    names = [a["name"] for a in body["amenities"]]
    assert len(names) == 18 and "wifi" in names
    wifi = next(a for a in body["amenities"] if a["name"] == "wifi")
    frame = oracle_frame(feed_result)
    assert wifi["count"] == sum("wifi" in a for a in frame["amenities"])
    assert wifi["label"] == "Wi-Fi"


def test_health_and_readiness(client, feed_result):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.get_json()["dataset_version"] == feed_result.report.dataset_version


def test_readiness_without_a_dataset_is_503(tmp_path):
    app = create_app(Settings(snapshot=tmp_path / "none"))
    assert problem_of(app.test_client().get("/readyz"), 503)["nodes"] == []
    problem_of(app.test_client().get("/v1/spaces"), 503)


@pytest.mark.parametrize(("url", "param"), [
    ("/v1/spaces/radius?lat=91&lon=0&radius_m=10", "lat"),
    ("/v1/spaces/radius?lat=0&lon=-180.5&radius_m=10", "lon"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=abc", "radius_m"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=0", "radius_m"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=100001", "radius_m"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=nan", "radius_m"),
    ("/v1/spaces/radius?lon=0&radius_m=10", "lat"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=10&limit=0", "limit"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=10&limit=501", "limit"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=10&amenities=sauna", "amenities"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=10&amenities_any=wifi,jacuzzi", "amenities_any"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=10&country=Germany", "country"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=10&min_capacity=-1", "min_capacity"),
    ("/v1/spaces/radius?lat=0&lon=0&radius_m=10&cursor=garbage", "cursor"),
    ("/v1/spaces/nearest?lat=0&lon=0&k=0", "k"),
    ("/v1/spaces/nearest?lat=0&lon=0&k=101", "k"),
    ("/v1/spaces/nearest?lat=0&lon=0&max_distance_m=-5", "max_distance_m"),
    ("/v1/spaces/bbox?bbox=1,2,3", "bbox"),
    ("/v1/spaces/bbox?bbox=0,10,5,5", "bbox"),
    ("/v1/spaces/bbox", "bbox"),
    ("/v1/spaces/bbox?bbox=0,0,1,1&lat=5", "lon"),
    ("/v1/spaces?limit=x", "limit"),
])
def test_bad_parameters_are_named_with_what_is_valid(client, url, param):
    body = problem_of(client.get(url), 400)
    assert param in params_named(body)
    assert all(e["message"] for e in body["errors"])


def test_unknown_amenity_lists_the_valid_names(client):
    body = problem_of(client.get("/v1/spaces/nearest?lat=0&lon=0&amenities=sauna"), 400)
    assert "access_24_7" in body["errors"][0]["message"]


@pytest.mark.parametrize(("body", "why"), [
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, "close"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "valid"),
    ({"type": "Point", "coordinates": [0, 0]}, "Polygon"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "4 positions"),
    ({"type": "Polygon", "coordinates": [[[0, 95], [1, 0], [1, 1], [0, 95]]]}, "range"),
    ({"type": "Polygon", "coordinates": [[["a", 0], [1, 0], [1, 1], ["a", 0]]]}, "position"),
    ({"type": "MultiPolygon", "coordinates": []}, "MultiPolygon"),
])
def test_bad_polygons_are_400_naming_the_body(client, body, why):
    problem = problem_of(client.post("/v1/spaces/polygon", json=body), 400)
    assert params_named(problem) == {"body"}
    assert why in problem["errors"][0]["message"]


def test_polygon_body_not_json(client):
    problem = problem_of(client.post("/v1/spaces/polygon", data="{nope",
                                     content_type="application/json"), 400)
    assert params_named(problem) == {"body"}


def test_polygon_of_too_many_vertices(client):
    ring = [[i * 1e-4, 0.0] for i in range(10_001)] + [[0.5, 1.0], [0.0, 0.0]]
    problem = problem_of(client.post("/v1/spaces/polygon",
                                     json={"type": "Polygon", "coordinates": [ring]}), 400)
    assert "10000" in problem["errors"][0]["message"]


def test_body_over_one_mebibyte(client):
    big = json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]],
                      "pad": "x" * (1024 * 1024)})
    problem_of(client.post("/v1/spaces/polygon", data=big, content_type="application/json"),
               413)


def test_wrong_method_and_unknown_route_are_problems(client):
    problem_of(client.post("/v1/spaces/radius?lat=0&lon=0&radius_m=5"), 405)
    problem_of(client.delete("/v1/spaces/polygon"), 405)
    problem_of(client.get("/v2/nothing"), 404)


@pytest.mark.parametrize(("path", "allowed"), [
    ("polygon", {"POST", "OPTIONS"}), ("radius", {"GET", "HEAD", "OPTIONS"}),
    ("nearest", {"GET", "HEAD", "OPTIONS"}), ("bbox", {"GET", "HEAD", "OPTIONS"})])
def test_the_search_endpoints_names_are_no_space_ids(client, path, allowed):
    """GET /v1/spaces/polygon is a 405 naming POST, not "no space has the id 'polygon'";
    neither the reads nor the writes of one space answer on these paths."""
    for method in ("GET", "PUT", "PATCH", "DELETE", "POST"):
        if method in allowed:
            continue
        resp = client.open(f"/v1/spaces/{path}", method=method)
        problem_of(resp, 405)
        assert _listed(resp.headers["Allow"]) == allowed
    assert _listed(client.options(f"/v1/spaces/{path}").headers["Allow"]) == allowed
    assert client.get(f"/v1/spaces/{path}x").status_code == 404  # an id like any other


def test_amenities_are_read_in_any_case_as_the_document_says(client):
    by_case = [client.get(f"/v1/spaces?limit=5&amenities={a}").get_json()
               for a in ("wifi", "WIFI", "WiFi, Coffee")]
    assert by_case[0]["features"] == by_case[1]["features"]
    assert by_case[2]["features"]
    schema = next(p["schema"] for p in client.get("/openapi.json").get_json()["paths"]
                  ["/v1/spaces"]["get"]["parameters"] if p["name"] == "amenities")
    for text in ("wifi", "WIFI", "WiFi, Coffee", ""):
        assert re.fullmatch(schema["pattern"], text)
    assert not re.fullmatch(schema["pattern"], "sauna")


def test_cursor_of_another_query_is_400_and_of_another_dataset_is_410(feed_result):
    first = MemoryBackend.from_frame(feed_result.frame, "v1")
    app = create_app(Settings(), backend=first)
    client = app.test_client()
    body = client.get("/v1/spaces?limit=2").get_json()
    cursor = body["next"]

    other_query = client.get(f"/v1/spaces?limit=2&country=DE&cursor={cursor}")
    problem_of(other_query, 400)

    newer = create_app(Settings(), backend=MemoryBackend.from_frame(feed_result.frame, "v2"))
    gone = newer.test_client().get(f"/v1/spaces?limit=2&cursor={cursor}")
    assert params_named(problem_of(gone, 410)) == {"cursor"}


def test_limit_may_change_between_pages(client):
    body = client.get("/v1/spaces?limit=3").get_json()
    more = client.get(f"/v1/spaces?limit=10&cursor={body['next']}").get_json()
    assert more["features"][0]["id"] > body["features"][-1]["id"]


def test_openapi_document_is_valid_and_lists_every_endpoint(client):
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    for path in ("/v1/spaces/radius", "/v1/spaces/nearest", "/v1/spaces/polygon",
                 "/v1/spaces/bbox", "/v1/spaces", "/v1/spaces/{id}", "/v1/amenities",
                 "/healthz", "/readyz", "/v1/coverage/countries", "/v1/coverage/cities",
                 "/v1/coverage/hexes", "/ogc/collections/spaces/items", "/"):
        assert path in doc["paths"], path


def test_every_route_is_documented_with_the_parameters_its_view_reads(memory_feed):
    from geosearch.api.openapi import openapi_path

    app = create_app(Settings(), backend=memory_feed)
    doc = app.test_client().get("/openapi.json").get_json()
    undocumented = [r.rule for r in app.url_map.iter_rules()
                    if r.endpoint != "static" and not r.endpoint.endswith(".static")
                    and r.endpoint != "ogc.unknown_collection"
                    and openapi_path(r.rule) not in doc["paths"]]
    assert undocumented == []
    for path, item in doc["paths"].items():
        for op in item.values():
            named = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert named == set(re.findall(r"{(\w+)}", path)), path
    # the parameters documented are the ones the view reads: a bad value of each is a 400
    # naming it (a parameter the view did not read would be ignored)
    for param in doc["paths"]["/v1/spaces/radius"]["get"]["parameters"]:
        query = {"lat": "52.5", "lon": "13.4", "radius_m": "900", param["name"]: "é" * 300}
        body = problem_of(app.test_client().get("/v1/spaces/radius", query_string=query), 400)
        assert param["name"] in params_named(body)


def test_the_document_states_the_bounds_the_api_enforces():
    from geosearch.model import MAX_DISTANCE_M, MAX_K, MAX_LIMIT, MAX_RADIUS_M

    app = create_app(Settings(snapshot="does/not/exist", max_body_bytes=2048))
    client = app.test_client()
    doc = client.get("/openapi.json").get_json()

    def schema(path: str, name: str, method: str = "get") -> dict:
        (param,) = [p for p in doc["paths"][path][method]["parameters"] if p["name"] == name]
        return param["schema"]

    for path, name, bound in (("/v1/spaces/radius", "radius_m", MAX_RADIUS_M),
                              ("/v1/spaces/nearest", "max_distance_m", MAX_DISTANCE_M),
                              ("/v1/spaces/nearest", "k", MAX_K),
                              ("/v1/spaces", "limit", MAX_LIMIT)):
        assert schema(path, name)["maximum"] == bound
        query = {"lat": "1", "lon": "1", "radius_m": "1", "bbox": "0,0,1,1",
                 name: str(bound * 2)}
        assert name in params_named(problem_of(client.get(path, query_string=query), 400))
    polygon = doc["paths"]["/v1/spaces/polygon"]["post"]
    assert "2,048 bytes" in polygon["responses"]["413"]["description"]
    area = polygon["requestBody"]["content"]["application/json"]["schema"]
    assert "2,048 bytes" in area["description"] and "10,000 vertices" in area["description"]
    big = json.dumps({**SQUARE, "pad": "x" * 2048})
    problem_of(client.post("/v1/spaces/polygon", data=big, content_type="application/json"),
               413)


def test_the_document_follows_the_prefix_a_host_app_mounts_the_blueprints_under(memory_feed):
    from flask import Flask

    from geosearch.api.ogc import ogc_blueprint
    from geosearch.api.openapi import openapi_blueprint
    from geosearch.api.search import search_blueprint

    host = Flask("host")
    host.register_blueprint(search_blueprint(memory_feed), url_prefix="/geo/v2")
    host.register_blueprint(ogc_blueprint(memory_feed), url_prefix="/geo/features")
    host.register_blueprint(openapi_blueprint(), url_prefix="/geo")
    client = host.test_client()
    doc = client.get("/geo/openapi.json").get_json()
    validate(doc)
    assert "/geo/v2/spaces/radius" in doc["paths"] and "/geo/v2/tiles/{z}/{x}/{y}.mvt" in \
        doc["paths"]
    assert not [p for p in doc["paths"] if p.startswith("/v1/")]
    for path, item in doc["paths"].items():  # every documented path is served there
        concrete = path.replace("{z}", "1").replace("{x}", "0").replace("{y}", "0") \
            .replace("{id}", "nope")
        for method, op in item.items():
            # asked with nothing: the answer of a route whose view ran on a dataset
            answer = client.open(concrete, method=method.upper())
            assert answer.status_code == expected_bare_status(path, op), \
                (method, path, answer.get_data(as_text=True)[:200])
        # and with a method it does not serve: 405, naming the ones it does
        refused = client.open(concrete, method="DELETE")
        assert refused.status_code == 405, path
        assert set(refused.headers["Allow"].split(", ")) >= {m.upper() for m in item}, path
    ogc = client.get("/geo/features/api").get_json()
    assert ogc["servers"] == [{"url": "http://localhost/geo/features"}]
    assert "/collections/spaces/items" in ogc["paths"] and "/" in ogc["paths"]
    assert not [p for p in ogc["paths"] if p.startswith("/geo")]


def expected_bare_status(path: str, operation: dict) -> int:
    """What a documented operation answers when asked with no parameter and no body: 404
    for an item that is not there, 400 when it requires input, else 200."""
    if "{id}" in path:
        return 404
    required = [p for p in operation["parameters"] if p["in"] == "query" and p["required"]]
    return 400 if required or operation.get("requestBody", {}).get("required") else 200


def test_importing_the_problem_types_does_not_load_the_request_guard():
    """errors and guard do not import each other: the guard raises the problems, the
    problems know nothing of the guard (a fresh interpreter: nothing else imported)."""
    script = ("import sys, geosearch.api.errors; "
              "print([m for m in sys.modules if 'guard' in m])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_library_refuses_what_http_refuses(memory_feed):
    """The bounds the HTTP parameters enforce are the query objects' own: a library
    caller gets ValueError for the values a client gets 400 for."""
    from geosearch.library import Geosearch
    from geosearch.model import MAX_CITY_CHARS, MAX_DISTANCE_M, MAX_RADIUS_M

    client = create_app(Settings(), backend=memory_feed).test_client()
    library = Geosearch(memory_feed)
    far, wide, city = MAX_DISTANCE_M + 1, MAX_RADIUS_M + 1, "x" * (MAX_CITY_CHARS + 1)
    for url, param, ask in (
        (f"/v1/spaces/nearest?lat=0&lon=0&max_distance_m={far}", "max_distance_m",
         lambda: library.nearest(0, 0, max_distance_m=far)),
        (f"/v1/spaces/radius?lat=0&lon=0&radius_m={wide}", "radius_m",
         lambda: library.radius(0, 0, wide)),
        (f"/v1/spaces/nearest?lat=0&lon=0&city={city}", "city",
         lambda: library.nearest(0, 0, city=city)),
    ):
        assert param in params_named(problem_of(client.get(url), 400))
        with pytest.raises(ValueError, match=param.split("_")[0]):
            ask()
    # and what HTTP accepts at the bounds, the library accepts
    assert client.get(f"/v1/spaces/nearest?lat=0&lon=0&max_distance_m={MAX_DISTANCE_M}"
                      f"&city={city[1:]}").status_code == 200
    assert library.nearest(0, 0, max_distance_m=MAX_DISTANCE_M, city=city[1:]) == []


def test_links_follow_a_mount_prefix_and_keep_every_parameter(memory_feed):
    from urllib.parse import parse_qs, urlsplit

    client = create_app(Settings(trusted_hosts=("localhost", "geo.example.org")),
                        backend=memory_feed).test_client()
    url = "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=9000&limit=3&amenities=wifi&city=Berlin"
    body = client.get(url, base_url="https://geo.example.org/api").get_json()  # a proxy prefix
    links = {x["rel"]: x["href"] for x in body["links"]}
    assert links["self"] == "https://geo.example.org/api" + url
    nxt = urlsplit(links["next"])
    assert nxt.netloc == "geo.example.org" and nxt.path == "/api/v1/spaces/radius"
    query = parse_qs(nxt.query)
    assert query["cursor"] == [body["next"]] and query["city"] == ["Berlin"]
    # following the link (without the proxy's prefix) continues where the page ended
    second = client.get(f"/v1/spaces/radius?{nxt.query}").get_json()
    assert second["features"][0]["properties"]["distance_m"] >= \
        body["features"][-1]["properties"]["distance_m"]


def test_ogc_items_lower_a_limit_above_the_maximum_instead_of_refusing_it(client):
    """GDAL's OAPIF driver asks for limit=1000: it gets a page of the maximum, 500."""
    body = client.get("/ogc/collections/spaces/items?limit=1000").get_json()
    assert body["numberReturned"] == 500 and len(body["features"]) == 500
    nxt = next(link["href"] for link in body["links"] if link["rel"] == "next")
    assert "limit=1000" in nxt  # the client's own parameters, kept in the next link
    for bad in ("0", "ten"):
        [error] = problem_of(client.get(f"/ogc/collections/spaces/items?limit={bad}"),
                             400)["errors"]
        assert error["param"] == "limit"
        assert error["message"].endswith("expected a whole number of at least 1 (above 500 "
                                         "it is lowered to 500)")


def test_cors_is_off_by_default_and_answers_allowed_origins_when_set(memory_feed):
    from geosearch.api import create_app
    from geosearch.settings import Settings

    plain = create_app(Settings(heavy_rate_limit=""), backend=memory_feed).test_client()
    response = plain.get("/v1/amenities", headers={"Origin": "https://maps.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers

    settings = Settings.from_env({"GEOSEARCH_CORS_ORIGINS": "https://maps.example.com"},
                                 heavy_rate_limit="")
    client = create_app(settings, backend=memory_feed).test_client()
    preflight = client.options("/v1/spaces/polygon", headers={
        "Origin": "https://maps.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://maps.example.com"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]

    answer = client.get("/v1/spaces/nearest?lat=52.52&lon=13.4&k=1",
                        headers={"Origin": "https://maps.example.com"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://maps.example.com"
    assert "X-Dataset-Version" in answer.headers["Access-Control-Expose-Headers"]
    assert "Origin" in answer.headers["Vary"]
    problem = client.get("/v1/spaces/nearest?lat=91&lon=0",
                         headers={"Origin": "https://maps.example.com"})
    assert problem.status_code == 400 and "Access-Control-Allow-Origin" in problem.headers
    other = client.get("/v1/amenities", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    refused = client.options("/v1/spaces/polygon", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in refused.headers


def _listed(header: str) -> set[str]:
    return {v.strip() for v in header.split(",")}


def test_cors_lets_pages_of_allowed_origins_write_with_the_headers_a_write_needs(memory_feed):
    """A page may PUT, PATCH and DELETE with a key, If-Match and a JSON body, and read the
    Location of a create; the headers allowed are the ones the API reads, whatever the
    preflight asks for; another origin still gets no CORS header."""
    from geosearch.api import create_app
    from geosearch.settings import Settings

    settings = Settings.from_env({"GEOSEARCH_CORS_ORIGINS": "https://maps.example.com"},
                                 heavy_rate_limit="")
    client = create_app(settings, backend=memory_feed).test_client()
    for method, path in (("PUT", "/v1/spaces/x"), ("PATCH", "/ogc/collections/spaces/items/x"),
                         ("DELETE", "/v1/spaces/x"), ("POST", "/ogc/collections/spaces/items")):
        preflight = client.options(path, headers={
            "Origin": "https://maps.example.com", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,if-match,content-type"})
        assert preflight.status_code == 204
        assert method in _listed(preflight.headers["Access-Control-Allow-Methods"])
        assert {"Authorization", "If-Match", "Content-Type"} <= _listed(
            preflight.headers["Access-Control-Allow-Headers"])
    assert {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} == _listed(
        preflight.headers["Access-Control-Allow-Methods"])
    asked = client.options("/v1/spaces/x", headers={
        "Origin": "https://maps.example.com", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "X-Anything, Cookie"})
    assert asked.headers["Access-Control-Allow-Headers"] == \
        preflight.headers["Access-Control-Allow-Headers"]  # a fixed list, not an echo
    refused = client.post("/v1/spaces", json={}, headers={"Origin": "https://maps.example.com"})
    assert refused.status_code == 405  # a snapshot: the page can read why
    assert refused.headers["Access-Control-Allow-Origin"] == "https://maps.example.com"
    assert "Location" in _listed(refused.headers["Access-Control-Expose-Headers"])
    for method in ("PUT", "PATCH", "DELETE"):
        other = client.options("/v1/spaces/x", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "Authorization, If-Match"})
        assert not [h for h in other.headers if h[0].startswith("Access-Control-")]


def test_ogc_items_say_how_many_match_in_all(client):
    everything = client.get("/ogc/collections/spaces/items?limit=1").get_json()
    listed = walk(client, "/v1/spaces?limit=500")
    assert everything["numberMatched"] == len(listed) and everything["numberReturned"] == 1
    box = "-0.5,51.3,0.3,51.7"
    boxed = client.get(f"/ogc/collections/spaces/items?bbox={box}&amenities=wifi").get_json()
    assert boxed["numberMatched"] == len(walk(client, f"/v1/spaces/bbox?bbox={box}"
                                                      "&amenities=wifi&limit=500"))


@pytest.mark.parametrize(("cql", "params"), [
    ("country = 'DE'", "country=DE"),
    ("country IN ('DE', 'at') AND capacity >= 20", "country=DE,AT&min_capacity=20"),
    ("(country = 'DE') OR (country = 'FR')", "country=DE,FR"),
    ("capacity > 19.5 AND city = 'berlin'", "min_capacity=20&city=Berlin"),
    ("A_CONTAINS(amenities, ('wifi', 'parking'))", "amenities=wifi,parking"),
    ("A_OVERLAPS(amenities, ('showers', 'childcare')) AND \"country\" = 'GB'",
     "amenities_any=showers,childcare&country=GB"),
    ("S_INTERSECTS(geometry, BBOX(-0.5, 51.3, 0.3, 51.7))", "bbox=-0.5,51.3,0.3,51.7"),
])
def test_a_cql2_filter_selects_what_the_same_parameters_do(feed_backend, cql, params):
    from geosearch.api import create_app
    from geosearch.settings import Settings

    client = create_app(Settings(heavy_rate_limit=""), backend=feed_backend).test_client()
    items = "/ogc/collections/spaces/items?limit=500"
    filtered = walk_ogc(client, f"{items}&filter={quote(cql)}&filter-lang=cql2-text")
    plain = walk_ogc(client, f"{items}&{params}")
    assert filtered == plain and filtered


@pytest.mark.parametrize(("cql", "says"), [
    ("name LIKE 'Reg%'", "supported"),
    ("capacity BETWEEN 1 AND 10", "supported"),
    ("country = 'DE' OR A_CONTAINS(amenities, ('wifi'))", "supported"),
    ("A_CONTAINS(amenities, ('sauna'))", "unknown amenity"),
    ("A_CONTAINS(amenities, ('wifi')) AND A_OVERLAPS(amenities, ('wifi')) AND "
     "A_CONTAINS(amenities, ('coffee'))", "supported"),
    ("country = ", "not CQL2 text"),
])
def test_a_cql2_filter_that_cannot_be_mapped_is_a_400_saying_what_is_supported(client, cql,
                                                                               says):
    response = client.get(f"/ogc/collections/spaces/items?filter={quote(cql)}")
    assert response.status_code == 400
    error = response.get_json()["errors"][0]
    assert error["param"] == "filter" and says in error["message"]


def test_a_filter_and_a_parameter_on_the_same_property_are_refused(client):
    response = client.get("/ogc/collections/spaces/items?country=DE&filter="
                          + quote("country = 'FR'"))
    assert response.status_code == 400 and "both" in response.get_json()["errors"][0]["message"]
    other = client.get("/ogc/collections/spaces/items?filter-lang=cql2-json&filter="
                       + quote("country = 'FR'"))
    assert other.status_code == 400


def test_the_queryables_and_the_ogc_api_document(client):
    queryables = client.get("/ogc/collections/spaces/queryables")
    assert queryables.mimetype == "application/schema+json"
    assert set(queryables.get_json()["properties"]) == {"geometry", "country", "city",
                                                        "capacity", "amenities"}
    api = client.get("/ogc/api").get_json()
    assert "/collections/spaces/items" in api["paths"] and api["servers"][0]["url"].endswith(
        "/ogc")
    names = {p.get("name") for p in api["paths"]["/collections/spaces/items"]["get"]
             ["parameters"]}
    assert {"filter", "filter-lang", "bbox", "limit"} <= names


def walk_ogc(client, url: str) -> list[str]:
    ids = []
    while url:
        body = client.get(url).get_json()
        assert "features" in body, body
        ids += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    return ids


@lru_cache(maxsize=1)
def _bare_app():
    """An app without a dataset, for reading requests (built once: hypothesis runs a test
    hundreds of times)."""
    return create_app(Settings(snapshot="does/not/exist"))


QUERY_CHARS = st.sampled_from([*"abcxyz019_.,=&:;+-~!*'()/?@%% #[]\"\\", "%20", "%2B", "%C3%A9",
                               "%E2%82%AC", "%ZZ", "%", "\xc3\xa9", "\x7f"])  # raw UTF-8 é


@given(st.lists(QUERY_CHARS, max_size=40).map("".join))
@settings(max_examples=300, deadline=None)
def test_query_args_are_werkzeugs(query):
    """The parameters as views read them: Werkzeug's ``request.args``, whether the query
    string is split directly (nothing encoded) or decoded by Werkzeug."""
    with _bare_app().test_request_context(environ_overrides={"QUERY_STRING": query}):
        assert query_args() == request.args.to_dict(flat=False)


@given(st.lists(st.floats(0, 2.1e7) | st.integers(0, 10**7).map(lambda n: n / 1000 + 5e-4),
                max_size=30))
@settings(max_examples=200, deadline=None)
def test_distances_in_a_page_are_numpy_rounded_to_the_millimetre(distances):
    heads = [b'{"type":"Feature","id":"s%d","properties":{"name":"x"' % i
             for i in range(len(distances))]
    body = json.loads(b"[" + Hits([f"s{i}" for i in range(len(distances))], heads,
                                  distances).features() + b"]")
    assert [f["properties"]["distance_m"] for f in body] == \
        np.round(np.asarray(distances, dtype=float), 3).tolist()


@given(st.text(st.characters(codec="latin-1", exclude_categories=("Cs",)), max_size=30))
@settings(max_examples=200, deadline=None)
def test_own_url_percent_encodes_the_path_as_quote_does(path_info):
    environ = {"PATH_INFO": "/v1/" + path_info, "QUERY_STRING": "a=1"}
    with _bare_app().test_request_context(environ_overrides=environ):
        expected = quote(("/v1/" + path_info).encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
        assert own_url() == f"http://localhost{expected}?a=1"


BBOX_TOKENS = st.sampled_from(["13.3", "-52.5", "+1.", ".5", "1e2", "3E-1", "180", "-180.0",
                               "90", "nan", "1_0", "", " ", "\u00a0", "\u0661", "x", "0x1"])


@given(st.lists(st.lists(BBOX_TOKENS, min_size=1, max_size=3).map("".join), min_size=1,
                max_size=6).map(",".join))
@settings(max_examples=400, deadline=None)
def test_the_bbox_parser_reads_what_a_part_by_part_reading_does(text):
    """The one-pattern reading of four decimals agrees with reading each part stripped:
    the same numbers, or the same error."""
    from geosearch.api.params import _DECIMAL, bbox

    parts = [p.strip() for p in text.split(",")]
    numbers = len(parts) == 4 and all(_DECIMAL.fullmatch(p) for p in parts)
    try:
        got = bbox(text)
    except ValueError as exc:
        assert not numbers or "range" in str(exc) or "must" in str(exc) or \
            "finite" in str(exc)
        assert (f"{len(parts)} values given" in str(exc)) == (len(parts) != 4)
    else:
        assert numbers and got == tuple(float(p) for p in parts)


@pytest.mark.parametrize("query", ["filter-lang=cql2-json", "filter-lang=", "filter-lang=1e16",
                                   "filter-lang=cql2-json&filter=country%20%3D%20%27FR%27"])
def test_filter_lang_is_checked_with_or_without_a_filter(client, query):
    response = client.get(f"/ogc/collections/spaces/items?{query}")
    assert response.status_code == 400
    error = response.get_json()["errors"][0]
    assert error["param"] == "filter-lang" and "cql2-text, cql-text" in error["message"]


def _readme_answers() -> dict[str, dict]:
    """The problem answers README.md shows, by the path and query of their request: the
    JSON that follows a ``$ curl -s 'http://...'`` line (up to the next command or the
    end of its block), where it is one document."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = {}
    for match in re.finditer(r"^\$ curl -s '[a-z]+://[^/]+(/[^']*)'\n((?:[^$`\n].*\n)+)",
                             text, re.MULTILINE):
        try:
            shown[match[1]] = json.loads(match[2])
        except ValueError:  # an answer shown in part ("...")
            continue
    return shown


def test_the_readme_shows_the_errors_the_service_answers(client):
    """Each error answer README.md shows in full is the service's own, but for its
    request id (a new one per request)."""
    shown = {url: body for url, body in _readme_answers().items()
             if isinstance(body.get("status"), int) and body["status"] >= 400}
    assert shown  # the README does show one
    for url, body in shown.items():
        answer = problem_of(client.get(url), body["status"])
        assert "request_id" in body and "request_id" in answer
        assert {**answer, "request_id": body["request_id"]} == body, url
