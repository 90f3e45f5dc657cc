"""Hostile input against the real server (gunicorn, 2 workers, as `geosearch serve` runs
it) over real sockets, on both backends: every answer a 2xx, or a 4xx problem+json that
leaks nothing, the status each generated case must get, no connection closed without an
answer, a forged Host echoed nowhere, every link on the trusted origin, no worker died,
and the service answers correctly afterwards; the generated cases again, from several
clients at once. Then single cases in process."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter

import faults
import hostile_http
import pytest

from geosearch.api import create_app
from geosearch.api.openapi import operations
from geosearch.settings import Settings
from geosearch.snapshot import write_snapshot
from geosearch.testing import hostile, hostile_wire

PROBES = list(hostile.battery())
WIRE = list(hostile_wire.wire_battery())
# make fuzz (GEOSEARCH_FUZZ_EXAMPLES=400) repeats the generated cases 16 times, make test once
REPEATS = max(1, int(os.environ.get("GEOSEARCH_FUZZ_EXAMPLES", "25")) // 25)


def test_the_battery_covers_every_endpoint_and_every_class():
    paths = {p.url.split("?")[0] for p in PROBES}
    assert len(PROBES) > 4000
    assert {"/v1/spaces/radius", "/v1/spaces/nearest", "/v1/spaces/bbox", "/v1/spaces",
            "/v1/spaces/polygon", "/v1/coverage/cities", hostile.ITEMS} <= paths
    # the first page of every paged endpoint, each with every nested cursor
    paged = {p.url.split("?")[0] for p in hostile.PAGED}
    assert paged == {"/v1/spaces", "/v1/spaces/radius", "/v1/spaces/bbox",
                     "/v1/spaces/polygon", hostile.ITEMS}
    nested = Counter(p.url.split("&cursor=")[0] for p in hostile.cursor_nesting())
    assert set(nested) == {p.url for p in hostile.PAGED} and len(set(nested.values())) == 1
    # each generated class has cases within its bound (200) and beyond it (400)
    for cases in (hostile.body_nesting(), hostile.ring_counts(), hostile.cql2_filters()):
        assert {200, 400} <= {p.status for p in cases}
    # every route family with every forged Host
    forged = {p.url for p in WIRE if p.headers.get("Host") == hostile.EVIL}
    assert forged == {route.url for route, _ in hostile_wire.ROUTES}
    assert {"/ogc", "/ogc?x=1"} <= forged


def test_the_battery_varies_every_query_parameter_of_every_operation():
    varied = {(path, name) for path, _, name in hostile.varied()}
    missing = []
    for template, methods in operations(create_app(Settings(snapshot="does/not/exist"))).items():
        pattern = re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part)
                                     for part in re.split(r"(\{[^}]+\})", template)))
        paths = {path for path, _ in varied if pattern.fullmatch(path)}
        missing += [f"{template} {p.name}" for op in methods.values() for p in op.params
                    if p.where == "query" and not {(path, p.name) for path in paths} & varied]
    assert not missing


@pytest.fixture(scope="module", params=["memory", "postgis"])
def served(request, feed_result, tmp_path_factory):
    """``geosearch serve`` with 2 workers over the feed, on the snapshot or on PostGIS,
    and its workers' pids once both are up. The per-client limits are lifted (the rate of
    the coverage endpoints, the worker-time budget), so that every case of the battery,
    sent by one client, reaches its parser."""
    if request.param == "memory":
        source = ("--snapshot", str(write_snapshot(
            feed_result.frame, tmp_path_factory.mktemp("snap") / "s.parquet",
            feed_result.meta())))
    else:
        source = ("--database", request.getfixturevalue("postgis_feed").settings.database_url)
    server = faults.Server(faults.serve_args(*source),
                           env={"GEOSEARCH_HEAVY_RATE_LIMIT": "1000000/minute",
                                "GEOSEARCH_CLIENT_BUDGET": "0"}, wait_s=120)
    deadline = time.monotonic() + 30
    while len(server.workers()) < 2:
        assert time.monotonic() < deadline, "the second worker did not boot"
        time.sleep(0.2)
    yield server, sorted(server.workers())
    server.stop()


def test_the_battery_over_real_sockets_answers_every_case_and_kills_no_worker(served):
    server, workers = served
    base = f"http://127.0.0.1:{server.port}"
    outcome = hostile_http.run(base, hostile_http.every_case(base))
    assert len(outcome.times) > len(PROBES) + len(WIRE)  # and the forged cursors
    assert not outcome.failures, (f"{len(outcome.failures)} of {len(outcome.times)}:\n"
                                  + "\n".join(outcome.failures[:30]))
    assert sorted(server.workers()) == workers, "a worker died and was replaced"
    status, body = faults.get(server.port, "/v1/spaces/nearest?lat=52.52&lon=13.405&k=3")
    assert status == 200 and len(json.loads(body)["features"]) == 3



def test_the_generated_and_wire_cases_repeated_from_four_clients_at_once(served):
    server, workers = served
    base = f"http://127.0.0.1:{server.port}"
    cases = [*hostile.generated(), *WIRE] * REPEATS
    outcome = hostile_http.run(base, cases, clients=4)
    assert not outcome.failures, (f"{len(outcome.failures)} of {len(outcome.times)}:\n"
                                  + "\n".join(outcome.failures[:30]))
    assert sorted(server.workers()) == workers, "a worker died and was replaced"


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
