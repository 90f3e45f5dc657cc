"""Shared fixtures: the feed through the pipeline, both backends, a throwaway PostGIS.

The PostGIS cluster is started by the suite itself (geosearch.testing.pgcluster) in a
temporary folder and removed at the end. A PostGIS test that cannot run fails; it is never
skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from geosearch.backends.memory import MemoryBackend
from geosearch.ingest.pipeline import IngestResult, dataset_version, run_pipeline
from geosearch.ingest.report import IngestReport
from geosearch.testing import pgcluster
from geosearch.testing.ports import free_port
from geosearch.testing.synthetic import synthetic_frame, text_frame

FEED_DIR = Path(__file__).resolve().parents[1] / "data" / "feed"


def pytest_report_header(config) -> str:
    """The versions of the geometry stack the results depend on."""
    import h3
    import pyproj
    import shapely

    return (f"geosearch: GEOS {shapely.geos_version_string}, PROJ {pyproj.proj_version_str}, "
            f"h3 {h3.__version__}, PostgreSQL binaries in {pgcluster.PG_BIN}")


# -- an honest run: every collected test must pass ----------------------------------------
# A test that was collected but did not pass (skipped, never run, deselected by a plugin)
# fails the run: fewer passed than collected is never a green suite.

_collected: set[str] = set()
_passed: set[str] = set()
_not_passed: dict[str, str] = {}


def pytest_collection_finish(session) -> None:
    """Without xdist: what this process collected."""
    _collected.update(item.nodeid for item in session.items)


def pytest_xdist_node_collection_finished(node, ids) -> None:
    """With xdist: what each worker collected (they collect the same items)."""
    _collected.update(ids)


def pytest_runtest_logreport(report) -> None:
    """Tally outcomes (on the controller with xdist, from the workers' reports)."""
    if report.when == "call" and report.passed:
        _passed.add(report.nodeid)
    elif report.skipped:
        _not_passed[report.nodeid] = "skipped"
    elif report.failed:
        _not_passed[report.nodeid] = f"failed in {report.when}"


def pytest_sessionfinish(session, exitstatus) -> None:
    """Fail the run when fewer tests passed than were collected."""
    if hasattr(session.config, "workerinput") or not _collected:
        return  # an xdist worker: the controller judges
    if session.config.getoption("collectonly") or session.config.getoption("setuponly"):
        return  # --collect-only, --setup-only, --setup-plan: no test was meant to run
    missing = sorted(_collected - _passed)
    if missing and exitstatus == 0:
        reasons = [f"  {n}: {_not_passed.get(n, 'never ran')}" for n in missing[:20]]
        session.config.get_terminal_writer().line(
            f"geosearch: {len(_passed)} passed of {len(_collected)} collected; every "
            "collected test must run and pass:\n" + "\n".join(reasons), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        session.config.get_terminal_writer().line(
            f"geosearch: {len(_passed)} passed of {len(_collected)} collected")


# -- markers: postgis from the fixtures a test uses ---------------------------------------
# Every PostGIS fixture of the suite stands on pg_cluster. A test parametrised over backend
# kinds asks for its backend by name at run time (``postgis_feed``, ``pgbouncer_synthetic``),
# out of sight of the collection: the kinds that name a PostGIS fixture mark it too.
POSTGIS_KINDS = frozenset({"postgis", "pgbouncer", "follower"})


def _uses_postgis(item: pytest.Item) -> bool:
    if "pg_cluster" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(
        isinstance(v, str) and v in POSTGIS_KINDS for v in callspec.params.values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``postgis`` every test that uses the session's PostGIS cluster. A test that
    starts a cluster of its own carries the marker itself."""
    for item in items:
        if _uses_postgis(item):
            item.add_marker(pytest.mark.postgis)


@pytest.fixture(autouse=True)
def _postgis_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that used the PostGIS cluster without the ``postgis`` marker: one that
    asked for a PostGIS fixture by a name of its own making, which the collection cannot
    see (it then needs ``@pytest.mark.postgis``)."""
    yield
    if "pg_cluster" in request.fixturenames and not request.node.get_closest_marker("postgis"):
        pytest.fail(f"{request.node.nodeid} uses PostGIS but is not marked postgis")


@pytest.fixture(scope="session")
def feed_result() -> IngestResult:
    """The committed feed through the whole pipeline."""
    return run_pipeline(FEED_DIR / "spaces.csv", progress=False)


def _generated(frame, feed: str) -> IngestResult:
    """Generated spaces as if ingested: every row loaded."""
    report = IngestReport(feed=feed, input_rows=len(frame), loaded=len(frame))
    report.dataset_version = dataset_version(frame)
    return IngestResult(frame, report)


@pytest.fixture(scope="session")
def synthetic_result() -> IngestResult:
    """Synthetic spaces at the antimeridian, near the poles and with exact ties."""
    return _generated(synthetic_frame(), "synthetic")


@pytest.fixture(scope="session")
def text_result() -> IngestResult:
    """Spaces whose names mix accents, scripts, digits and punctuation (text search)."""
    return _generated(text_frame(), "text")


@contextmanager
def _throwaway_cluster(prefix: str) -> Iterator[tuple[Path, int, str]]:
    """A PostgreSQL 15 + PostGIS cluster in a new temporary folder: its data directory,
    port and URL; stopped and removed after."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    datadir = base / "data"
    for attempt in range(5):  # a free port can be taken again before the server binds it
        port = free_port()
        try:
            url = pgcluster.start(datadir, port)
            break
        except subprocess.CalledProcessError:
            if attempt == 4:
                raise
    try:
        yield datadir, port, url
    finally:
        pgcluster.stop(datadir)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory):
    """A PostgreSQL 15 + PostGIS cluster for this test session (one per xdist worker)."""
    with _throwaway_cluster("geosearch-pg-") as (datadir, port, _):
        yield datadir, port


@pytest.fixture
def own_cluster():
    """A cluster of the test's own (data directory, port, URL), so that stopping or
    restarting it disturbs no other test."""
    with _throwaway_cluster("geosearch-pg-own-") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_database(pg_cluster):
    """Factory: a fresh, empty PostGIS database on the session cluster."""
    _, port = pg_cluster
    counter = iter(range(1_000_000))

    def make(prefix: str = "t") -> str:
        return pgcluster.create_database(port, f"{prefix}_{next(counter)}")

    return make


def _postgis_backend(result: IngestResult, url: str):
    from geosearch.backends.postgis import PostgisBackend
    from geosearch.database import make_engine
    from geosearch.settings import Settings
    from geosearch.store import load

    engine = make_engine(Settings(database_url=url))
    load(result.frame, result.meta(), engine)
    engine.dispose()
    return PostgisBackend(Settings(database_url=url))


def _backends(dataset: str):
    """The session's memory and PostGIS backends over ``<dataset>_result``."""

    @pytest.fixture(scope="session", name=f"memory_{dataset}")
    def memory(request) -> MemoryBackend:
        result = request.getfixturevalue(f"{dataset}_result")
        return MemoryBackend.from_frame(result.frame, result.report.dataset_version)

    @pytest.fixture(scope="session", name=f"postgis_{dataset}")
    def postgis(request, pg_database):
        backend = _postgis_backend(request.getfixturevalue(f"{dataset}_result"),
                                   pg_database(dataset))
        yield backend
        backend.close()

    return memory, postgis


memory_feed, postgis_feed = _backends("feed")
memory_synthetic, postgis_synthetic = _backends("synthetic")
memory_text, postgis_text = _backends("text")


@pytest.fixture(scope="session")
def pgbouncer(pg_cluster):
    """Factory: the URL of a database of the session cluster through a real pgbouncer in
    transaction pooling mode."""
    _, pg_port = pg_cluster
    workdir = Path(tempfile.mkdtemp(prefix="geosearch-pgbouncer-"))
    workdir.chmod(0o755)
    port = free_port()
    pgcluster.start_pgbouncer(workdir, pg_port, port)
    yield lambda database: f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    pgcluster.stop_pgbouncer(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


def _through_pgbouncer(backend, pgbouncer):
    from geosearch.backends.postgis import PostgisBackend
    from geosearch.settings import Settings

    database = backend.settings.database_url.rsplit("/", 1)[1]
    return PostgisBackend(Settings(database_url=pgbouncer(database),
                                   database_pooler="transaction"))


@pytest.fixture(scope="session")
def pgbouncer_feed(postgis_feed, pgbouncer):
    backend = _through_pgbouncer(postgis_feed, pgbouncer)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def pgbouncer_synthetic(postgis_synthetic, pgbouncer):
    backend = _through_pgbouncer(postgis_synthetic, pgbouncer)
    yield backend
    backend.close()


def _split_follower(backend):
    """The memory follower of a PostGIS backend's database, a third of its spaces as if
    written since its base: hidden in the base and held by the overlay (every answer is
    then the merge of the two); it does not follow the feed (nothing is written)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from geosearch.backends.follower import FollowerBackend
    from geosearch.backends.postgis import PostgisBackend

    follower = FollowerBackend(PostgisBackend(backend.settings))
    follower.tracker.close()
    layers = follower.tracker.layers
    ids = layers.base.ids[::3].tolist()
    rows = layers.base_rows.filter(pc.is_in(layers.base_rows["id"], value_set=pa.array(ids)))
    follower.tracker.layers = layers.applied(ids, rows, layers.seq)
    return follower


@pytest.fixture(scope="session")
def follower_feed(postgis_feed):
    backend = _split_follower(postgis_feed)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def follower_synthetic(postgis_synthetic):
    backend = _split_follower(postgis_synthetic)
    yield backend
    backend.close()


@pytest.fixture(params=["memory", "postgis"])
def backend_kind(request) -> str:
    """Parametrises a test over both backends."""
    return request.param


@pytest.fixture
def feed_backend(request, backend_kind):
    """The committed feed in the backend of ``backend_kind``."""
    return request.getfixturevalue(f"{backend_kind}_feed")


@pytest.fixture
def synthetic_backend(request, backend_kind):
    """The synthetic spaces in the backend of ``backend_kind``."""
    return request.getfixturevalue(f"{backend_kind}_synthetic")


@pytest.fixture(scope="session")
def app(memory_feed):
    """The Flask app over the feed in memory."""
    from geosearch.api import create_app
    from geosearch.settings import Settings

    return create_app(Settings(), backend=memory_feed)


@pytest.fixture
def client(app):
    return app.test_client()
