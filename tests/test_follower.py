"""The memory index as a live follower of PostGIS (geosearch.backends.follower): built from
the database's dataset, then kept up with the change feed in memory.

After a few hundred random writes through the API, a follower that folds its overlay into
new bases and one that never does answer every search, count, space, amenity count, tile
and the active spaces as the brute-force oracle and as PostGIS do; a walk by distance
through the follower meets a space that moves during it at most once; a read with a
write's consistency token sees the write; a load under a follower replaces its dataset;
``geosearch serve --index memory`` follows in every gunicorn worker; PostgreSQL restarted
under a follower: it answers from memory meanwhile and resumes from its seq. (The
contract suite, tests/test_contract.py, runs on a follower too.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import psycopg
import pytest

from geosearch import cli
from geosearch.api import create_app
from geosearch.api.consistency import TOKEN_HEADER, token_seq
from geosearch.api.geojson import CHANGE_SEQ_HEADER
from geosearch.backends.follower import FollowerBackend
from geosearch.backends.follower_feed import APPLICATION_NAME
from geosearch.backends.memory import MemoryBackend
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import libpq_url, make_engine
from geosearch.ingest.pipeline import IngestResult, dataset_version
from geosearch.ingest.report import IngestReport
from geosearch.keys import KeyStore
from geosearch.model import (
    POINT_ZOOM,
    Amenity,
    Filters,
    NearestQuery,
    Point,
    RadiusQuery,
    Space,
    TileQuery,
)
from geosearch.settings import Settings
from geosearch.store import load
from geosearch.testing import livewrites, pgcluster
from geosearch.testing.livewrites import MERGE, feature
from geosearch.testing.ports import free_port
from geosearch.testing.tilecheck import FILTERS, ZOOMS, check_tile, decode, tile_of
from geosearch.text import query_terms
from geosearch.tiles import MAX_MERCATOR_LAT

# Small enough that the writes of a test fold the overlay into new bases a few times
COMPACT_AT = 60
NEVER = 10**9
CATCH_UP_S = 30


def _caught_up(follower: FollowerBackend, primary: PostgisBackend) -> None:
    """Wait until the follower has applied every change the database has committed."""
    want = primary.data_stamp()
    deadline = time.monotonic() + CATCH_UP_S
    while follower.data_stamp() != want:
        assert time.monotonic() < deadline, (follower.data_stamp(), want)
        time.sleep(0.02)


@pytest.fixture(scope="module")
def followed(pg_database, feed_result):
    """The API over a compacting follower of a loaded database (writes go to PostGIS),
    and a second follower of it that never compacts."""
    served = livewrites.service(livewrites.loaded(pg_database, feed_result, "follower"),
                                lambda primary: FollowerBackend(primary, COMPACT_AT))
    uncompacted = FollowerBackend(PostgisBackend(Settings(database_url=served.url)), NEVER)
    yield SimpleNamespace(served=served, follower=served.backend,
                          primary=served.backend.primary, uncompacted=uncompacted)
    uncompacted.close()
    livewrites.close(served)


def _fields(space: Space) -> dict:
    """The fields the oracle reads, of a space a backend answered."""
    return livewrites.fields({"id": space.id, "geometry": {"coordinates": [space.lon, space.lat]},
                              "properties": asdict(space)})


def _amenity_counts(spaces: dict[str, dict]) -> dict[str, int]:
    return {a.value: sum(a.value in s["amenities"] for s in spaces.values()) for a in Amenity}


def _tile_features(backend, query: TileQuery) -> list[tuple]:
    """A tile's features as (id, count, x, y), sorted (the order of the MVT is free)."""
    return sorted((f["properties"].get("id", ""), f["properties"].get("count", 1),
                   *f["geometry"]["coordinates"]) for f in decode(backend.tile_mvt(query)[0]))


def _same_tiles(follower, primary, spaces: list[dict]) -> None:
    """The tiles around the spaces at every zoom and with each kind of filter: the same
    spaces and clusters on both, at the same pixels (a cluster's mean may round to the
    neighbouring one); and every space of the bbox query once."""
    for space in spaces:
        for z in ZOOMS:
            for filters in FILTERS.values():
                query = TileQuery(*tile_of(space["lat"], space["lon"], z), filters)
                check_tile(follower, query.z, query.x, query.y, filters)
                mine, theirs = _tile_features(follower, query), _tile_features(primary, query)
                assert [f[:2] for f in mine] == [f[:2] for f in theirs], query
                for a, b in zip(mine, theirs, strict=True):
                    slack = 0 if a[0] else 1
                    assert abs(a[2] - b[2]) <= slack and abs(a[3] - b[3]) <= slack, query


def test_after_random_writes_the_followers_answer_as_the_oracle_and_postgis(followed,
                                                                            feed_result):
    rng = random.Random(27)
    before = livewrites.model(feed_result)
    spaces = dict(before)
    loaded = followed.follower.data_stamp()
    written = livewrites.random_writes(followed.served, spaces, rng, 300)
    assert written > 250
    for follower in (followed.follower, followed.uncompacted):
        _caught_up(follower, followed.primary)
    assert followed.follower.tracker.layers.base_seq > loaded[1]  # folded into a new base
    layers = followed.uncompacted.tracker.layers
    assert layers.base_seq == loaded[1] and layers.overlay_rows.num_rows > 100
    backends = [followed.follower, followed.uncompacted, followed.primary]

    livewrites.check_searches(backends, livewrites.frame_of(spaces), rng, nearest_text=True,
                               origins=10)
    closed = sorted(set(before) - set(spaces))
    for space_id in rng.sample(sorted(spaces), 100) + closed[:20]:
        for backend in backends:
            got = backend.get(space_id)
            assert (None if got is None else _fields(got)) == spaces.get(space_id), space_id
    for backend in backends:
        assert backend.amenity_counts() == _amenity_counts(spaces)
    frame = followed.primary.active_frame()
    for follower in backends[:2]:
        pd.testing.assert_frame_equal(follower.active_frame(), frame)
    changed = [s for i, s in sorted(spaces.items()) if before.get(i) != s]
    gone = [before[i] for i in closed]
    for follower in backends[:2]:
        _same_tiles(follower, followed.primary, rng.sample(changed, 4) + gone[:2])


@pytest.mark.postgis  # asks for its follower by name
@pytest.mark.parametrize("dataset", ["feed", "synthetic"])
def test_a_follower_with_an_overlay_draws_the_tiles_of_its_dataset(request, dataset):
    """A third of the spaces in the overlay and hidden in the base (tests/conftest.py):
    every tile around a sample of spaces, at every zoom and with each kind of filter,
    as the memory backend of the same spaces draws it."""
    follower = request.getfixturevalue(f"follower_{dataset}")
    memory = request.getfixturevalue(f"memory_{dataset}")
    frame = request.getfixturevalue(f"{dataset}_result").frame
    mapped = frame[(frame["status"] == "active") & (frame["lat"].abs() <= MAX_MERCATOR_LAT)]
    for row in mapped.sample(12, random_state=7).itertuples():
        for z in ZOOMS:
            for filters in FILTERS.values():
                query = TileQuery(*tile_of(row.lat, row.lon, z), filters)
                mine, theirs = follower.tile(query), memory.tile(query)
                assert (mine.ids, mine.count.tolist()) == (theirs.ids, theirs.count.tolist())
                assert np.allclose(mine.world_x, theirs.world_x, rtol=0, atol=1e-12)
                assert np.allclose(mine.world_y, theirs.world_y, rtol=0, atol=1e-12)


def _cluster_of_two(memory: MemoryBackend, frame: pd.DataFrame) -> tuple[TileQuery, int]:
    """An unfiltered cluster tile with a cell of two spaces, and the first space's row."""
    for row in frame.itertuples():
        for z in (z for z in ZOOMS if z < POINT_ZOOM):
            query = TileQuery(*tile_of(row.lat, row.lon, z))
            cells = memory.tile_cells(query)
            pairs = np.flatnonzero(cells.count == 2)
            if pairs.size:
                return query, int(cells.rows[pairs[0]])
    raise AssertionError("no cell of two spaces")


def test_a_view_without_one_of_two_spaces_of_a_cell_draws_the_other(memory_feed,
                                                                     feed_result):
    """The prefix sums count the hidden space out of its cell, and the cell left with one
    space is drawn as that one (not as the cell's first, hidden, space)."""
    frame = feed_result.frame[feed_result.frame["status"] == "active"]
    query, first = _cluster_of_two(memory_feed, frame)
    hidden = np.zeros(memory_feed.size, dtype=bool)
    hidden[first] = True
    rest = MemoryBackend.from_frame(frame[frame["id"] != memory_feed.ids[first]], "rest")

    got, want = memory_feed.without(hidden).tile(query), rest.tile(query)
    assert (got.ids, got.count.tolist()) == (want.ids, want.count.tolist())
    assert np.allclose(got.world_x, want.world_x, rtol=0, atol=1e-12)
    assert np.allclose(got.world_y, want.world_y, rtol=0, atol=1e-12)


def _radius_page(backend, after, limit=3):
    return backend.radius(RadiusQuery(Point(52.47, 13.30), 5000, limit=limit, after=after,
                                      filters=Filters(text=query_terms("staffel"))))


def test_a_walk_through_the_follower_meets_a_space_moved_during_it_at_most_once(followed):
    """Spaces 100 m apart on a meridian; after the first page, one it returned moves to
    the far end and one ahead moves next to the origin."""
    client, writer = followed.served.client, followed.served.auth["writer"]
    ids = []
    for i in range(10):
        answer = client.post("/v1/spaces", headers=writer, json=feature(
            f"Staffel {i}", [13.30, 52.47 + (i + 1) * 0.0009], address=f"Staffelweg {i}"))
        assert answer.status_code == 201, answer.get_data(as_text=True)
        ids.append(answer.get_json()["id"])
    _caught_up(followed.follower, followed.primary)
    first = _radius_page(followed.follower, None)
    met = [h.space.id for h in first.hits]
    assert met == ids[:3]
    for space_id, lat in ((ids[0], 52.47 + 0.0095), (ids[7], 52.47 + 0.0001)):
        etag = client.get(f"/v1/spaces/{space_id}").headers["ETag"]
        moved = client.patch(f"/v1/spaces/{space_id}", headers={
            **writer, "If-Match": etag, "Content-Type": MERGE}, json={"geometry": {
                "type": "Point", "coordinates": [13.30, lat]}})
        assert moved.status_code == 200, moved.get_data(as_text=True)
    _caught_up(followed.follower, followed.primary)
    after = first.next_after
    while after is not None:
        page = _radius_page(followed.follower, after)
        met += [h.space.id for h in page.hits]
        after = page.next_after
    assert all(met.count(i) == 1 for i in ids if i not in (ids[0], ids[7]))
    assert all(met.count(i) <= 1 for i in ids)
    fresh = [h.space.id for h in _radius_page(followed.follower, None, limit=100).hits]
    assert fresh[0] == ids[7] and fresh[-1] == ids[0]
    # through the API, over HTTP's cursors, the same
    body = client.get("/v1/spaces/radius?lat=52.47&lon=13.30&radius_m=5000&q=staffel"
                      "&limit=100").get_json()
    assert [f["id"] for f in body["features"]] == fresh


def test_a_read_with_a_consistency_token_sees_the_write(followed):
    """Through a follower that stopped following, a read with the token of a write is
    answered by the primary once the wait is over; without it, from memory as it is;
    through the one that follows, from memory."""
    stopped = FollowerBackend(PostgisBackend(Settings(database_url=followed.served.url,
                                                      consistency_wait_ms=100)))
    stopped.tracker.close()
    client = create_app(Settings(database_url=followed.served.url), backend=stopped
                        ).test_client()
    try:
        created = followed.served.client.post(
            "/v1/spaces", headers=followed.served.auth["writer"],
            json=feature("Token Kontor", [13.52, 52.41]))
        assert created.status_code == 201, created.get_data(as_text=True)
        token = {TOKEN_HEADER: created.headers[TOKEN_HEADER]}
        seq = token_seq(created.headers[TOKEN_HEADER])
        near = "/v1/spaces/nearest?lat=52.41&lon=13.52&k=1"
        for reader, headers, fresh in ((client, token, True), (client, {}, False),
                                       (followed.served.client, token, True)):
            answer = reader.get(near, headers=headers)
            assert answer.status_code == 200, answer.get_data(as_text=True)
            ids = [f["id"] for f in answer.get_json()["features"]]
            assert (ids == [created.get_json()["id"]]) is fresh
            assert (int(answer.headers[CHANGE_SEQ_HEADER]) >= seq) is fresh
    finally:
        stopped.close()


def test_a_load_under_a_follower_replaces_its_dataset(pg_database, feed_result):
    first = feed_result.frame.head(300).copy()
    report = IngestReport(feed="first 300", input_rows=300, loaded=300)
    report.dataset_version = dataset_version(first)
    url = livewrites.loaded(pg_database, IngestResult(first, report), "follower_load")
    primary = PostgisBackend(Settings(database_url=url))
    follower = FollowerBackend(PostgisBackend(Settings(database_url=url)))
    try:
        assert follower.data_stamp() == (report.dataset_version, 1)
        follower.tracker.current()  # follows from here
        engine = make_engine(Settings(database_url=url))
        load(feed_result.frame, feed_result.meta(), engine)
        engine.dispose()
        _caught_up(follower, primary)

        assert follower.dataset_version() == feed_result.report.dataset_version
        assert follower.tracker.layers.base_seq == 2  # the new dataset read whole
        pd.testing.assert_frame_equal(follower.active_frame(), primary.active_frame())
        query = NearestQuery(Point(48.85, 2.35), 20)
        assert livewrites.ids(follower.nearest(query)) == livewrites.ids(primary.nearest(query))
    finally:
        follower.close()
        primary.close()


def _get(url: str, headers: dict | None = None) -> tuple[dict, dict]:
    """The JSON body and headers of a GET on a connection of its own (any worker)."""
    request = urllib.request.Request(url, headers={"Connection": "close", **(headers or {})})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer), dict(answer.headers)


def test_geosearch_serve_index_memory_follows_writes_in_every_worker(pg_database,
                                                                      feed_result):
    """The server as deployed (gunicorn, two gevent workers forked after the base was
    built): a write through it is read back from memory by every worker, with and
    without its token; a worker killed -9 is replaced by one that catches up."""
    url = livewrites.loaded(pg_database, feed_result, "follower_serve")
    keys = KeyStore(Settings(database_url=url))
    writer = {"Authorization": f"Bearer {keys.create('serve-writer', ['write'])}"}
    keys.close()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "geosearch.cli", "serve", "--database",
                               url, "--index", "memory", "--port", str(port), "--workers",
                               "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "GEOSEARCH_CLIENT_BUDGET": "0"})  # polled
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            try:
                _get(f"{base}/readyz")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.3)
        body = json.dumps(feature("Geforkt Atelier", [10.01, 53.55], city="Hamburg")).encode()
        request = urllib.request.Request(f"{base}/v1/spaces", data=body, method="POST",
                                         headers={**writer, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            created, token = json.load(answer)["id"], answer.headers[TOKEN_HEADER]
        near = f"{base}/v1/spaces/nearest?lat=53.55&lon=10.01&k=1"
        found, _ = _get(near, {TOKEN_HEADER: token})
        assert [f["id"] for f in found["features"]] == [created]
        _read_back(near, created, token_seq(token), time.monotonic() + CATCH_UP_S)
        ready, _ = _get(f"{base}/readyz")
        memory = [n for n in ready["nodes"] if n["role"] == "memory"]
        assert memory and memory[0]["applied_seq"] >= token_seq(token)
        assert _following(url) == 2  # each worker on its own

        workers = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        os.kill(int(workers[0]), signal.SIGKILL)  # its replacement forks from the base
        _read_back(near, created, token_seq(token), time.monotonic() + CATCH_UP_S)
        _until_following(url, 2, time.monotonic() + CATCH_UP_S)  # the replacement too
    finally:
        server.terminate()
        server.wait(10)


def _read_back(near: str, created: str, seq: int, until: float) -> None:
    """Search until 12 answers in a row, from whichever workers answer, come from a state
    of ``seq`` or later, which finds the space ``created`` (an older state must not)."""
    seen = 0
    while seen < 12:
        found, headers = _get(near)
        fresh = int(headers[CHANGE_SEQ_HEADER]) >= seq
        assert ([f["id"] for f in found["features"]] == [created]) is fresh
        seen = seen + 1 if fresh else 0
        assert time.monotonic() < until


def _until_following(url: str, count: int, deadline: float) -> None:
    """Wait until ``count`` processes follow the feed (a worker forked just now connects
    when it starts following)."""
    while (found := _following(url)) != count:
        assert time.monotonic() < deadline, f"{found} processes follow the feed, not {count}"
        time.sleep(0.2)


def _following(url: str) -> int:
    """How many processes follow the database's feed into memory."""
    with psycopg.connect(libpq_url(url)) as conn:
        found = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND application_name = %s",
                             (APPLICATION_NAME,)).fetchone()
    return int(found[0]) if found else 0


def test_serve_index_memory_needs_a_database(monkeypatch, capsys):
    monkeypatch.delenv("GEOSEARCH_DATABASE_URL", raising=False)
    assert cli.main(["serve", "--index", "memory"]) == 2
    assert "--index memory follows a database" in capsys.readouterr().err


def _answers_again(served, spaces: dict[str, dict]) -> None:
    """Wait until the API's pools of the primary have dropped the connections that the
    restart broke (each answers 503 once): reads of a space by id (on the primary) and
    creates answer many times in a row (the spaces created go into the model)."""
    deadline, in_a_row, n = time.monotonic() + CATCH_UP_S, 0, 0
    while in_a_row < 10:
        n += 1
        read = served.client.get("/v1/spaces/sd-de-00232")
        created = served.client.post("/v1/spaces", headers=served.auth["writer"],
                                     json=feature(f"Neustart {n}", [13.31 + n / 1000, 52.44]))
        assert {read.status_code, created.status_code} <= {200, 201, 404, 503}
        assert time.monotonic() < deadline
        if created.status_code == 201:
            spaces[created.get_json()["id"]] = livewrites.fields(created.get_json())
        in_a_row = in_a_row + 1 if 503 not in (read.status_code, created.status_code) else 0


@pytest.mark.postgis  # a cluster of its own
def test_postgres_restarted_under_a_follower(own_cluster, feed_result):
    datadir, port, url = own_cluster
    served = livewrites.service(livewrites.loaded(lambda _: url, feed_result, "restart"),
                                lambda primary: FollowerBackend(primary, NEVER))
    follower, primary = served.backend, served.backend.primary
    rng = random.Random(28)
    spaces = livewrites.model(feed_result)
    query = RadiusQuery(Point(52.52, 13.40), 20_000, limit=50)
    try:
        livewrites.random_writes(served, spaces, rng, 40)
        _caught_up(follower, primary)
        before = follower.tracker.layers
        answer = follower.radius(query)

        pgcluster.stop(datadir, mode="immediate")
        time.sleep(1.5)  # the follower finds the database gone
        assert follower.radius(query) == answer  # from memory, at its seq
        assert follower.data_stamp() == (before.version, before.seq)
        pgcluster.start(datadir, port)
        _answers_again(served, spaces)
        livewrites.random_writes(served, spaces, rng, 40)
        _caught_up(follower, primary)

        after = follower.tracker.layers
        assert after.base is before.base and after.seq > before.seq  # resumed, not reloaded
        livewrites.check_searches([follower], livewrites.frame_of(spaces), rng,
                                  nearest_text=True, origins=5)
        assert follower.amenity_counts() == _amenity_counts(spaces)
        assert np.array_equal(follower.active_frame()["id"], sorted(spaces))
    finally:
        livewrites.close(served)
