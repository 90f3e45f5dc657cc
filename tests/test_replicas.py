"""Streaming replicas, for real: a primary and two hot standbys made with pg_basebackup,
reads spread over the replicas, a replica stopped and started under load, an ingest on
the primary under load, and the primary away."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from geosearch.api import create_app
from geosearch.backends.base import StaleVersion
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import libpq_url as dsn
from geosearch.database import make_engine
from geosearch.ingest.pipeline import IngestResult, dataset_version
from geosearch.ingest.report import IngestReport
from geosearch.model import NearestQuery, Point, RadiusQuery
from geosearch.settings import Settings
from geosearch.store import load
from geosearch.testing import pgcluster
from geosearch.testing.ports import free_port

pytestmark = [pytest.mark.postgis, pytest.mark.xdist_group("replicas")]
ROOT = Path(__file__).resolve().parents[1]
BERLIN = Point(52.52, 13.405)


def _subset(result: IngestResult, n: int) -> IngestResult:
    frame = result.frame.head(n).copy()
    report = IngestReport(feed=f"first {n}", input_rows=n, loaded=n)
    report.dataset_version = dataset_version(frame)
    return IngestResult(frame, report)


def _versions(urls: list[str]) -> list[str | None]:
    out = []
    for url in urls:
        with psycopg.connect(dsn(url), autocommit=True) as conn:
            out.append(conn.execute("SELECT (SELECT version FROM dataset_state)").fetchone()[0])
    return out


def _wait(predicate, seconds: float) -> float:
    """Seconds until ``predicate()`` holds; fails after ``seconds``."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < seconds, "timed out"
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def cluster(feed_result):
    base = Path(tempfile.mkdtemp(prefix="geosearch-replicas-"))
    base.chmod(0o755)
    ports = [free_port() for _ in range(3)]
    urls = pgcluster.start_cluster(base, ports)
    engine = make_engine(Settings(database_url=urls[0]))
    load(feed_result.frame, feed_result.meta(), engine)
    engine.dispose()
    want = feed_result.report.dataset_version
    _wait(lambda: _versions(urls) == [want] * 3, 30)
    yield base, ports, urls
    pgcluster.stop_cluster(base)
    shutil.rmtree(base, ignore_errors=True)


def _backend(urls: list[str]) -> PostgisBackend:
    return PostgisBackend(Settings(database_url=urls[0], replica_urls=tuple(urls[1:])))


def _commits(urls: list[str]) -> list[int]:
    counts = []
    for url in urls:
        with psycopg.connect(dsn(url), autocommit=True) as conn:
            counts.append(conn.execute("SELECT xact_commit FROM pg_stat_database "
                                       "WHERE datname = current_database()").fetchone()[0])
    return counts


def test_reads_land_on_the_replicas_spread_across_them(cluster):
    _, _, urls = cluster
    backend = _backend(urls)
    before = _commits(urls)
    for _ in range(60):
        assert len(backend.nearest(NearestQuery(BERLIN, 5))) == 5
    backend.close()  # the pooled sessions end and flush their statistics
    time.sleep(1.0)
    primary, *replicas = (b - a for a, b in zip(before, _commits(urls), strict=True))
    assert all(r >= 25 for r in replicas), (primary, replicas)
    assert primary < 10, (primary, replicas)


def test_readyz_lists_every_node_with_role_version_and_lag(cluster, feed_result):
    _, _, urls = cluster
    backend = _backend(urls)
    body = create_app(Settings(), backend=backend).test_client().get("/readyz").get_json()
    backend.close()
    assert [n["role"] for n in body["nodes"]] == ["primary", "replica", "replica"]
    assert all(n["healthy"] and n["dataset_version"] == feed_result.report.dataset_version
               for n in body["nodes"])
    assert all(n["lag_bytes"] >= 0 and "lag_seconds" in n for n in body["nodes"][1:])


class _Load:
    """Threads asking the backend without pause; every exception is kept."""

    def __init__(self, backend: PostgisBackend, threads: int = 4) -> None:
        self.backend, self.errors, self.done = backend, [], 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.backend.nearest(NearestQuery(BERLIN, 5))
                self.done += 1
            except Exception as exc:
                self.errors.append(exc)

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def test_a_replica_stopped_under_load_fails_no_request_and_comes_back(cluster):
    base, ports, urls = cluster
    backend = _backend(urls)
    replica = backend.cluster.replicas[0]
    with _Load(backend) as load_:
        time.sleep(0.5)
        subprocess.run(pgcluster._as_owner([str(pgcluster.PG_BIN / "pg_ctl"), "-D",
                                            str(base / "replica1"), "-m", "immediate",
                                            "stop"]), check=True, capture_output=True)
        _wait(lambda: not replica.healthy, 10)
        served_while_down = load_.done
        time.sleep(1.0)
        assert load_.done > served_while_down  # the others answer meanwhile
        pgcluster.start_replica(base / "replica1", ports[1], ports[0], "replica1")
        back_in = _wait(lambda: replica.healthy, 5)
    backend.close()
    assert load_.errors == []
    assert back_in < 5


def test_an_ingest_under_load_reaches_every_node_and_no_walk_mixes_versions(cluster,
                                                                           feed_result):
    _, _, urls = cluster
    backend = _backend(urls)
    new = _subset(feed_result, 3000)
    walks, errors, stop = [], [], threading.Event()

    def walk() -> None:
        while not stop.is_set():
            versions, after, version = [], None, None
            try:
                while True:
                    page = backend.radius(RadiusQuery(BERLIN, 50_000, limit=3, after=after,
                                                      version=version))
                    versions.append(page.version)
                    if page.next_after is None:
                        break
                    after, version = page.next_after, page.version
                walks.append(versions)
            except StaleVersion:
                walks.append(["stale"])
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=walk) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        engine = make_engine(Settings(database_url=urls[0]))
        load(new.frame, new.meta(), engine)
        engine.dispose()
        took = _wait(lambda: _versions(urls) == [new.report.dataset_version] * 3, 10)
        _wait(lambda: all(n["dataset_version"] == new.report.dataset_version
                          for n in backend.nodes()), 10)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        backend.close()
    assert errors == []
    assert took < 10
    complete = [w for w in walks if w != ["stale"]]
    assert complete and all(len(set(w)) == 1 for w in complete)
    assert {w[0] for w in complete} >= {new.report.dataset_version}


def test_with_the_primary_away_reads_go_on_and_ingest_fails_clearly(cluster):
    base, ports, urls = cluster
    backend = _backend(urls)
    pgcluster.stop(base / "primary")
    try:
        hits = [backend.nearest(NearestQuery(BERLIN, 3)) for _ in range(10)]
        assert all(len(h) == 3 for h in hits)
        done = subprocess.run([sys.executable, "-m", "geosearch.cli", "ingest",
                               str(ROOT / "data" / "feed" / "spaces.csv"), "--database",
                               urls[0]], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ}, timeout=300)
        assert done.returncode == 1
        assert "the load failed" in done.stderr and "previous dataset is intact" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        pgcluster.start(base / "primary", ports[0])
        backend.close()
