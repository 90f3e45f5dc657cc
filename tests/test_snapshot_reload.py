"""The embedded snapshot reloads (geosearch.backends.reloading): a snapshot replaced at its
path, as ``geosearch ingest --snapshot`` replaces it, is served without a restart, the old
one answering until the new one is loaded, and no request failing meanwhile."""

from __future__ import annotations

import http.client
import threading
import time

import faults
import pytest

from geosearch.api import create_app
from geosearch.backends import readscope
from geosearch.backends.reloading import ReloadingSnapshot
from geosearch.ingest.pipeline import IngestResult, dataset_version
from geosearch.ingest.report import IngestReport
from geosearch.settings import Settings
from geosearch.snapshot import write_snapshot

LIST = "/v1/spaces?limit=2"


def _subset(result: IngestResult, n: int) -> IngestResult:
    frame = result.frame.head(n).copy()
    report = IngestReport(feed=f"first {n}", input_rows=n, loaded=n)
    report.dataset_version = dataset_version(frame)
    return IngestResult(frame, report)


@pytest.fixture(scope="module")
def datasets(feed_result) -> tuple[IngestResult, IngestResult]:
    return _subset(feed_result, 400), _subset(feed_result, 300)


def _until(predicate, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_replaced_snapshot_is_served_and_a_request_keeps_the_one_it_began_with(
        datasets, tmp_path):
    old, new = datasets
    path = write_snapshot(old.frame, tmp_path / "spaces.parquet", old.meta())
    backend = ReloadingSnapshot(path)
    client = create_app(Settings(snapshot=path), backend).test_client()
    first = client.get(LIST)
    assert first.headers["X-Dataset-Version"] == old.report.dataset_version
    assert first.headers["X-Change-Seq"] == "0"
    cursor = first.get_json()["next"]

    write_snapshot(new.frame, path, new.meta())
    versions: set[str] = set()

    def answered_new() -> bool:
        response = client.get(LIST)
        assert response.status_code == 200
        versions.add(response.headers["X-Dataset-Version"])
        return response.headers["X-Dataset-Version"] == new.report.dataset_version

    _until(answered_new)
    assert versions <= {old.report.dataset_version, new.report.dataset_version}
    assert client.get(f"{LIST}&cursor={cursor}").status_code == 410  # the old dataset's
    assert client.get("/readyz").get_json()["dataset_version"] == new.report.dataset_version


def test_a_request_answers_from_the_snapshot_it_began_with(datasets, tmp_path):
    old, new = datasets
    path = write_snapshot(old.frame, tmp_path / "spaces.parquet", old.meta())
    backend = ReloadingSnapshot(path)
    with readscope.reading():  # a request's first read chooses the snapshot
        assert backend.dataset_version() == old.report.dataset_version
        write_snapshot(new.frame, path, new.meta())
        elsewhere: list[str] = []  # another thread: another request

        def swapped() -> bool:
            reader = threading.Thread(target=lambda: elsewhere.append(
                backend.dataset_version()))
            reader.start()
            reader.join()
            return elsewhere[-1] == new.report.dataset_version

        _until(swapped)
        assert backend.dataset_version() == old.report.dataset_version
        assert backend.data_stamp() == (old.report.dataset_version, 0)
    assert backend.dataset_version() == new.report.dataset_version


def test_a_file_that_is_not_a_snapshot_leaves_the_old_one_serving(datasets, tmp_path):
    old, new = datasets
    path = write_snapshot(old.frame, tmp_path / "spaces.parquet", old.meta())
    backend = ReloadingSnapshot(path)
    client = create_app(Settings(snapshot=path), backend).test_client()
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not a snapshot")
    broken.replace(path)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # tried and refused: the old one serves on
        response = client.get(LIST)
        assert response.status_code == 200
        assert response.headers["X-Dataset-Version"] == old.report.dataset_version
        time.sleep(0.1)
    write_snapshot(new.frame, path, new.meta())
    _until(lambda: client.get(LIST).headers["X-Dataset-Version"]
           == new.report.dataset_version)


def test_a_server_started_before_any_snapshot_serves_the_first_one_written(datasets,
                                                                           tmp_path):
    old, _ = datasets
    path = tmp_path / "spaces.parquet"
    client = create_app(Settings(snapshot=path), ReloadingSnapshot(path)).test_client()
    assert client.get(LIST).status_code == 503
    write_snapshot(old.frame, path, old.meta())
    _until(lambda: client.get(LIST).status_code == 200)


def _version(port: int) -> str | None:
    """The dataset version of one search over a new connection; None when it failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", LIST)
        response = conn.getresponse()
        response.read()
        return response.getheader("X-Dataset-Version") if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def test_geosearch_serve_reloads_a_replaced_snapshot_without_failing_a_request(datasets,
                                                                               tmp_path):
    old, new = datasets
    path = write_snapshot(old.frame, tmp_path / "snap" / "spaces.parquet", old.meta())
    server = faults.Server(faults.serve_args("--snapshot", str(path.parent), "--workers",
                                             "2"), wait_s=60)
    seen: list[str | None] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            seen.append(_version(server.port))

    clients = [threading.Thread(target=ask) for _ in range(3)]
    try:
        for thread in clients:
            thread.start()
        _until(lambda: len(seen) > 20)
        write_snapshot(new.frame, path.parent, new.meta())
        # both workers: the new version answers every one of a run of requests
        _until(lambda: len(seen) > 20 and set(seen[-20:]) == {new.report.dataset_version})
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
        server.stop()
    assert None not in seen
    assert set(seen) == {old.report.dataset_version, new.report.dataset_version}
