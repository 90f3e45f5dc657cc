"""The package as users get it: the wheel is built from the source, installed into a fresh
virtual environment with its declared dependencies, and used from a folder that is not the
repository: ingest, serve, a query, the map page, the light client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import faults
import pytest

ROOT = Path(__file__).resolve().parents[1]
FEED = ROOT / "data" / "feed" / "spaces.csv"
MAX_WHEEL_BYTES = 5_000_000
# What a user's clone has and the wheel must carry: reference data, map files, migrations.
PACKAGED = ("geosearch/data/reference/NOTICE", "geosearch/data/reference/market_cities.csv",
            "geosearch/data/reference/countries_ne10m.geojson",
            "geosearch/static/map.js", "geosearch/static/vendor/leaflet/leaflet.js",
            "geosearch/static/vendor/markercluster/leaflet.markercluster.js",
            "geosearch/migrations/env.py", "geosearch/py.typed")
SERVER_STACK = ("flask", "geopandas", "pandas", "scipy", "h3", "shapely", "pyproj",
                "sqlalchemy", "psycopg")
RADIUS = "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=5000&limit=500"

pytestmark = pytest.mark.xdist_group("wheel")


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source tree (no build files left in it)."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "var", "test-output", "build", "*.egg-info",
        ".pgdata", ".pgcluster", "__pycache__", ".ruff_cache", ".hypothesis"))
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                 work / "dist", source, cwd=work)
    assert built.returncode == 0, built.stderr
    (found,) = (work / "dist").glob("geosearch-*.whl")
    return found


@pytest.fixture(scope="module")
def elsewhere(wheel, tmp_path_factory) -> tuple[Path, Path]:
    """(venv bin folder, a working folder outside the repository holding a feed copy)."""
    home = tmp_path_factory.mktemp("elsewhere")
    made = _run(sys.executable, "-m", "venv", home / "venv", cwd=home)
    assert made.returncode == 0, made.stderr
    bin_dir = home / "venv" / "bin"
    installed = _run(bin_dir / "pip", "install", "--quiet", wheel, cwd=home)
    assert installed.returncode == 0, installed.stderr
    work = home / "work"
    work.mkdir()
    shutil.copy(FEED, work / "feed.csv")
    return bin_dir, work


def test_the_wheel_carries_its_data_and_stays_small(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [p for p in PACKAGED if p not in names] == []
    assert any(n.startswith("geosearch/migrations/versions/") for n in names)
    assert not any(n.startswith(("tests/", "scripts/", "data/")) for n in names)
    assert wheel.stat().st_size < MAX_WHEEL_BYTES


def test_the_client_imports_no_server_stack(elsewhere):
    bin_dir, work = elsewhere
    probe = ("import json, sys, geosearch.client; "
             f"print(json.dumps(sorted(m for m in {list(SERVER_STACK)!r} if m in sys.modules)))")
    ran = _run(bin_dir / "python", "-c", probe, cwd=work)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == []


def _check_service(port: int, expected: list[str]) -> None:
    status, body = faults.get(port, RADIUS)
    assert status == 200
    assert [f["id"] for f in json.loads(body)["features"]] == expected
    status, page = faults.get(port, "/")
    assert status == 200 and b"map.js" in page
    for path in ("/static/vendor/leaflet/leaflet.js", "/static/map.js",
                 "/static/vendor/markercluster/leaflet.markercluster.js"):
        assert faults.get(port, path)[0] == 200, path
    status, outlines = faults.get(port, "/map/countries.geojson")
    assert status == 200 and len(json.loads(outlines)["features"]) > 200


def _expected(memory_feed) -> list[str]:
    from geosearch.model import Filters, Point, RadiusQuery

    page = memory_feed.radius(RadiusQuery(Point(52.52, 13.405), 5000.0, Filters(), 500))
    assert page.hits, "the query must find spaces to compare"
    return [h.space.id for h in page.hits]


def test_installed_wheel_ingests_to_a_snapshot_and_serves_it(elsewhere, memory_feed):
    bin_dir, work = elsewhere
    ingested = _run(bin_dir / "geosearch", "ingest", "feed.csv", "--snapshot", "s.parquet",
                    cwd=work)
    assert ingested.returncode == 0, ingested.stderr
    server = faults.Server([str(bin_dir / "geosearch"), "serve", "--snapshot", "s.parquet"],
                           cwd=work, wait_s=120)
    try:
        _check_service(server.port, _expected(memory_feed))
    finally:
        server.stop()


def test_installed_wheel_migrates_and_loads_postgis_and_serves_it(elsewhere, memory_feed,
                                                                   pg_database):
    bin_dir, work = elsewhere
    url = pg_database("wheel")
    ingested = _run(bin_dir / "geosearch", "ingest", "feed.csv", "--database", url, cwd=work)
    assert ingested.returncode == 0, ingested.stderr
    server = faults.Server([str(bin_dir / "geosearch"), "serve", "--database", url],
                           cwd=work, wait_s=120)
    try:
        _check_service(server.port, _expected(memory_feed))
    finally:
        server.stop()
