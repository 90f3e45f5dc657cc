"""The ingest report: every row loaded or rejected with a reason, every repair listed."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from geosearch.ingest.records import Record, Rejected


@dataclass
class IngestReport:
    """What an ingest run did. ``input_rows == loaded + rejected`` always holds."""

    feed: str
    input_rows: int = 0
    loaded: int = 0
    rejected: int = 0
    repaired: int = 0
    geocoded: int = 0
    active: int = 0
    dataset_version: str | None = None
    unchanged: bool | None = None
    rejects: list[dict] = field(default_factory=list)
    repairs: list[dict] = field(default_factory=list)

    def reject(self, record: Record, verdict: Rejected) -> None:
        """Count a rejected row."""
        self.rejected += 1
        self.rejects.append({"row": record.row, "id": record.raw.get("id") or None,
                             "code": verdict.code, "reason": verdict.reason})

    def load(self, record: Record) -> None:
        """Count a loaded row and its repairs."""
        self.loaded += 1
        self.active += record.status == "active"
        self.geocoded += record.geocode_precision != "input"
        if record.repairs:
            self.repaired += 1
            self.repairs.append({"row": record.row, "id": record.id,
                                 "repairs": [asdict(r) for r in record.repairs]})

    def summary(self) -> dict:
        """Counts by reject code and by repair code."""
        return {
            "rejects_by_code": dict(Counter(r["code"] for r in self.rejects).most_common()),
            "repairs_by_code": dict(Counter(
                r["code"] for row in self.repairs for r in row["repairs"]).most_common()),
        }

    def to_dict(self) -> dict:
        """The report as JSON-ready data, with the summary."""
        return {**asdict(self), **self.summary()}

    def write(self, path: str | Path) -> None:
        """Write the report as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
