"""A real Prometheus (Debian's, started here on loopback) scrapes a real ``geosearch serve``
with two gevent workers over PostGIS: the sum it computes counts every request once,
whichever worker served it, and goes on counting, without going back or doubling a
series, after a worker is killed -9 and replaced (geosearch.observe.multiproc)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import faults
import pytest
from prometheus_client.parser import text_string_to_metric_families

from geosearch.database import make_engine
from geosearch.settings import Settings
from geosearch.snapshot import write_snapshot
from geosearch.store import load
from geosearch.testing.ports import free_port

RADIUS = "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=2000&limit=5"
RADIUS_COUNT = 'http_server_request_duration_seconds_count{route="/v1/spaces/radius"}'
POOL_SIZE = 5  # the default GEOSEARCH_POOL_SIZE: each worker's pool of the primary


class Prometheus:
    """Debian's Prometheus on 127.0.0.1, scraping ``target`` every second."""

    def __init__(self, work: Path, target: int) -> None:
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        assert Path(binary).exists(), "Prometheus is missing: make prometheus installs it"
        config = work / "prometheus.yml"  # YAML reads JSON
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "geosearch", "scrape_interval": "1s",
                                "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}]}))
        self.port = free_port()
        self._log = (work / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while faults.get(self.port, "/-/ready")[0] != 200:
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                (work / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)

    def query(self, promql: str) -> list[dict]:
        """The result vector of an instant query."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?{urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The one value of a query (None when it has none)."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        self._log.close()


@pytest.fixture(scope="module")
def served(pg_database, feed_result, tmp_path_factory):
    url = pg_database("scraped")
    engine = make_engine(Settings(database_url=url))
    load(feed_result.frame, feed_result.meta(), engine)
    engine.dispose()
    work = tmp_path_factory.mktemp("metrics")
    (work / "tmp").mkdir()
    # the server's own metrics directory (none is given): a new one in its TMPDIR
    env = {"GEOSEARCH_CLIENT_BUDGET": "0", "TMPDIR": str(work / "tmp")}
    server = faults.Server(faults.serve_args("--database", url, "--workers", "2"), env=env,
                           log=work / "server.log", wait_s=120)
    try:
        [directory] = (work / "tmp").glob("geosearch-metrics-*")
        prometheus = Prometheus(work, server.port)
    except BaseException:
        server.stop()
        raise
    yield server, prometheus, directory
    prometheus.stop()
    server.stop()


def send(port: int, count: int, start: int) -> None:
    """``count`` radius searches, eight at a time on connections of their own (so that
    both workers take some)."""
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda n: faults.get(port, f"{RADIUS}&n={n}")[0],
                                 range(start, start + count)))
    assert statuses == [200] * count


def settle(prometheus: Prometheus, promql: str, expected: float, seen: list[float]) -> None:
    """Wait until the query's value (appended to ``seen`` at each look) is ``expected``."""
    deadline = time.monotonic() + 30
    while True:
        value = prometheus.value(promql)
        if value is not None:
            seen.append(value)
        if value == expected:
            return
        assert time.monotonic() < deadline, f"{promql}: {seen[-5:]}, expected {expected}"
        time.sleep(0.5)


def workers_with(directory: Path, kind: str, pids: list[int]) -> list[int]:
    """The workers of ``pids`` that have a metrics file of ``kind`` (they recorded one)."""
    return [pid for pid in pids if (directory / f"{kind}_{pid}.db").exists()]


def test_prometheus_counts_every_request_once_across_workers_and_restarts(served):
    server, prometheus, directory = served
    total, seen = 0, []
    deadline = time.monotonic() + 30
    while len(workers_with(directory, "histogram", server.workers())) < 2:
        send(server.port, 40, total)  # until both workers have served some
        total += 40
        assert time.monotonic() < deadline, "one worker took every connection"
    settle(prometheus, f"sum({RADIUS_COUNT})", total, seen)
    assert prometheus.value('up{job="geosearch"}') == 1.0

    victim = workers_with(directory, "histogram", server.workers())[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim in server.workers() or len(server.workers()) < 2:
        assert time.monotonic() < deadline, "the worker was not replaced"
        time.sleep(0.2)
    seen.append(prometheus.value(f"sum({RADIUS_COUNT})") or 0.0)
    while len(workers_with(directory, "gauge_livesum", server.workers())) < 2:
        send(server.port, 40, total)  # until the new worker has opened its pool too
        total += 40
        assert time.monotonic() < deadline + 30, "the new worker took no connection"
    settle(prometheus, f"sum({RADIUS_COUNT})", total, seen)

    assert seen == sorted(seen), f"the count went backwards: {seen}"
    assert prometheus.value(f"resets({RADIUS_COUNT}[5m])") == 0
    assert prometheus.value(f"count({RADIUS_COUNT})") == 1  # one series, not one per pid
    assert prometheus.value('up{job="geosearch"}') == 1.0
    # the dead worker's live gauges are gone: the pools' capacity is the live workers'
    assert not (directory / f"gauge_livesum_{victim}.db").exists()
    settle(prometheus, 'sum(geosearch_db_pool_connections_max{node="primary"})',
           2 * POOL_SIZE, [])


def test_a_scrape_has_no_series_twice_and_shows_the_nodes(served):
    server, _, _ = served
    status, body = faults.get(server.port, "/metrics")
    assert status == 200
    samples = Counter((s.name, tuple(sorted(s.labels.items())))
                      for family in text_string_to_metric_families(body.decode())
                      for s in family.samples)
    assert [sample for sample, times in samples.items() if times > 1] == []
    assert samples[("geosearch_node_up", (("node", "primary"), ("role", "primary")))] == 1
    assert ("geosearch_dataset_active_spaces", ()) in samples


def test_plain_gunicorn_with_the_config_sums_its_workers_and_logs_json(feed_result, tmp_path):
    snap = write_snapshot(feed_result.frame, tmp_path / "s.parquet", feed_result.meta())
    port = free_port()
    env = {**os.environ, "GEOSEARCH_BIND": f"127.0.0.1:{port}", "GEOSEARCH_SNAPSHOT": str(snap),
           "TMPDIR": str(tmp_path)}
    with (tmp_path / "stderr").open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c",
                                 "python:geosearch.gunicorn_conf", "geosearch.api:create_app()"],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            while faults.get(port, "/readyz")[0] != 200:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.3)
            [directory] = tmp_path.glob("geosearch-metrics-*")
            total = 0
            while len(workers_with(directory, "histogram", faults.children(proc.pid))) < 2:
                send(port, 24, total)  # until both workers have served some
                total += 24
                assert time.monotonic() < deadline, "one worker took every connection"
            scrapes = {faults.get(port, "/metrics")[1] for _ in range(6)}
        finally:
            proc.terminate()
            proc.wait(15)
    counts = {s.value for body in scrapes for family in text_string_to_metric_families(
        body.decode()) for s in family.samples if s.name == "http_server_request_duration_"
        "seconds_count" and s.labels["route"] == "/v1/spaces/radius"}
    assert counts == {float(total)}
    lines = [json.loads(line) for line in (tmp_path / "stderr").read_text().splitlines()]
    assert sum(line["logger"] == "geosearch.access" for line in lines) >= total + 6
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    assert list(tmp_path.glob("geosearch-metrics-*")) == []  # removed at exit


def test_the_metrics_directory_is_emptied_when_a_server_starts(tmp_path):
    stale = tmp_path / "counter_12345.db"
    stale.write_bytes(b"left by a server that ran before")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", "from geosearch.observe import multiproc; "
                    "multiproc.prepare()"], env=env, check=True)
    assert list(tmp_path.iterdir()) == []
