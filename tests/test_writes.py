"""Live writes on PostGIS (geosearch.writes, geosearch.api.writes): create, replace, patch
and close one space at a time, each in one transaction with its change feed entry.

Every answer code of the write routes and the feed; racing writers lose no update; after a
few hundred random writes every search equals the brute-force oracle over the changed data
and the word plane is what a load of that data would hold; the feed has no gap and no
duplicate and names the actor; hostile bodies and headers are 4xx with nothing written.
"""

from __future__ import annotations

import json
import random
import threading
import time

import numpy as np
import psycopg
import pytest

from geosearch.api import create_app
from geosearch.changes import LISTENER
from geosearch.database import libpq_url, make_engine
from geosearch.settings import Settings
from geosearch.store import load
from geosearch.testing import livewrites
from geosearch.testing.livewrites import BERLIN, MERGE, feature
from geosearch.tiles import world_xy
from geosearch.wordplane import plane_x


@pytest.fixture(scope="module")
def live(pg_database, feed_result):
    served = livewrites.service(livewrites.loaded(pg_database, feed_result, "writes"))
    yield served
    livewrites.close(served)


def _create(live, doc: dict, **headers):
    return live.client.post("/v1/spaces", json=doc, headers={**live.auth["writer"], **headers})


def _write(live, method: str, space_id: str, doc=None, etag: str | None = None,
           content_type: str = "application/json", key: str = "writer"):
    headers = dict(live.auth[key])
    if etag is not None:
        headers["If-Match"] = etag
    data = None if doc is None else json.dumps(doc)
    return live.client.open(f"/v1/spaces/{space_id}", method=method, data=data,
                            headers=headers, content_type=content_type)


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def _seq(url: str) -> int:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute("SELECT seq FROM change_counter").fetchone()[0]


def _feed(live, since: int = 0, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in {"since": since, "limit": 1000, **params}.items())
    response = live.client.get(f"/v1/changes?{query}", headers=live.auth["follower"])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# -- the answers of each route -----------------------------------------------------------

def test_create_answers_201_with_location_and_etag_and_every_read_sees_it(live):
    before = _seq(live.url)
    created = _create(live, {**feature("Zebrafink Loft"), "id": "live-1"})

    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.headers["Location"] == "/v1/spaces/live-1"
    assert created.headers["ETag"] == '"1"'
    body = created.get_json()
    assert body["id"] == "live-1" and body["geometry"]["coordinates"] == BERLIN
    assert body["properties"]["geocode_precision"] == "input"
    assert body["properties"]["h3_r9"].startswith("89")
    got = live.client.get("/v1/spaces/live-1")
    assert got.headers["ETag"] == '"1"' and got.get_json() == body
    near = live.client.get("/v1/spaces/nearest?lat=52.5163&lon=13.3777&k=1").get_json()
    assert near["features"][0]["id"] == "live-1"
    found = live.client.get("/v1/spaces?q=zebrafink").get_json()
    assert [f["id"] for f in found["features"]] == ["live-1"]
    [entry] = _feed(live, before)["changes"]
    assert (entry["op"], entry["id"], entry["revision"], entry["previous_revision"],
            entry["actor"]) == ("create", "live-1", 1, None, "writer")
    assert entry["seq"] == before + 1 and entry["space"]["id"] == "live-1"


def test_a_space_without_a_position_is_geocoded_and_an_id_is_made(live):
    created = _create(live, {"name": "Ohne Punkt", "city": "Hamburg", "country": "DE"})

    assert created.status_code == 201, created.get_data(as_text=True)
    body = created.get_json()
    assert body["properties"]["geocode_precision"] == "city"
    assert body["id"].startswith("sp-") and created.headers["Location"].endswith(body["id"])


def test_a_taken_id_or_a_duplicate_of_an_active_space_is_409_naming_it(live, feed_result):
    assert _create(live, {**feature("Erster"), "id": "live-dup",
                          "geometry": {"type": "Point", "coordinates": [13.30, 52.45]}}
                   ).status_code == 201
    before = _seq(live.url)

    taken = _problem(_create(live, {**feature("Anders"), "id": "live-dup"}), 409)
    assert taken["existing_id"] == "live-dup"
    frame = feed_result.frame
    known = frame[(frame["status"] == "active") & (frame["geocode_precision"] == "input")].iloc[0]
    again = feature(known["name"], [known["lon"] + 0.0005, known["lat"]],
                    country=known["country"], city=known["city"], address=known["address"])
    assert _problem(_create(live, again), 409)["existing_id"] == known["id"]
    assert _seq(live.url) == before


def test_what_ingest_repairs_is_a_422_listing_every_field(live):
    before = _seq(live.url)
    body = feature("Tab\there", amenities=["wifi", "sauna", "wifi"], capacity=-3,
                   country="Germany", currency="euro", h3_r9="89", status="inactive",
                   price_day=float("1e10"), sofa=True)

    problem = _problem(_create(live, body), 422)
    assert {e["param"] for e in problem["errors"]} == {
        "/properties/name", "/properties/amenities/1", "/properties/amenities/2",
        "/properties/capacity", "/properties/country", "/properties/currency",
        "/properties/h3_r9", "/properties/status", "/properties/price_day",
        "/properties/sofa"}
    assert "wifi" in next(e["message"] for e in problem["errors"]
                          if e["param"] == "/properties/amenities/1")
    cases = {  # repaired quietly in a feed, refused here
        "/geometry/coordinates": [feature("Null", [0, 0]), feature("Swapped", BERLIN[::-1]),
                                  feature("Paris", [2.35, 48.85]),
                                  feature("Out", [200, 52])],
        "/properties/name": [feature("  Two  spaces "), feature("")],
        "/id": [{**feature("Slash"), "id": "a/b"}, {**feature("Search"), "id": "radius"}],
    }
    for where, bodies in cases.items():
        for doc in bodies:
            errors = _problem(_create(live, doc), 422)["errors"]
            assert where in {e["param"] for e in errors}, (doc, errors)
    assert _seq(live.url) == before


def test_replace_patch_and_close_need_the_current_etag(live):
    assert _create(live, {**feature("Revisionen", [13.41, 52.52]), "id": "live-rev"}
                   ).status_code == 201
    patch = {"properties": {"capacity": 11, "amenities": ["wifi", "coffee"]}}

    _problem(_write(live, "PATCH", "live-rev", patch, content_type=MERGE), 428)
    stale = _problem(_write(live, "PATCH", "live-rev", patch, '"7"', MERGE), 412)
    assert stale["current_revision"] == 1
    _problem(_write(live, "PATCH", "live-rev", patch, '"1"'), 415)  # not a merge patch
    patched = _write(live, "PATCH", "live-rev", patch, '"1"', MERGE)
    assert patched.status_code == 200 and patched.headers["ETag"] == '"2"'
    assert patched.get_json()["properties"]["amenities"] == ["wifi", "coffee"]
    assert live.client.get("/v1/spaces/live-rev").headers["ETag"] == '"2"'

    replaced = _write(live, "PUT", "live-rev", feature("Revisionen Neu", [13.41, 52.52]), '"2"')
    assert replaced.status_code == 200 and replaced.headers["ETag"] == '"3"'
    assert replaced.get_json()["properties"]["capacity"] == 10
    changed = {**feature("Id"), "id": "other"}
    assert _problem(_write(live, "PUT", "live-rev", changed, '"3"'), 422)["errors"][0][
        "param"] == "/id"
    _problem(_write(live, "PUT", "nope", feature("Nope"), '"1"'), 404)
    _problem(_write(live, "DELETE", "live-rev", etag='W/"3"'), 412)  # weak: never matches

    closed = _write(live, "DELETE", "live-rev", etag='"3"')
    assert closed.status_code == 204 and closed.headers["ETag"] == '"4"'
    _problem(live.client.get("/v1/spaces/live-rev"), 404)
    assert "live-rev" not in {f["id"] for f in live.client.get(
        "/v1/spaces/radius?lat=52.52&lon=13.41&radius_m=100").get_json()["features"]}
    _problem(_write(live, "DELETE", "live-rev", etag="*"), 404)
    _problem(_create(live, {**feature("Wieder"), "id": "live-rev"}), 409)
    ops = [(c["op"], c["revision"], c["previous_revision"])
           for c in _feed(live)["changes"] if c["id"] == "live-rev"]
    assert ops == [("create", 1, None), ("update", 2, 1), ("replace", 3, 2), ("close", 4, 3)]


def test_keys_and_scopes(live):
    _problem(live.client.post("/v1/spaces", json=feature("Ohne")), 401)
    no_scope = live.client.post("/v1/spaces", json=feature("Folger"),
                                headers=live.auth["follower"])
    _problem(no_scope, 403)
    _problem(live.client.get("/v1/changes", headers=live.auth["writer"]), 403)
    _problem(live.client.get("/v1/changes"), 401)


@pytest.mark.parametrize("query, param", [
    ("since=-1", "since"), ("since=99999999999999999999999", "since"), ("since=abc", "since"),
    ("limit=0", "limit"), ("limit=100000", "limit"), ("wait=31", "wait"), ("wait=x", "wait"),
])
def test_feed_parameters_are_bounded(live, query, param):
    problem = _problem(live.client.get(f"/v1/changes?{query}",
                                       headers=live.auth["follower"]), 400)
    assert [e["param"] for e in problem["errors"]] == [param]


def test_a_waiting_follower_is_woken_by_the_next_commit(live):
    since = _seq(live.url)
    assert _feed(live, since, wait=1)["changes"] == []  # nothing: waits, then answers

    def later() -> None:
        time.sleep(0.5)
        live.app.test_client().post("/v1/spaces", json=feature("Geweckt", [13.2, 52.4]),
                                    headers=live.auth["writer"])

    writer = threading.Thread(target=later)
    started = time.monotonic()
    writer.start()
    woken = _feed(live, since, wait=20)
    writer.join()
    assert time.monotonic() - started < 10
    assert [(c["seq"], c["op"]) for c in woken["changes"]] == [(since + 1, "create")]
    assert woken["next_since"] == since + 1


def test_a_follower_that_lost_its_connection_catches_up_by_seq(live):
    since = _seq(live.url)
    assert _feed(live, since, wait=1)["changes"] == []  # the follower listens
    answers: list[dict] = []
    waiting = threading.Thread(target=lambda: answers.append(_feed(live, since, wait=25)))
    started = time.monotonic()
    waiting.start()
    time.sleep(0.3)
    with psycopg.connect(libpq_url(live.url), autocommit=True) as conn:
        stopped = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE application_name = %s AND datname = current_database()",
                               (LISTENER,)).fetchall()
    assert stopped == [(True,)]
    # committed while nothing listens: its NOTIFY is lost, the counter tells
    assert _create(live, feature("Verpasst", [13.25, 52.42])).status_code == 201
    waiting.join()
    assert time.monotonic() - started < 15
    assert [c["seq"] for c in answers[0]["changes"]] == [since + 1]


def test_the_snapshot_refuses_writes_with_405(memory_feed):
    client = create_app(Settings(), backend=memory_feed).test_client()
    for method, path in (("POST", "/v1/spaces"), ("PUT", "/v1/spaces/sd-de-00232"),
                         ("PATCH", "/v1/spaces/x"), ("DELETE", "/v1/spaces/x")):
        problem = _problem(client.open(path, method=method, json={}), 405)
        assert "--database" in problem["detail"]
        assert "GET" in client.open(path, method=method).headers["Allow"]


def _point_tile_ids(live, lat: float, lon: float, query: str = "") -> set[str]:
    """The ids drawn in the point tile (zoom 16) that holds (lat, lon)."""
    x, y = world_xy(np.array([lat]), np.array([lon]))
    z = 16
    body = live.client.get(f"/v1/tiles/{z}/{int(x[0] * (1 << z))}/{int(y[0] * (1 << z))}"
                           f".json{query}").get_json()
    return {f["properties"]["id"] for f in body["features"]}


def test_a_closed_space_leaves_the_tiles_and_a_patched_one_stays_in_place(live, feed_result):
    frame = feed_result.frame
    spaces = frame[(frame["status"] == "active") & (frame["country"] == "FR")].iloc[:2]
    closing, patching = (spaces.iloc[i] for i in (0, 1))
    for space in (closing, patching):
        assert space["id"] in _point_tile_ids(live, space["lat"], space["lon"])

    etag = live.client.get(f"/v1/spaces/{closing['id']}").headers["ETag"]
    assert _write(live, "DELETE", closing["id"], etag=etag).status_code == 204
    etag = live.client.get(f"/v1/spaces/{patching['id']}").headers["ETag"]
    patched = _write(live, "PATCH", patching["id"], {"properties": {"amenities": ["childcare"]}},
                     etag, MERGE)
    assert patched.status_code == 200, patched.get_data(as_text=True)

    for query in ("", "?amenities=wifi"):
        assert closing["id"] not in _point_tile_ids(live, closing["lat"], closing["lon"], query)
    assert patching["id"] in _point_tile_ids(live, patching["lat"], patching["lon"],
                                             "?amenities=childcare")
    assert patching["id"] not in _point_tile_ids(live, patching["lat"], patching["lon"],
                                                 "?amenities=wifi")


# -- paging across writes --------------------------------------------------------------------

def _radius_page(live, cursor: str | None, **params) -> dict:
    query = {"lat": 52.47, "lon": 13.30, "radius_m": 5000, "q": "Staffel", "limit": 3,
             **params, **({"cursor": cursor} if cursor else {})}
    response = live.client.get("/v1/spaces/radius", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_a_walk_by_distance_meets_a_space_that_moves_during_it_at_most_once(live):
    """Spaces 100 m apart on a meridian; after the first page, one it returned moves to
    the far end and one ahead moves next to the origin: the walk meets each unchanged space
    exactly once and each moved one at most once."""
    ids = []
    for i in range(10):
        answer = _create(live, feature(f"Staffel {i}", [13.30, 52.47 + (i + 1) * 0.0009],
                                       address=f"Staffelweg {i}"))
        assert answer.status_code == 201, answer.get_data(as_text=True)
        ids.append(answer.get_json()["id"])
    first = _radius_page(live, None)
    met = [f["id"] for f in first["features"]]
    assert met == ids[:3]
    for space_id, lat in ((ids[0], 52.47 + 0.0095), (ids[7], 52.47 + 0.0001)):
        etag = live.client.get(f"/v1/spaces/{space_id}").headers["ETag"]
        moved = _write(live, "PATCH", space_id, {"geometry": {
            "type": "Point", "coordinates": [13.30, lat]}}, etag, MERGE)
        assert moved.status_code == 200, moved.get_data(as_text=True)
    cursor = first["next"]
    while cursor:
        page = _radius_page(live, cursor)
        met += [f["id"] for f in page["features"]]
        cursor = page.get("next")
    unchanged = [i for i in ids if i not in (ids[0], ids[7])]
    assert all(met.count(i) == 1 for i in unchanged)
    assert all(met.count(i) <= 1 for i in ids)
    # A new walk sees the moved spaces where they are now
    fresh = _radius_page(live, None, limit=100)
    order = [f["id"] for f in fresh["features"]]
    assert (order[0], order[-1]) == (ids[7], ids[0])


# -- racing writers ------------------------------------------------------------------------

def test_eight_writers_patching_one_space_lose_no_update(live):
    assert _create(live, {**feature("Wettlauf", [13.45, 52.48]), "id": "live-race",
                          "properties": {**feature("Wettlauf")["properties"], "capacity": 100}}
                   ).status_code == 201
    successes = []

    def writer() -> None:
        client = live.app.test_client()
        done = 0
        while done < 6:
            got = client.get("/v1/spaces/live-race")
            capacity = got.get_json()["properties"]["capacity"]
            answer = client.patch("/v1/spaces/live-race", data=json.dumps(
                {"properties": {"capacity": capacity + 1}}), content_type=MERGE,
                headers={**live.auth["writer"], "If-Match": got.headers["ETag"]})
            if answer.status_code == 200:
                done += 1
            else:
                assert answer.status_code == 412, answer.get_data(as_text=True)
        successes.append(done)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = live.client.get("/v1/spaces/live-race")
    assert final.get_json()["properties"]["capacity"] == 100 + sum(successes) == 148
    assert final.headers["ETag"] == f'"{1 + sum(successes)}"'


# -- hostile input ---------------------------------------------------------------------------

def test_hostile_bodies_and_headers_are_4xx_and_write_nothing(live):
    before = _seq(live.url)
    writer = live.auth["writer"]
    raw = [
        b"[" * 5000 + b"]" * 5000, b'{"a":' * 20 + b"1" + b"}" * 20, b"x" * 70_000,
        b'{"type": "Feature", "properties": {"name": "\\ud800"}}', b"1" + b"0" * 400,
        b'{"name": "' + b"9" * 400 + b'"}', b'{"name": 1e400, "country": "DE"}',
        b'{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1e400, 2]}}',
        b"\xff\xfe", b'{"name": "NUL\\u0000", "country": "DE", "city": "Berlin"}', b"null",
        b'{"type": "Feature", "properties": [], "geometry": 5}', b"",
        b'{"name": ["x"], "country": 7, "capacity": 1.5, "amenities": "wifi"}',
    ]
    for data in raw:
        answer = live.client.post("/v1/spaces", data=data, headers=writer,
                                  content_type="application/json")
        assert 400 <= answer.status_code < 500, data[:40]
        assert answer.mimetype == "application/problem+json"
    assert _create(live, {**feature("Hostile"), "id": "live-hostile"}).status_code == 201
    before = _seq(live.url)
    for etag in ("garbage", '"1", ' * 30, '"' + "1" * 400 + '"', "W/", '"1'):
        answer = _write(live, "DELETE", "live-hostile", etag=etag)
        assert answer.status_code in (400, 412), etag
    huge = _write(live, "DELETE", "live-hostile", etag='"' + "1" * 9000 + '"')
    assert huge.status_code == 431
    assert live.client.post("/v1/spaces", data=b"{}", headers=writer,
                            content_type="text/plain").status_code == 415
    for key in ("", "x" * 10_000, "gsk_\x00", writer["Authorization"][7:20]):
        answer = live.client.post("/v1/spaces", json=feature("Key"),
                                  headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code in (401, 431), key[:20]
        assert key[4:] not in answer.get_data(as_text=True) or not key[4:]
    assert _seq(live.url) == before
    assert live.client.get("/v1/spaces/live-hostile").headers["ETag"] == '"1"'


# -- the load and the feed -------------------------------------------------------------------

def test_a_load_that_replaces_the_dataset_appends_one_dataset_entry(pg_database,
                                                                     synthetic_result,
                                                                     feed_result):
    url = livewrites.loaded(pg_database, synthetic_result, "writes_load")
    engine = make_engine(Settings(database_url=url))
    try:
        assert load(feed_result.frame, feed_result.meta(), engine) is True
        assert load(feed_result.frame, feed_result.meta(), engine) is False  # unchanged
    finally:
        engine.dispose()
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT seq, op, actor, dataset_version, id FROM changes "
                            "ORDER BY seq").fetchall()
    assert rows == [(1, "dataset", "ingest", synthetic_result.report.dataset_version, None),
                    (2, "dataset", "ingest", feed_result.report.dataset_version, None)]


# -- random writes against the oracle --------------------------------------------------------

def _word_plane_is_exact(url: str) -> None:
    """``search_words`` counts the active spaces of each word (0 for a word written out),
    and ``word_points`` holds a point per active space and tiled word, where a load puts
    it: nothing more."""
    with psycopg.connect(libpq_url(url)) as conn:
        counts = dict(conn.execute(
            "SELECT w, count(*) FROM spaces, unnest(tsvector_to_array(search)) w "
            "WHERE status = 'active' GROUP BY w").fetchall())
        words = {w: (n, t) for w, n, t in conn.execute(
            "SELECT word, spaces, tile FROM search_words").fetchall()}
        wanted = sorted(
            (place, plane_x(words[w][1], lon), lat) for place, lon, lat, w in conn.execute(
                "SELECT place, lon, lat, w FROM spaces, unnest(tsvector_to_array(search)) w "
                "WHERE status = 'active'").fetchall() if words[w][1] is not None)
        points = sorted(conn.execute("SELECT place, pt[0], pt[1] FROM word_points").fetchall())
        places = conn.execute("SELECT count(*), count(DISTINCT place) FROM spaces").fetchone()
    assert {w: n for w, (n, _) in words.items() if n} == counts
    assert min(n for n, _ in words.values()) >= 0
    assert points == wanted
    assert places[0] == places[1]


def test_after_random_writes_every_search_equals_the_oracle(pg_database, feed_result):
    service = livewrites.service(livewrites.loaded(pg_database, feed_result, "writes_oracle"))
    rng = random.Random(26)
    model = livewrites.model(feed_result)
    try:
        written = livewrites.random_writes(service, model, rng, 300)
        assert written > 250
        livewrites.check_searches([service.backend], livewrites.frame_of(model), rng)
        for space_id in rng.sample(sorted(model), 50):
            got = service.client.get(f"/v1/spaces/{space_id}").get_json()
            assert livewrites.fields(got) == model[space_id]
        _word_plane_is_exact(service.url)
        livewrites.check_tiles_where_written(service.backend, livewrites.model(feed_result),
                                             model, rng)
        entries = _feed(service)["changes"]
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert entries[0]["op"] == "dataset"
        assert len(entries) == 1 + written
        assert {e["actor"] for e in entries[1:]} == {"writer"}
    finally:
        livewrites.close(service)


def test_a_tile_etag_from_before_a_write_is_not_answered_304(live):
    """A tile's ETag is bound to the change seq: after a write, If-None-Match with the old
    ETag gets the tile again, not 304."""
    x, y = world_xy(np.array([BERLIN[1]]), np.array([BERLIN[0]]))
    path = f"/v1/tiles/10/{int(x[0] * 1024)}/{int(y[0] * 1024)}.mvt"
    first = live.client.get(path)
    assert first.status_code == 200
    etag = first.headers["ETag"]
    assert live.client.get(path, headers={"If-None-Match": etag}).status_code == 304
    made = _create(live, feature("Kachelwerk", [BERLIN[0] + 0.001, BERLIN[1]],
                                 address="Kachelweg 2"))
    assert made.status_code == 201, made.get_data(as_text=True)
    again = live.client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag
