"""`make bench`: geosearch beside its floors, measured side by side in one run.

For the committed feed (~5k spaces) and a synthetic 1,000,000 spaces around the same
cities, in parts (``--only PART`` runs some of them):

- ``inprocess``: **memory in-process** against :class:`floors.KdFloor` (a plain k-d
  tree, exact WGS84 distances, the bitmask, a sort): radius 2 km + wifi, nearest 10 +
  parking; **PostGIS in-process** (``PostgisBackend``) against the same SQL sent raw
  through psycopg with prepared statements: radius, nearest, polygon, bbox;
- ``tiles``: vector tiles at zooms 0..16 on both backends, with their sizes;
- ``text``: radius and nearest with ``q`` beside the same query without it;
- ``http``: **over HTTP** with wrk (2 connections): ``geosearch serve`` on the snapshot
  against a minimal Flask app under the same gunicorn settings returning the same bytes;
  ``geosearch serve`` on PostGIS against a minimal Flask app running the raw SQL
  (scripts/floor_app.py). The two apps run in pairs of rounds, one right after the other,
  each pair in the other order than the one before (floor first, then ours first): the
  ratio is the median of the pairs' ratios, so that the machine's drift between pairs
  (a third, here, over minutes) cancels out instead of landing on one app's best round.
  gunicorn's two workers share one listening socket, so a round's two connections land
  on both workers or, at random, on one (which then serves at one worker's speed): a
  round whose connections were not served by both workers (told by the workers' CPU) is
  run again, for both apps alike. And the resident memory of each worker (RSS and PSS:
  pages shared after the fork count once);
- ``fairness``: a hostile client sending the heaviest anonymous requests beside a victim
  asking for the nearest spaces, on the same servers (scripts/bench_fairness.py);
- ``writes``: on PostGIS, after the parts above (writes change the data they read): one
  PATCH and one create over HTTP, how soon a follower of the change feed reads a change,
  and writers beside readers (scripts/bench_writes.py);
- loads: the snapshot into memory, the bulk load into PostGIS (swap included);
- with ``--servers``: gunicorn sync, gthread and gevent workers on the radius endpoint;
- with ``--ingest``: ``geosearch ingest`` of a 1,000,000-row feed (scripts/scale_feed.py).

Writes its tables, with the machine it ran on, into docs/benchmarks.md (``--out``) between
two marker lines, and keeps the text around them (:func:`bench_report.with_tables`).

    python scripts/bench.py [--quick] [--servers] [--ingest] [--only PART]...
    python scripts/bench.py --only writes --quick --out /tmp/writes.md  # the writes at 5k
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_fairness import bench_fairness
from bench_http import LOAD_GENERATOR, bench_http, bench_servers, serving
from bench_inprocess import bench_inprocess, bench_text, bench_tiles
from bench_report import Report, write_report
from bench_workload import synthetic_million, workload
from bench_writes import WriteBench

from geosearch.backends.memory import MemoryBackend
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import make_engine
from geosearch.ingest.pipeline import IngestResult, run_pipeline
from geosearch.settings import Settings
from geosearch.snapshot import write_snapshot
from geosearch.store import load
from geosearch.testing import pgcluster
from geosearch.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
IN_PROCESS = ("inprocess", "tiles", "text")  # the parts that query both backends in-process
SERVED = ("http", "fairness")  # the parts that query `geosearch serve`
WRITES = "writes"  # the part that writes (PostGIS only), last on each dataset
LABELS = {"memory": "memory", "postgis": "PostGIS"}  # --backend: the services' labels


def bench_ingest(workdir: Path, rows: int) -> list[str]:
    """``geosearch ingest`` of a ``rows``-row feed made by scripts/scale_feed.py."""
    feed = workdir / "feed-big.csv"
    subprocess.run([sys.executable, "scripts/scale_feed.py", "--rows", str(rows), "--out",
                    str(feed)], cwd=ROOT, check=True, capture_output=True)
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "geosearch.cli", "ingest", str(feed),
                           "--snapshot", str(workdir / "ingested")], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    return [f"- `geosearch ingest` of a {rows:,}-row CSV feed (scripts/scale_feed.py, dirty "
            f"rows included) to a snapshot: {time.perf_counter() - t:.0f} s; "
            f"{done.stdout.strip()}"]


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``parts`` and ``backends`` as sets (all of each by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=3, help="per wrk round")
    parser.add_argument("--quick", action="store_true", help="5k only, short rounds")
    parser.add_argument("--servers", action="store_true", help="compare worker classes")
    parser.add_argument("--ingest", action="store_true", help="time a 1M-row ingest")
    parser.add_argument("--only", action="append", choices=(*IN_PROCESS, *SERVED, WRITES),
                        dest="parts", help="run only this part (repeat for more; default all)")
    parser.add_argument("--backend", action="append", choices=tuple(LABELS),
                        dest="backends", help="serve only this backend in the http and "
                        "fairness parts (repeat for more; default both)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 2
    args.parts = set(args.parts or (*IN_PROCESS, *SERVED, WRITES))
    args.backends = {LABELS[b] for b in args.backends or LABELS}
    if shutil.which("wrk") is None:
        parser.error("wrk is missing: apt-get install wrk (make bench does)")
    return args


def load_dataset(name: str, result: IngestResult, workdir: Path, pg_port: int | None,
                 report: Report) -> tuple[Path, MemoryBackend, str | None]:
    """The dataset as a snapshot, loaded into memory, and into a new PostGIS database of
    the cluster on ``pg_port`` when given (its URL); the loads' times into the notes."""
    snapshot = write_snapshot(result.frame, workdir / f"{name}.parquet", result.meta())
    t = time.perf_counter()
    memory = MemoryBackend.from_snapshot(snapshot)
    note = f"- {name}: snapshot load into memory {time.perf_counter() - t:.1f} s"
    url = None
    if pg_port is not None:
        url = pgcluster.create_database(pg_port, f"bench_{name.lower()}")
        engine = make_engine(Settings(database_url=url))
        t = time.perf_counter()
        load(result.frame, result.meta(), engine)
        note += f"; PostGIS bulk load (COPY, indexes, swap) {time.perf_counter() - t:.1f} s"
        engine.dispose()
    report.notes.append(note)
    return snapshot, memory, url


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    served = args.parts.intersection(SERVED)
    workdir = Path(tempfile.mkdtemp(prefix="geosearch-bench-"))
    workdir.chmod(0o755)
    pg_port = None  # a PostgreSQL cluster only for the parts that query PostGIS
    if (args.parts.intersection(IN_PROCESS) or WRITES in args.parts
            or (served and "PostGIS" in args.backends)):
        pg_port = free_port()
        pgcluster.start(workdir / "pg", pg_port)
    report = Report([], [], [], [], [], [])
    servers: list[str] = []
    writes = WriteBench(args.queries, args.seconds)
    try:
        feed = run_pipeline(ROOT / "data" / "feed" / "spaces.csv", progress=False)
        datasets: list[tuple[str, IngestResult | None]] = [("5k", feed)]
        if not args.quick:
            datasets.append(("1M", None))
        for name, result in datasets:
            if result is None:
                t = time.perf_counter()
                result = synthetic_million(args.big)
                report.notes.append(f"- generating {args.big:,} synthetic spaces: "
                                    f"{time.perf_counter() - t:.0f} s")
            snapshot, memory, url = load_dataset(name, result, workdir, pg_port, report)
            work = workload(result.frame, args.queries)
            if args.parts.intersection(IN_PROCESS):
                postgis = PostgisBackend(Settings(database_url=url))
                if "inprocess" in args.parts:
                    bench_inprocess(name, memory, postgis, work, report)
                if "tiles" in args.parts:
                    bench_tiles(name, memory, postgis, result.frame, args.queries, report)
                if "text" in args.parts:
                    bench_text(name, memory, postgis, result.frame, args.queries, report)
                postgis.close()
            sources: dict[str, tuple[str, ...]] = {}
            if served and "memory" in args.backends:
                sources["memory"] = ("--snapshot", str(snapshot))
            if served and url is not None and "PostGIS" in args.backends:
                sources["PostGIS"] = ("--database", url)
            if "http" in args.parts:
                with serving(sources, LOAD_GENERATOR) as services:
                    bench_http(name, services, url, work, workdir, args.seconds, report)
            if "fairness" in args.parts:
                with serving(sources) as services:
                    bench_fairness(name, services, result.frame, work, workdir, report)
            if WRITES in args.parts and url is not None:
                writes.run(name, url, result.frame, work, workdir, report)
            if name == "5k" and args.servers:
                servers = bench_servers(snapshot, work, workdir, args.seconds)
            print(f"{name} done", file=sys.stderr)
        if args.ingest:
            report.notes += bench_ingest(workdir, args.big)
    finally:
        if pg_port is not None:
            pgcluster.stop(workdir / "pg")
        shutil.rmtree(workdir, ignore_errors=True)
    write_report(args, report, servers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
