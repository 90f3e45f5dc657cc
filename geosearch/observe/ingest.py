"""An ingest run's counts as a node-exporter textfile (``geosearch ingest --metrics-file
PATH``): the file is written whole, then renamed over the previous one, so the
textfile collector never reads half of it.

>>> from geosearch.ingest.report import IngestReport
>>> report = IngestReport("feed.csv", input_rows=3, loaded=2, rejected=1)
>>> report.rejects.append({"code": "no_position"})
>>> frame = pd.DataFrame({"geocode_precision": ["input", "city"]})
>>> text = ingest_text(report, frame, 1.5, now=0.0)
>>> print(text.split("\\n# HELP")[0])
# HELP geosearch_ingest_rows_read Rows read from the feed by the last run
# TYPE geosearch_ingest_rows_read gauge
geosearch_ingest_rows_read 3.0
>>> 'geosearch_ingest_rows_rejected{reason="no_position"} 1.0' in text
True
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric

from geosearch.ingest.report import IngestReport


class _IngestCounts:
    """The counts of one run, as metric families (no process-wide registry: an ingest
    under a server's multiprocess directory leaves no file there)."""

    def __init__(self, report: IngestReport, frame: pd.DataFrame, seconds: float,
                 now: float) -> None:
        self.report, self.frame, self.seconds, self.now = report, frame, seconds, now

    def collect(self) -> Iterator[Metric]:
        report, summary = self.report, self.report.summary()
        for name, doc, value in (
                ("rows_read", "Rows read from the feed", report.input_rows),
                ("rows_loaded", "Rows loaded as spaces", report.loaded),
                ("duration_seconds", "How long the run took", self.seconds),
                ("last_success_timestamp_seconds", "When the run ended (Unix time)",
                 self.now)):
            yield GaugeMetricFamily(f"geosearch_ingest_{name}", f"{doc} by the last run",
                                    value=value)
        precisions = Counter(p for p in self.frame["geocode_precision"] if p != "input")
        for name, doc, label, counts in (
                ("rows_rejected", "Rows rejected", "reason", summary["rejects_by_code"]),
                ("repairs", "Repairs made to loaded rows", "kind", summary["repairs_by_code"]),
                ("rows_geocoded", "Rows placed by the geocoder", "precision", precisions)):
            family = GaugeMetricFamily(f"geosearch_ingest_{name}",
                                       f"{doc} by the last run, per {label}", labels=[label])
            for key, count in sorted(counts.items()):
                family.add_metric([str(key)], count)
            yield family


def _registry(report: IngestReport, frame: pd.DataFrame, seconds: float, now: float
              ) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_IngestCounts(report, frame, seconds, now))
    return registry


def ingest_text(report: IngestReport, frame: pd.DataFrame, seconds: float,
                now: float | None = None) -> str:
    """The run's counts in the text format (``now``: the run's end, default now)."""
    registry = _registry(report, frame, seconds, time.time() if now is None else now)
    return generate_latest(registry).decode()


def write_ingest_metrics(path: Path, report: IngestReport, frame: pd.DataFrame,
                         seconds: float) -> None:
    """Write the run's counts to ``path`` (atomically: a temporary file renamed)."""
    write_to_textfile(str(path), _registry(report, frame, seconds, time.time()))
