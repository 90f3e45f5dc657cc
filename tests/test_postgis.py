"""PostGIS as the system of record: indexes used, atomic loads, outages, the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from faults import start_stalled_ingest

from geosearch.api import create_app
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import make_engine
from geosearch.geo import bbox_area
from geosearch.ingest.pipeline import IngestResult, dataset_version
from geosearch.ingest.report import IngestReport
from geosearch.model import Amenity, Filters, NearestQuery, Point, PolygonQuery, RadiusQuery
from geosearch.settings import Settings
from geosearch.store import ROWS_THREAD, load
from geosearch.testing import pgcluster
from geosearch.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
FEED = ROOT / "data" / "feed" / "spaces.csv"


def _subset(result: IngestResult, n: int) -> IngestResult:
    frame = result.frame.head(n).copy()
    report = IngestReport(feed=f"first {n}", input_rows=n, loaded=n)
    report.dataset_version = dataset_version(frame)
    return IngestResult(frame, report)


def _state(engine) -> tuple[str, int]:
    with engine.connect() as c:
        return (c.execute(sa.text("SELECT version FROM dataset_state")).scalar(),
                c.execute(sa.text("SELECT count(*) FROM spaces")).scalar())


@pytest.fixture
def engine(pg_database):
    engine = make_engine(Settings(database_url=pg_database("load")))
    yield engine
    engine.dispose()


@pytest.mark.parametrize(("query", "index"), [
    (RadiusQuery(Point(52.52, 13.405), 2000, Filters(frozenset({Amenity.WIFI}))),
     "spaces_geog_gist"),
    (NearestQuery(Point(52.52, 13.405), 10, None, Filters(frozenset({Amenity.PARKING}))),
     "spaces_geog_gist"),
    (PolygonQuery(bbox_area(13.3, 52.45, 13.5, 52.55)), "spaces_geom_gist"),
    (PolygonQuery(bbox_area(179.5, -20, -179.5, -15), origin=Point(-17.7, 178.0)),
     "spaces_geom_gist"),
])
def test_explain_shows_the_spatial_index(postgis_feed, query, index):
    plan = postgis_feed.explain(query)
    assert index in plan, plan


def test_nearest_uses_the_knn_operator_on_the_index(postgis_feed):
    plan = postgis_feed.explain(NearestQuery(Point(35.68, 139.69), 5))
    assert "Index Scan using spaces_geog_gist" in plan and "<->" in plan, plan


def test_amenity_filter_can_use_the_gin_index(postgis_feed):
    with psycopg.connect(postgis_feed.dsn) as c:
        c.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in c.execute(
            "EXPLAIN SELECT id FROM spaces WHERE amenities @> ARRAY['childcare']"))
    assert "spaces_amenities_gin" in plan, plan


def test_reloading_the_same_data_changes_nothing(engine, feed_result):
    assert load(feed_result.frame, feed_result.meta(), engine) is True
    before = _state(engine)

    assert load(feed_result.frame, feed_result.meta(), engine) is False

    assert _state(engine) == before
    with engine.connect() as c:
        outcomes = c.execute(sa.text("SELECT outcome FROM ingest_runs ORDER BY id")).scalars()
        assert list(outcomes) == ["loaded", "unchanged"]


def test_a_failure_mid_load_leaves_the_old_dataset(engine, feed_result, monkeypatch):
    import geosearch.store as store

    small = _subset(feed_result, 100)
    load(small.frame, small.meta(), engine)
    before = _state(engine)

    def broken_chunks(table):
        for i, chunk in enumerate(chunks(table)):
            if i == 5:
                raise RuntimeError("the feed ended mid-way")
            yield chunk

    chunks = store.csv_chunks
    monkeypatch.setattr(store, "COPY_CHUNK_ROWS", 100)
    monkeypatch.setattr(store, "csv_chunks", broken_chunks)
    with pytest.raises(RuntimeError):
        load(feed_result.frame, feed_result.meta(), engine)

    assert _state(engine) == before


def test_a_failure_making_the_rows_leaves_the_old_dataset(engine, feed_result, monkeypatch):
    """The spaces' rows are made by a thread of their own: its error fails the load."""
    import geosearch.loadrows as loadrows
    import geosearch.store as store

    small = _subset(feed_result, 100)
    load(small.frame, small.meta(), engine)
    before = _state(engine)
    rows = loadrows.spaces_rows

    def broken_rows(*args):
        for i, table in enumerate(rows(*args)):
            if i == 3:
                raise ValueError("no heads for these rows")
            yield table

    monkeypatch.setattr(store, "COPY_CHUNK_ROWS", 500)
    monkeypatch.setattr(loadrows, "spaces_rows", broken_rows)
    with pytest.raises(ValueError, match="no heads"):
        load(feed_result.frame, feed_result.meta(), engine)

    assert _state(engine) == before
    assert not [t for t in threading.enumerate() if t.name == ROWS_THREAD]


def test_a_bad_row_rejected_by_the_database_leaves_the_old_dataset(engine, feed_result):
    small = _subset(feed_result, 100)
    load(small.frame, small.meta(), engine)
    before = _state(engine)
    bad = _subset(feed_result, 300)
    bad.frame.loc[bad.frame.index[-1], "status"] = "deleted"  # violates spaces_status

    with pytest.raises(psycopg.errors.CheckViolation):
        load(bad.frame, bad.meta(), engine)

    assert _state(engine) == before


def test_a_killed_load_leaves_the_old_dataset(pg_database, feed_result):
    url = pg_database("killed")
    engine = make_engine(Settings(database_url=url))
    small = _subset(feed_result, 100)
    load(small.frame, small.meta(), engine)
    before = _state(engine)

    proc = start_stalled_ingest(url)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    assert _state(engine) == before
    engine.dispose()


def _staging_tables(engine) -> list[str]:
    with engine.connect() as c:
        return list(c.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE '%staging'")).scalars())


def test_the_load_after_a_killed_one_drops_its_leftovers_and_succeeds(pg_database,
                                                                       feed_result):
    url = pg_database("after_kill")
    engine = make_engine(Settings(database_url=url))
    load(_subset(feed_result, 100).frame, _subset(feed_result, 100).meta(), engine)
    proc = start_stalled_ingest(url)  # killed mid-COPY: its staging tables stay behind
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    full = _subset(feed_result, 300)
    assert load(full.frame, full.meta(), engine)

    assert _state(engine) == (full.report.dataset_version, 300)
    assert _staging_tables(engine) == []
    engine.dispose()


def test_loads_at_the_same_time_take_turns(engine, feed_result):
    """Each load holds an advisory lock from its staging to its swap: a second one waits
    instead of dropping the first one's staging tables."""
    results = [_subset(feed_result, n) for n in (150, 250, 350)]
    errors: list[BaseException] = []

    def run(result: IngestResult) -> None:
        try:
            load(result.frame, result.meta(), engine)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    version, count = _state(engine)
    assert (version, count) in {(r.report.dataset_version, len(r.frame)) for r in results}
    assert _staging_tables(engine) == []


def test_readers_see_the_old_dataset_or_the_new_never_half(engine, feed_result):
    small, full = _subset(feed_result, 200), feed_result
    sizes = {small.report.dataset_version: 200, full.report.dataset_version: len(full.frame)}
    load(small.frame, small.meta(), engine)
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            with engine.connect() as c:
                seen.append(tuple(c.execute(sa.text(
                    "SELECT (SELECT version FROM dataset_state), count(*) FROM spaces")).one()))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for result in (full, small, full):
            load(result.frame, result.meta(), engine)
    finally:
        stop.set()
        reader.join()

    assert seen and all(sizes[v] == n for v, n in seen)


@pytest.mark.postgis  # a cluster of its own
def test_a_restart_during_a_load_leaves_the_old_dataset(own_cluster, feed_result):
    datadir, port, url = own_cluster
    engine = make_engine(Settings(database_url=url))
    small = _subset(feed_result, 100)
    load(small.frame, small.meta(), engine)
    before = _state(engine)

    proc = start_stalled_ingest(url)
    pgcluster.stop(datadir)
    pgcluster.start(datadir, port)
    proc.kill()
    proc.wait(30)

    assert _state(engine) == before
    engine.dispose()


@pytest.mark.postgis  # a cluster of its own
def test_searches_answer_503_while_postgis_is_down_and_recover(own_cluster, feed_result):
    datadir, port, url = own_cluster
    settings = Settings(database_url=url, statement_timeout_ms=2000)
    load(feed_result.frame, feed_result.meta(), make_engine(settings))
    client = create_app(settings).test_client()
    search = "/v1/spaces/nearest?lat=52.52&lon=13.405&k=3"
    assert client.get("/readyz").status_code == 200
    assert client.get(search).status_code == 200

    pgcluster.stop(datadir)
    down_ready, down_search = client.get("/readyz"), client.get(search)
    pgcluster.start(datadir, port)
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)

    assert down_ready.status_code == 503 and down_search.status_code == 503
    assert down_search.content_type == "application/problem+json"
    assert "Traceback" not in down_search.get_data(as_text=True)
    assert client.get(search).status_code == 200


def test_cli_ingest_into_postgis_then_serve_over_http(pg_database, memory_feed):
    url = pg_database("cli")
    env = {**os.environ, "GEOSEARCH_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "geosearch.cli", "ingest", str(FEED)],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "geosearch.cli", "serve", "--database",
                               url, "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/readyz", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.3)
        import json

        with urllib.request.urlopen(f"{base}/v1/spaces/nearest?lat=48.85&lon=2.35&k=7") as r:
            served = [f["id"] for f in json.load(r)["features"]]
    finally:
        server.terminate()
        server.wait(10)
    want = [h.space.id for h in memory_feed.nearest(NearestQuery(Point(48.85, 2.35), 7))]
    assert served == want


def test_backend_from_settings_reports_no_dataset_on_an_empty_database(pg_database):
    backend = PostgisBackend.from_settings(Settings(database_url=pg_database("empty")))
    client = create_app(Settings(), backend=backend).test_client()
    assert client.get("/readyz").status_code == 503
    backend.close()


def test_a_load_longer_than_the_statement_timeout_completes(pg_database, feed_result,
                                                            monkeypatch):
    import geosearch.store as store

    chunks = store.csv_chunks

    def slow_chunks(table):
        for i, chunk in enumerate(chunks(table)):
            if i == 1:
                time.sleep(0.5)  # the COPY statement now lasts longer than the timeout
            yield chunk

    monkeypatch.setattr(store, "COPY_CHUNK_ROWS", 1000)
    monkeypatch.setattr(store, "csv_chunks", slow_chunks)
    url = pg_database("slow")
    engine = make_engine(Settings(database_url=url, statement_timeout_ms=200))

    assert load(feed_result.frame, feed_result.meta(), engine) is True

    reader = make_engine(Settings(database_url=url))
    assert _state(reader) == (feed_result.report.dataset_version, len(feed_result.frame))
    engine.dispose()
    reader.dispose()


@pytest.mark.parametrize("query", [
    RadiusQuery(Point(1, 2), 10, Filters(frozenset({Amenity.WIFI}), frozenset({Amenity.COFFEE}))),
    NearestQuery(Point(1, 2), 3, 50.0, Filters(frozenset({Amenity.WIFI}), frozenset(),
                                                frozenset({"DE"}), "Berlin", 5)),
    PolygonQuery(bbox_area(0, 0, 1, 1), Filters(min_capacity=3), Point(0.5, 0.5)),
])
def test_statements_bind_exactly_the_parameters_they_use(query):
    from geosearch.backends.postgis import statement

    sql, params = statement(query)

    assert set(params) == set(re.findall(r"%\((\w+)\)s", sql))


@pytest.mark.parametrize("pooler", ["", "transaction"])
def test_the_statement_timeout_holds_directly_and_through_pgbouncer(postgis_feed, pgbouncer,
                                                                    pooler):
    from geosearch.backends.base import BackendUnavailable

    database = postgis_feed.settings.database_url.rsplit("/", 1)[1]
    url = pgbouncer(database) if pooler else postgis_feed.settings.database_url
    backend = PostgisBackend(Settings(database_url=url, database_pooler=pooler,
                                      statement_timeout_ms=300))
    try:
        assert backend.dataset_version() == postgis_feed.dataset_version()
        with pytest.raises(BackendUnavailable):
            backend.cluster.read("SELECT pg_sleep(2)", {})
        assert backend.dataset_version() == postgis_feed.dataset_version()  # and recovers
    finally:
        backend.close()
