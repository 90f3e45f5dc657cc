"""Embedding: the library, a host app with the blueprint, the HTTP client, OGC API
Features through OWSLib, and the examples of the docs, each run as its users would."""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pyogrio
import pytest
import requests
from flask import request
from owslib.ogcapi.features import Features
from werkzeug.serving import make_server

import geosearch
from geosearch import Geosearch, create_app, make_filters
from geosearch.backends.memory import MemoryBackend
from geosearch.client import BadRequest, Client, Gone, Unavailable
from geosearch.settings import Settings
from geosearch.snapshot import write_snapshot
from geosearch.testing import oracle
from geosearch.testing.ports import free_port
from geosearch.testing.served import served

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("embedding-*.md"))


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, feed_result):
    path = tmp_path_factory.mktemp("snap") / "spaces.parquet"
    write_snapshot(feed_result.frame, path, feed_result.meta())
    return path


@pytest.fixture(scope="module")
def base_url(memory_feed):
    with served(create_app(Settings(), backend=memory_feed)) as url:
        yield url


# -- the library ------------------------------------------------------------------------

def test_public_api_is_listed_in_one_place():
    assert set(geosearch.__all__) >= {"Geosearch", "Hit", "Space", "Amenity", "create_app",
                                      "search_blueprint"}
    assert all(hasattr(geosearch, name) for name in geosearch.__all__)
    assert (ROOT / "geosearch" / "py.typed").exists()


def test_library_answers_like_the_oracle(snapshot, feed_result):
    frame = feed_result.frame[feed_result.frame["status"] == "active"].reset_index(drop=True)
    with Geosearch.open(snapshot=snapshot) as gs:
        hits = gs.radius(48.8566, 2.3522, 15_000, amenities=["wifi"], country="fr")
        want = oracle.radius(frame, 48.8566, 2.3522, 15_000, make_filters(
            amenities=["wifi"], country="FR"))
        assert [h.space.id for h in hits] == [i for i, _ in want]
        assert all(isinstance(h, geosearch.Hit) and h.distance_m is not None for h in hits)
        assert len(gs.spaces(country="SG")) == len(frame[frame["country"] == "SG"])
        assert gs.version == feed_result.report.dataset_version
        with pytest.raises(ValueError, match="valid: wifi"):
            gs.nearest(0, 0, amenities=["sauna"])


def test_library_over_postgis(postgis_feed, memory_feed):
    pg, mem = Geosearch(postgis_feed), Geosearch(memory_feed)
    args = (40.7128, -74.006)
    assert [h.space.id for h in pg.nearest(*args, k=20, amenities_any=["showers"])] == [
        h.space.id for h in mem.nearest(*args, k=20, amenities_any=["showers"])]


# -- the blueprint ----------------------------------------------------------------------

def test_blueprint_in_a_host_app_keeps_the_hosts_behaviour(memory_feed):
    from flask import Flask

    host = Flask("host")
    host.config["HOST_ONLY"] = 42

    @host.get("/ping")
    def ping():
        return "pong"

    @host.errorhandler(404)
    def not_found(_):
        return "host 404", 404

    host.register_blueprint(geosearch.search_blueprint(memory_feed), url_prefix="/geo/v1")
    client = host.test_client()

    page = client.get("/geo/v1/spaces?country=DE&limit=3").get_json()
    assert page["numberReturned"] == 3
    assert "/geo/v1/spaces?" in next(x["href"] for x in page["links"] if x["rel"] == "next")
    more = client.get(f"/geo/v1/spaces?country=DE&limit=3&cursor={page['next']}").get_json()
    assert more["features"][0]["id"] > page["features"][-1]["id"]
    bad = client.get("/geo/v1/spaces/radius?lat=0&lon=0&radius_m=-1")
    assert bad.status_code == 400 and bad.content_type == "application/problem+json"
    assert client.get("/ping").text == "pong"
    assert client.get("/elsewhere").text == "host 404"
    assert host.config["HOST_ONLY"] == 42


# -- the HTTP client --------------------------------------------------------------------

def test_client_follows_pages_and_matches_the_api(base_url, client):
    api = Client(base_url)
    hits = list(api.radius(52.52, 13.405, 30_000, page_size=7))
    walked, cursor = [], None
    while True:
        url = "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=30000&limit=50"
        body = client.get(url + (f"&cursor={cursor}" if cursor else "")).get_json()
        walked += [f["id"] for f in body["features"]]
        cursor = body.get("next")
        if not cursor:
            break
    assert [h.space.id for h in hits] == walked and len(walked) > 7
    box = list(api.bbox(170, -50, -170, -30, page_size=5))
    assert box and all(h.space.lon >= 170 or h.space.lon <= -170 for h in box)
    polygon = {"type": "Polygon", "coordinates": [[[2.2, 48.8], [2.45, 48.8], [2.45, 48.92],
                                                   [2.2, 48.92], [2.2, 48.8]]]}
    assert [h.space.id for h in api.polygon(polygon, page_size=3)] == [
        h.space.id for h in api.bbox(2.2, 48.8, 2.45, 48.92)]
    first = hits[0].space
    assert api.get(first.id) == first
    assert api.amenities()["wifi"] > 0


def test_client_turns_problems_into_typed_exceptions(base_url):
    api = Client(base_url)
    with pytest.raises(BadRequest) as problem:
        api.nearest(91, 0)
    assert problem.value.errors[0]["param"] == "lat"
    assert api.get("missing") is None


class _Flipping(MemoryBackend):
    """A backend whose dataset changes after the first page is served."""

    def list(self, query):
        page = super().list(query)
        self._version = "v2"  # a new dataset is loaded after the first page
        return page


def test_client_raises_gone_when_the_dataset_changes_while_paging(feed_result):
    app = create_app(Settings(), backend=_Flipping(feed_result.frame, "v1"))
    with served(app) as url, pytest.raises(Gone):
        list(Client(url).spaces(page_size=10))


class _Flaky(BaseHTTPRequestHandler):
    """503 twice, then a page; or slow, for the timeout test."""

    hits: ClassVar[list[str]] = []
    delay: ClassVar[float] = 0.0

    def do_GET(self):
        type(self).hits.append(self.path)
        time.sleep(self.delay)
        if len(self.hits) <= 2:
            body, status = b'{"type":"about:blank","title":"Service Unavailable",' \
                           b'"status":503,"detail":"down","errors":[]}', 503
        else:
            body, status = b'{"type":"FeatureCollection","features":[],"numberReturned":0,' \
                           b'"links":[]}', 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # the client timed out first, on purpose
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_client_retries_503_and_gives_up_after_its_retries():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        _Flaky.hits = []
        assert Client(url, retries=3, backoff=0.01).nearest(0, 0) == []
        assert len(_Flaky.hits) == 3
        _Flaky.hits = []
        with pytest.raises(Unavailable):
            Client(url, retries=1, backoff=0.01).nearest(0, 0)
        _Flaky.hits, _Flaky.delay = [], 0.5
        with pytest.raises(requests.Timeout):
            Client(url, timeout=0.1, retries=1, backoff=0.01).nearest(0, 0)
    finally:
        _Flaky.delay = 0.0
        server.shutdown()
        server.server_close()


# -- OGC API Features -------------------------------------------------------------------

def test_owslib_reads_the_collection_pages_a_bbox_and_gets_one(base_url, client):
    ogc = Features(f"{base_url}/ogc")
    assert [c["id"] for c in ogc.collections()["collections"]] == ["spaces"]
    conformance = ogc.conformance()["conformsTo"]
    assert any(c.endswith("/conf/core") for c in conformance)
    assert ogc.collection("spaces")["itemType"] == "feature"

    ids, cursor, pages = [], None, 0
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = ogc.collection_items("spaces", bbox=[-0.5, 51.3, 0.3, 51.7], limit=6,
                                    country="GB", **extra)
        pages += 1
        ids += [f["id"] for f in page["features"]]
        nxt = [x["href"] for x in page["links"] if x["rel"] == "next"]
        if not nxt:
            break
        cursor = parse_qs(urlparse(nxt[0]).query)["cursor"][0]

    v1 = client.get("/v1/spaces/bbox?bbox=-0.5,51.3,0.3,51.7&country=GB&limit=500").get_json()
    assert ids == [f["id"] for f in v1["features"]] and pages > 1
    item = ogc.collection_item("spaces", ids[0])
    assert item == {**client.get(f"/v1/spaces/{ids[0]}").get_json(), "links": item["links"]}


def test_ogc_errors_are_problems(client):
    assert client.get("/ogc/collections/other/items").status_code == 404
    bad = client.get("/ogc/collections/spaces/items?bbox=1,2")
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["param"] == "bbox"


# -- the docs ---------------------------------------------------------------------------

@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_examples_in_the_docs_run(doc, snapshot, base_url, monkeypatch, capsys):
    """A page's examples, pasted in order into one fresh interpreter: nothing defined for
    them but what a reader sets, the environment variables they read."""
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert blocks, f"{doc.name} has no example"
    monkeypatch.setenv("GEOSEARCH_SNAPSHOT", str(snapshot))
    monkeypatch.setenv("GEOSEARCH_BASE_URL", base_url)
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)


def test_a_mounted_blueprint_guards_its_own_routes(memory_feed):
    from flask import Flask

    host = Flask("host")
    host.register_blueprint(geosearch.search_blueprint(memory_feed), url_prefix="/geo/v1")
    resp = host.test_client().get("/geo/v1/spaces?city=%00")
    assert resp.status_code == 400 and resp.content_type == "application/problem+json"
    assert resp.get_json()["errors"][0]["param"] == "city"


# -- GDAL's OGC API - Features driver (the one inside QGIS and ogr2ogr) ---------------------

@pytest.fixture(scope="module")
def gdal_server(memory_feed, tmp_path_factory):
    """The app in a process of its own (GDAL holds the GIL while it reads, so a server
    thread of this process would never answer), writing the query string of every items
    request it gets to a file."""
    log = tmp_path_factory.mktemp("gdal") / "items-queries.log"
    port = free_port()

    def run() -> None:
        app = create_app(Settings(heavy_rate_limit=""), backend=memory_feed)

        @app.before_request
        def record():
            if request.path.endswith("/items"):
                with log.open("a") as out:
                    out.write(request.query_string.decode() + "\n")

        make_server("127.0.0.1", port, app, threaded=True).serve_forever()

    process = multiprocessing.get_context("fork").Process(target=run, daemon=True)
    process.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", log
    process.terminate()
    process.join(5)


def items_queries(log) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_gdal_reads_ogc_with_its_defaults_like_v1(gdal_server, client):
    base, log = gdal_server
    source = f"OAPIF:{base}/ogc"
    everything = pyogrio.read_dataframe(source, layer="spaces")
    v1 = walk_v1(client, "/v1/spaces?limit=500")
    assert sorted(everything["id"]) == sorted(v1)
    # GDAL's own page size, capped and not refused
    assert any("limit=1000" in q for q in items_queries(log))
    info = pyogrio.read_info(source, layer="spaces", force_feature_count=False)
    assert info["features"] == len(v1)  # known from numberMatched, not by reading all

    boxed = pyogrio.read_dataframe(source, layer="spaces", bbox=(-0.5, 51.3, 0.3, 51.7))
    assert sorted(boxed["id"]) == sorted(walk_v1(client, "/v1/spaces/bbox?"
                                                 "bbox=-0.5,51.3,0.3,51.7&limit=500"))

    log.write_text("")
    germany = pyogrio.read_dataframe(source, layer="spaces", where="country = 'DE'")
    assert sorted(germany["id"]) == sorted(walk_v1(client, "/v1/spaces?country=DE&limit=500"))
    sent = items_queries(log)
    assert any("filter=" in q for q in sent), sent  # the filter ran on the server


def walk_v1(client, url: str) -> list[str]:
    ids = []
    while url:
        body = client.get(url).get_json()
        ids += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    return ids
