"""Score the ingestion pipeline against the feed's defect manifest and truth.

For each planted defect type: how many the pipeline caught (recall) and how many of the
rows it marked with that code really had it (precision); then how far every loaded valid
space lies from its true position. Prints a Markdown table (kept in docs/ingest.md).
Run: python scripts/score_ingest.py [data/feed]
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

from geosearch.geo import geodesic_m
from geosearch.ingest.pipeline import run_pipeline


def pipeline_marks(report) -> dict[str, set[str]]:
    """The ids the pipeline marked, by the code it used (rejects and repairs)."""
    marks: dict[str, set[str]] = defaultdict(set)
    for r in report.rejects:
        marks[r["code"]].add(r["id"])
    for row in report.repairs:
        for repair in row["repairs"]:
            marks[repair["code"]].add(row["id"])
    return marks


def score(feed_dir: Path) -> str:
    result = run_pipeline(feed_dir / "spaces.csv", progress=False)
    defects = pd.read_csv(feed_dir / "defects.csv", keep_default_na=False)
    truth = pd.read_csv(feed_dir / "truth.csv", keep_default_na=False, dtype=str)
    marks = pipeline_marks(result.report)
    lines = ["| defect | planted | caught | recall | marked | precision |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, group in defects.groupby("defect", sort=True):
        planted = set(group["id"])
        marked = marks.get(kind, set())
        caught = planted & marked
        precision = len(caught) / len(marked) if marked else float("nan")
        lines.append(f"| {kind} | {len(planted)} | {len(caught)} | "
                     f"{len(caught) / len(planted):.1%} | {len(marked)} | {precision:.1%} |")
    loaded = result.frame.set_index("id")
    valid = truth[truth["valid"] == "true"].set_index("id")
    lost = sorted(set(valid.index) - set(loaded.index))
    wrongly_loaded = sorted(set(loaded.index) - set(valid.index))
    both = valid.index.intersection(loaded.index)
    err = geodesic_m(valid.loc[both, "lat"].astype(float), valid.loc[both, "lon"].astype(float),
                     loaded.loc[both, "lat"], loaded.loc[both, "lon"])
    geocoded = (valid.loc[both, "geocoded"] == "true").to_numpy()
    report = result.report
    geo_km = pd.Series(err[geocoded]) / 1000
    lines += [
        "",
        f"- rows {report.input_rows}: loaded {report.loaded}, rejected {report.rejected}, "
        f"repaired {report.repaired}",
        f"- valid spaces lost: {len(lost)} {lost[:5]}; invalid rows loaded: "
        f"{len(wrongly_loaded)} {wrongly_loaded[:5]}",
        f"- position error of spaces with coordinates: max {err[~geocoded].max():.3f} m",
        f"- position error of geocoded spaces (city centre): median {geo_km.median():.1f} km,"
        f" max {geo_km.max():.1f} km",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(score(Path(sys.argv[1] if len(sys.argv) > 1 else "data/feed")))
