"""The markers mean what they say: ``-m postgis`` selects the tests that use PostGIS, and
``-m "not postgis"`` leaves none of them. Read from pytest's own collection of the suite,
in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Every PostGIS fixture of the suite (pg_database, postgis_feed, pgbouncer...) stands on it.
CLUSTER = "pg_cluster"
# The backend kinds a test may be parametrised over that are served by PostGIS.
POSTGIS_KINDS = ("postgis", "pgbouncer")


def _pytest(*args: str) -> list[str]:
    """The lines pytest writes for ``args`` over tests/ (nothing is run)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args, "tests"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout.splitlines()


def _params(nodeid: str) -> list[str]:
    """The ids of a parametrised test's parameters (``t[feed-postgis]`` -> feed, postgis)."""
    return nodeid.partition("[")[2].rstrip("]").split("-")


def test_the_postgis_marker_selects_the_tests_that_use_postgis():
    marked = {line for line in _pytest("--collect-only", "-m", "postgis")
              if line.startswith("tests/")}
    # What the tests left out would set up: each fixture (with its parameter, if it has
    # one), and each test with every fixture it uses.
    plan = _pytest("--setup-plan", "-m", "not postgis")
    postgis_words = (CLUSTER, *(f"['{kind}']" for kind in POSTGIS_KINDS))

    assert [line for line in plan if any(w in line for w in postgis_words)] == []
    assert [n for n in marked if "memory" in _params(n)] == []
    contract = "tests/test_contract.py::test_radius_matches_oracle_across_pages"
    assert f"{contract}[feed-postgis]" in marked and f"{contract}[feed-pgbouncer]" in marked
    assert any(line.strip().startswith(f"{contract}[feed-memory] ") for line in plan)
