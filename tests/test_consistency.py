"""Read-your-writes and freshness (geosearch.api.consistency, geosearch.backends.nodes): a
write's X-Consistency-Token, read back on a primary and a real hot standby whose replay is
paused (pg_wal_replay_pause), so that the replica is behind for as long as a test needs;
X-Change-Seq on every search answer; the replicas' lag in /readyz and in the rotation."""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from geosearch.api import create_app
from geosearch.api.consistency import token, token_seq
from geosearch.backends.nodes import Nodes
from geosearch.backends.postgis import PostgisBackend
from geosearch.backends.statements import APPLIED_SEQ_SQL
from geosearch.database import libpq_url, make_engine
from geosearch.keys import KeyStore
from geosearch.settings import Settings
from geosearch.store import load
from geosearch.testing import pgcluster
from geosearch.testing.ports import free_port

BERLIN = [13.3777, 52.5163]  # lon, lat: in DE, far from its border
MERGE = "application/merge-patch+json"
KEY_NAMES = itertools.count()
NEAR = f"lat={BERLIN[1]}&lon={BERLIN[0]}"
TOKEN = "X-Consistency-Token"
SEQ = "X-Change-Seq"
SEARCHES = [f"/v1/spaces/radius?{NEAR}&radius_m=3000", f"/v1/spaces/nearest?{NEAR}&k=3",
            "/v1/spaces/bbox?bbox=13.3,52.5,13.5,52.6", "/v1/spaces?limit=3",
            "/v1/amenities", "/v1/tiles/12/2200/1343.mvt", "/v1/tiles/9/275/167.json",
            "/ogc/collections/spaces/items?limit=3"]


# -- without a database: the token's form, the headers -------------------------------------

@pytest.mark.parametrize("seq", [0, 1, 12345, 2**53 - 1])
def test_a_token_names_its_seq(seq):
    assert token_seq(token(seq)) == seq


@pytest.mark.parametrize("text", [
    "", "x", "MS4x=", "not a token", token(1) + "!", "MS4wMQ",  # "1.01"
    "Mi4x",  # "2.1": another format
    "MS4xMjM0NTY3ODkwMTIzNDU2Nzg5", "é", "MS4" + "A" * 40,
    "MS45MDA3MTk5MjU0NzQwOTky",  # "1.9007199254740992": past the largest seq
])
def test_a_malformed_token_is_a_400_naming_the_header(client, text):
    response = client.get(SEARCHES[0], headers={TOKEN: text})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert [e["param"] for e in response.get_json()["errors"]] == [TOKEN]


@pytest.mark.parametrize("path", [*SEARCHES, "/v1/spaces/{id}",
                                  "/ogc/collections/spaces/items/{id}"])
def test_every_search_answer_says_its_version_and_seq(client, memory_feed, path):
    path = path.format(id=memory_feed.ids[0])
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["X-Dataset-Version"] == memory_feed.dataset_version()
    assert response.headers[SEQ] == "0"  # a snapshot applies no write


def test_a_snapshot_answers_a_token_from_itself(client):
    response = client.get(SEARCHES[0], headers={TOKEN: token(7)})
    assert response.status_code == 200 and response.headers[SEQ] == "0"


def test_the_other_routes_take_no_stamp_and_check_no_token(client):
    landing = client.get("/ogc/", headers={TOKEN: "garbage"})
    assert landing.status_code == 200 and SEQ not in landing.headers
    assert SEQ not in client.get(SEARCHES[0] + "&radius_m=-1").headers  # an error


# -- a primary and a hot standby -----------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(feed_result):
    base = Path(tempfile.mkdtemp(prefix="geosearch-consistency-"))
    base.chmod(0o755)
    ports = [free_port() for _ in range(2)]
    urls = pgcluster.start_cluster(base, ports)
    engine = make_engine(Settings(database_url=urls[0]))
    load(feed_result.frame, feed_result.meta(), engine)
    engine.dispose()
    _until(lambda: _applied(urls[1]) == _applied(urls[0]))
    yield SimpleNamespace(base=base, primary=urls[0], replica=urls[1])
    pgcluster.stop_cluster(base)
    shutil.rmtree(base, ignore_errors=True)


def _until(predicate, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _sql(url: str, sql: str):
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        return conn.execute(sql).fetchone()


def _applied(url: str) -> int:
    return _sql(url, "SELECT seq FROM change_counter")[0]


class _Paused:
    """The replica's replay paused in the block: it answers, from a snapshot that stays
    as it was."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> _Paused:
        _sql(self.url, "SELECT pg_wal_replay_pause()")
        return self

    def resume(self) -> None:
        _sql(self.url, "SELECT pg_wal_replay_resume()")

    def __exit__(self, *exc) -> None:
        self.resume()


@pytest.fixture
def service(cluster):
    """The app over the primary and the replica; ``answered``: the role of each node that
    ran a search statement of a request, in order (not the seq a wait polls, nor the
    watcher's statements)."""
    made = []

    def make(**settings):
        config = Settings(database_url=cluster.primary, replica_urls=(cluster.replica,),
                          write_rate_limit="", **settings)
        backend = PostgisBackend(config)
        app = create_app(config, backend=backend)
        keys = KeyStore(config)
        secret = keys.create(f"writer-{next(KEY_NAMES)}", ["write"])
        auth = {"Authorization": f"Bearer {secret}"}
        answered: list[str] = []

        def spy(node, sql, params, generic=False):
            if ("change_counter" in sql and sql != APPLIED_SEQ_SQL
                    and threading.current_thread().name != "geosearch-nodes"):
                answered.append(node.role)
            return Nodes.run_on_node(node, sql, params, generic)

        backend.cluster.run_on_node = spy  # type: ignore[method-assign]
        made.append((app, keys, backend))
        return SimpleNamespace(client=app.test_client(), backend=backend, auth=auth,
                               answered=answered)

    yield make
    for app, keys, backend in made:
        app.extensions["geosearch.writes"].close()
        keys.close()
        backend.close()


def _create(s, name: str) -> tuple[str, str]:
    """A new space at BERLIN named ``name``: its id and the write's token."""
    doc = {"type": "Feature", "geometry": {"type": "Point", "coordinates": BERLIN},
           "properties": {"name": name, "address": "Unter den Linden 1", "city": "Berlin",
                          "country": "DE", "amenities": ["wifi"], "capacity": 10}}
    response = s.client.post("/v1/spaces", json=doc, headers=s.auth)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"], response.headers[TOKEN]


def _found(s, space_id: str, headers: dict | None = None):
    response = s.client.get(f"/v1/spaces/radius?{NEAR}&radius_m=50&limit=500",
                            headers=headers or {})
    assert response.status_code == 200
    return space_id in {f["id"] for f in response.get_json()["features"]}, response


@pytest.mark.postgis
@pytest.mark.xdist_group("replicas")
def test_every_write_answers_a_token_of_its_seq(service, cluster):
    s = service()
    space_id, created = _create(s, "Token Hall")
    assert token_seq(created) == _applied(cluster.primary)
    etag = s.client.get(f"/v1/spaces/{space_id}").headers["ETag"]
    patched = s.client.patch(f"/v1/spaces/{space_id}",
                             data=json.dumps({"properties": {"capacity": 11}}),
                             headers={**s.auth, "If-Match": etag}, content_type=MERGE)
    assert token_seq(patched.headers[TOKEN]) == token_seq(created) + 1
    closed = s.client.delete(f"/ogc/collections/spaces/items/{space_id}",
                             headers={**s.auth, "If-Match": patched.headers["ETag"]})
    assert closed.status_code == 204
    assert token_seq(closed.headers[TOKEN]) == token_seq(created) + 2


@pytest.mark.postgis
@pytest.mark.xdist_group("replicas")
def test_a_read_with_a_token_sees_the_write_though_the_replica_is_behind(service, cluster):
    s = service(consistency_wait_ms=200)
    with _Paused(cluster.replica):
        space_id, written = _create(s, "Paused Replica Hall")
        seq = token_seq(written)
        behind, answer = _found(s, space_id)  # no token: the replica, as it was
        assert not behind and int(answer.headers[SEQ]) < seq
        s.answered.clear()
        seen, answer = _found(s, space_id, {TOKEN: written})
        assert seen and int(answer.headers[SEQ]) == seq  # nothing was written since
        assert s.answered == ["replica", "primary"]  # the replica was behind, then waited
        for path in SEARCHES:  # every search: never older than the token
            answer = s.client.get(path, headers={TOKEN: written})
            assert answer.status_code == 200 and int(answer.headers[SEQ]) >= seq, path


@pytest.mark.postgis
@pytest.mark.xdist_group("replicas")
def test_a_read_waits_for_the_replica_to_catch_up(service, cluster):
    s = service(consistency_wait_ms=30_000)
    with _Paused(cluster.replica) as paused:
        space_id, written = _create(s, "Catching Up Hall")
        threading.Timer(0.3, paused.resume).start()
        s.answered.clear()
        seen, answer = _found(s, space_id, {TOKEN: written})
    assert seen and int(answer.headers[SEQ]) >= token_seq(written)
    assert s.answered == ["replica", "replica"]  # behind, then caught up


@pytest.mark.postgis
@pytest.mark.xdist_group("replicas")
def test_tokens_under_a_stream_of_writes_never_read_older_data(service, cluster):
    s = service()
    for n in range(20):
        space_id, written = _create(s, f"Stream Hall {n}")
        seen, answer = _found(s, space_id, {TOKEN: written})
        assert seen and int(answer.headers[SEQ]) >= token_seq(written)


@pytest.mark.postgis
@pytest.mark.xdist_group("replicas")
def test_readyz_shows_each_nodes_seq_and_lag(service, cluster):
    s = service()
    with _Paused(cluster.replica):
        _create(s, "Lag Hall")
        time.sleep(0.2)
        body = s.client.get("/readyz").get_json()
    primary, replica = body["nodes"]
    assert body["seq"] in (primary["applied_seq"], replica["applied_seq"])
    assert primary["applied_seq"] == _applied(cluster.primary)
    assert primary["lag_seq"] == 0 and primary["lag_seconds"] == 0
    assert replica["lag_seq"] == primary["applied_seq"] - replica["applied_seq"] >= 1
    assert replica["lag_seconds"] > 0 and replica["lag_bytes"] > 0
    assert replica["in_rotation"] is True
    _until(lambda: s.client.get("/readyz").get_json()["nodes"][1]["lag_seq"] == 0)


@pytest.mark.postgis
@pytest.mark.xdist_group("replicas")
def test_a_replica_too_far_behind_leaves_the_rotation_until_it_catches_up(service, cluster):
    s = service(max_lag_s=0.5)
    replica = s.backend.cluster.replicas[0]
    s.client.get(SEARCHES[0])  # the first read starts the watcher
    with _Paused(cluster.replica) as paused:
        space_id, _ = _create(s, "Far Behind Hall")
        _until(lambda: not replica.in_rotation)
        seen, _ = _found(s, space_id)  # no token: from the primary now
        assert seen
        paused.resume()
        _until(lambda: replica.in_rotation)
    s.answered.clear()
    s.client.get(SEARCHES[0])
    s.client.get(SEARCHES[0])
    assert "replica" in s.answered


@pytest.mark.postgis
@pytest.mark.xdist_group("replicas")
def test_a_token_from_a_replaced_dataset_is_answered_from_the_current_one(service, cluster,
                                                                         feed_result):
    s = service()
    _, written = _create(s, "Before The Load Hall")
    frame = feed_result.frame.head(500).copy()
    engine = make_engine(Settings(database_url=cluster.primary))
    load(frame, {**feed_result.meta(), "dataset_version": "consistency-next"}, engine)
    engine.dispose()
    answer = s.client.get(SEARCHES[3], headers={TOKEN: written})
    assert answer.status_code == 200
    assert answer.headers["X-Dataset-Version"] == "consistency-next"
    assert int(answer.headers[SEQ]) > token_seq(written)
