"""Hostile input on both backends: never a 5xx, always problem+json, nothing leaked, and
the service answers correctly afterwards."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from geosearch.api import create_app
from geosearch.settings import Settings
from geosearch.testing import hostile

PROBES = list(hostile.battery())


def test_the_battery_is_several_hundred_requests_over_every_endpoint():
    paths = {p.url.split("?")[0] for p in PROBES}
    assert len(PROBES) > 1000
    assert {"/v1/spaces/radius", "/v1/spaces/nearest", "/v1/spaces/bbox", "/v1/spaces",
            "/v1/spaces/polygon", "/v1/coverage/cities", "/ogc/collections/spaces/items"} <= paths


@pytest.mark.parametrize("chunk", range(4))
def test_hostile_requests_get_4xx_problems_never_5xx(feed_backend, chunk):
    app = create_app(Settings(heavy_rate_limit=""), backend=feed_backend)
    client = app.test_client()
    failures = []
    for probe in PROBES[chunk::4]:
        resp = client.open(probe.url, method=probe.method, data=probe.body,
                           headers=probe.headers)
        text = resp.get_data().decode("utf-8", "replace")  # tiles are binary
        found = hostile.problems_with(resp.status_code, resp.content_type or "", text,
                                      unquote(probe.url))
        if found:
            failures.append(f"{probe.method} {probe.url[:120]}: {', '.join(found)}")
    assert not failures, "\n".join(failures[:30])
    # still answering, and answering right
    resp = client.get("/v1/spaces/nearest?lat=52.52&lon=13.405&k=3")
    assert resp.status_code == 200 and len(resp.get_json()["features"]) == 3


@pytest.mark.parametrize("url, param", [
    ("/v1/spaces/%00'", "path"),
    ("/ogc/collections/spaces/items?city=%00", "city"),
    ("/ogc/collections/spaces/items?min_capacity=99999999999999999999999999999",
     "min_capacity"),
    ("/v1/spaces/radius?lat=52&lon=13&radius_m=10&city=a%FFb", "city"),
    ("/v1/spaces?country=D%00", "country"),
])
def test_the_reported_500s_are_400s_naming_the_parameter(feed_backend, url, param):
    client = create_app(Settings(), backend=feed_backend).test_client()
    resp = client.get(url)
    assert resp.status_code == 400 and resp.content_type == "application/problem+json"
    assert param in {e["param"] for e in resp.get_json()["errors"]}


def test_a_polygon_body_of_another_media_type_is_415(client):
    resp = client.post("/v1/spaces/polygon", data='{"type": "Polygon"}',
                       content_type="text/plain")
    assert resp.status_code == 415 and resp.content_type == "application/problem+json"
    assert resp.get_json()["errors"][0]["param"] == "Content-Type"


def test_over_long_request_line_and_headers_are_414_and_431(client):
    resp = client.get("/v1/spaces?city=" + "a" * 9000)
    assert resp.status_code == 414 and resp.content_type == "application/problem+json"
    assert "8192" in resp.get_json()["detail"]
    resp = client.get("/healthz", headers={"X-Big": "b" * 9000})
    assert resp.status_code == 431 and resp.get_json()["errors"][0]["param"] == "X-Big"


@pytest.mark.parametrize("raw", ["q=\xe9", "city=Z\xfcrich", "q\xff=1", "amenities=wifi\xc3"])
def test_raw_bytes_that_are_not_utf8_in_the_query_are_400s(client, raw):
    """A server passes the request's bytes as latin-1 text (PEP 3333): a raw byte 0xE9
    is not UTF-8, and is refused naming its parameter (not decoded by a view: a 500)."""
    query = "lat=52.52&lon=13.405&radius_m=2000&" + raw
    resp = client.get("/v1/spaces/radius", environ_overrides={"QUERY_STRING": query})
    assert resp.status_code == 400, resp.data
    assert resp.mimetype == "application/problem+json"
    name = raw.partition("=")[0].encode("latin-1").decode("utf-8", "replace")
    assert [e["param"] for e in resp.json["errors"]] == [name]
    assert "UTF-8" in resp.json["errors"][0]["message"]
