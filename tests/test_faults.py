"""Faults under load, in a short form (scripts/faults.py; `make faults` runs it longer):
readers, then writers (scripts/fault_writes.py)."""

from __future__ import annotations

import fault_writes
import faults
import pytest


# Never beside the million-space map test (the same group runs on one xdist worker): that
# test keeps a core busy for a minute building its dataset, and this one judges response
# times against a 2 s statement timeout.
@pytest.mark.postgis
@pytest.mark.xdist_group("cpu-heavy")
def test_faults_under_load_give_no_unexpected_errors_and_right_answers():
    report = faults.run(clients=3, pause_s=2.0)

    print(report.summary())
    assert not report.violations, report.summary()
    assert report.counts[200] > 100
    assert [w.fault for w in report.windows] == [
        "kill -9 a worker", "restart PostgreSQL", "stop PostgreSQL for 5 s",
        "swap the dataset (second ingest)", "kill an ingest mid-COPY"]


@pytest.mark.postgis
@pytest.mark.xdist_group("cpu-heavy")
def test_writes_under_faults_are_kept_whole_and_in_the_feed():
    report = fault_writes.run_writes(clients=3, pause_s=2.0)

    print(report.summary())
    assert not report.violations, report.summary()
    assert report.counts[200] + report.counts[201] > 20
    assert [w.fault for w in report.windows] == [
        "kill -9 a worker", "restart PostgreSQL (immediate)"]
