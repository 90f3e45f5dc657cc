"""`make bench`: geosearch beside its floors, measured side by side in one run.

For the committed feed (~5k spaces) and a synthetic 1,000,000 spaces around the same
cities:

- **memory in-process** against :class:`floors.KdFloor` (a plain k-d tree, exact WGS84
  distances, the bitmask, a sort): radius 2 km + wifi, nearest 10 + parking;
- **PostGIS in-process** (``PostgisBackend``) against the same SQL sent raw through
  psycopg with prepared statements: radius, nearest, polygon, bbox;
- **over HTTP** with wrk (2 connections): ``geosearch serve`` on the snapshot against a
  minimal Flask app under the same gunicorn settings returning the same bytes;
  ``geosearch serve`` on PostGIS against a minimal Flask app running the raw SQL
  (scripts/floor_app.py). The two apps run in pairs of rounds, one right after the other,
  each pair in the other order than the one before (floor first, then ours first): the
  ratio is the median of the pairs' ratios, so that the machine's drift between pairs
  (a third, here, over minutes) cancels out instead of landing on one app's best round.
  gunicorn's two workers share one listening socket, so a round's two connections land
  on both workers or, at random, on one (which then serves at one worker's speed): a
  round whose connections were not served by both workers (told by the workers' CPU) is
  run again, for both apps alike;
- the resident memory of each worker (RSS and PSS: pages shared after the fork count once);
- text search: radius and nearest with ``q`` beside the same query without it;
- vector tiles at zooms 0..16 on both backends, with their sizes;
- loads: the snapshot into memory, the bulk load into PostGIS (swap included);
- with ``--servers``: gunicorn sync, gthread and gevent workers on the radius endpoint;
- with ``--ingest``: ``geosearch ingest`` of a 1,000,000-row feed (scripts/scale_feed.py).

Writes its tables, with the machine it ran on, into docs/benchmarks.md (``--out``) between
two marker lines, and keeps the text around them (:func:`with_tables`).

    python scripts/bench.py [--quick] [--servers] [--ingest]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from faults import Server, serve_args
from floors import KdFloor

from geosearch.backends.memory import MemoryBackend
from geosearch.backends.postgis import PostgisBackend, statement
from geosearch.database import libpq_url as dsn
from geosearch.database import make_engine
from geosearch.geo import bbox_area
from geosearch.ingest.pipeline import IngestResult, dataset_version, run_pipeline
from geosearch.ingest.report import IngestReport
from geosearch.model import (
    Amenity,
    Filters,
    NearestQuery,
    Point,
    PolygonQuery,
    RadiusQuery,
    TileQuery,
)
from geosearch.settings import Settings
from geosearch.snapshot import write_snapshot
from geosearch.store import load
from geosearch.testing import pgcluster
from geosearch.testing.ports import free_port
from geosearch.testing.synthetic import city_scatter
from geosearch.text import query_terms
from geosearch.tiles import world_xy

ROOT = Path(__file__).resolve().parents[1]

AMENITIES = [a.value for a in Amenity]
WIFI, PARKING = Filters(frozenset({Amenity.WIFI})), Filters(frozenset({Amenity.PARKING}))
WRK_SCRIPT = ROOT / "scripts" / "wrk" / "paths.lua"
# Pairs of wrk rounds (one per app) over HTTP; the median of their ratios is reported.
HTTP_PAIRS = 6
# wrk rounds of one app in the worker-class comparison; the best is kept.
HTTP_ROUNDS = 5
# A round counts when each worker did at least this share of the workers' CPU in it (its
# two connections served by two workers); tries per round before the last one is kept.
BALANCED_SHARE = 0.25
ROUND_TRIES = 4


# -- data and workload ---------------------------------------------------------------------

def synthetic_million(n: int, seed: int = 1) -> IngestResult:
    """``n`` spaces scattered around the market cities (weighted by population)."""
    frame = city_scatter(n, seed, h3_cells=True)
    report = IngestReport(feed=f"synthetic {n}", input_rows=n, loaded=n)
    report.dataset_version = dataset_version(frame)
    return IngestResult(frame, report)


@dataclass
class Case:
    """One query: the query object and its HTTP path (GET)."""

    query: object
    path: str


def workload(frame: pd.DataFrame, count: int, seed: int = 2) -> dict[str, list[Case]]:
    """Queries of each kind, centred on random spaces."""
    rng = random.Random(seed)
    rows = frame.sample(count, random_state=seed)
    out: dict[str, list[Case]] = {"radius 2 km + wifi": [], "nearest 10 + parking": [],
                                  "viewport bbox": [], "city polygon (10 km)": []}
    for r in rows.itertuples():
        o = Point(r.lat, r.lon)
        out["radius 2 km + wifi"].append(Case(
            RadiusQuery(o, 2000, WIFI),
            f"/v1/spaces/radius?lat={r.lat}&lon={r.lon}&radius_m=2000&amenities=wifi"))
        out["nearest 10 + parking"].append(Case(
            NearestQuery(o, 10, None, PARKING),
            f"/v1/spaces/nearest?lat={r.lat}&lon={r.lon}&k=10&amenities=parking"))
        w, s, e, n = r.lon - 0.06, r.lat - 0.035, r.lon + 0.06, r.lat + 0.035
        out["viewport bbox"].append(Case(PolygonQuery(bbox_area(w, s, e, n)),
                                         f"/v1/spaces/bbox?bbox={w},{s},{e},{n}"))
        from shapely.geometry import Polygon

        ring = [(r.lon + 0.12 * np.cos(a) * rng.uniform(0.7, 1.0),
                 r.lat + 0.09 * np.sin(a) * rng.uniform(0.7, 1.0))
                for a in np.linspace(0, 2 * np.pi, 24, endpoint=False)]
        out["city polygon (10 km)"].append(Case(PolygonQuery(Polygon([*ring, ring[0]])), ""))
    return out


# -- timing --------------------------------------------------------------------------------

def p50_p99(samples: list[float]) -> tuple[float, float]:
    """Median and 99th percentile, in milliseconds."""
    ms = sorted(x * 1000 for x in samples)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]


def timed_pair(ours: list[Callable[[], object]], floor: list[Callable[[], object]],
               rounds: int = 3) -> tuple[list[float], list[float]]:
    """Each call's duration, best of ``rounds`` passes after a warm-up pass, ours and the
    floor's interleaved query by query, each first in turn (so that drift in the machine
    and warm caches favour neither)."""
    for call in (*ours[:20], *floor[:20]):
        call()
    best = {"ours": [float("inf")] * len(ours), "floor": [float("inf")] * len(floor)}
    for n in range(rounds):
        for i, (a, b) in enumerate(zip(ours, floor, strict=True)):
            pair = (("ours", a), ("floor", b))
            for name, call in pair if (n + i) % 2 == 0 else pair[::-1]:
                t = time.perf_counter()
                call()
                best[name][i] = min(best[name][i], time.perf_counter() - t)
    return best["ours"], best["floor"]


def backend_call(backend, query) -> Callable[[], object]:
    """The backend method that answers ``query``."""
    method = {"RadiusQuery": backend.radius, "NearestQuery": backend.nearest,
              "PolygonQuery": backend.polygon}[type(query).__name__]
    return lambda: method(query)


def floor_call(floor: KdFloor, query) -> Callable[[], object]:
    """The k-d tree floor's equivalent of ``query``."""
    o = query.origin
    if isinstance(query, RadiusQuery):
        return lambda: floor.radius(o.lat, o.lon, query.radius_m, Amenity.WIFI.bit,
                                    query.limit)
    return lambda: floor.nearest(o.lat, o.lon, query.k, Amenity.PARKING.bit)


def raw_sql_calls(conn: psycopg.Connection, cases: list[Case]) -> list[Callable[[], object]]:
    """The backend's own SQL for each query, sent raw with a prepared statement."""
    return [lambda s=s: conn.execute(s[0], s[1], prepare=True).fetchall()
            for s in (statement(c.query) for c in cases)]


# -- HTTP ----------------------------------------------------------------------------------

class Service(Server):
    """A server process (scripts/faults.py), with the memory of its workers."""

    def memory_mb(self) -> tuple[float, float]:
        """Mean RSS and PSS of the workers, in MiB."""
        rss, pss = [], []
        for pid in self.workers():
            fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup")
                                     .read_text(), re.M))
            rss.append(int(fields["Rss"]) / 1024)
            pss.append(int(fields["Pss"]) / 1024)
        return statistics.mean(rss), statistics.mean(pss)


@dataclass
class WrkResult:
    """Requests per second and latency percentiles (ms) of one wrk run."""

    rps: float
    p50: float
    p99: float


def wrk(port: int, paths: Path, seconds: int) -> WrkResult:
    """wrk with 2 connections on one thread, cycling through ``paths``."""
    out = subprocess.run(["wrk", "-t1", "-c2", f"-d{seconds}s", "--latency", "-s",
                          str(WRK_SCRIPT), f"http://127.0.0.1:{port}"], capture_output=True,
                         text=True, env={**os.environ, "WRK_PATHS": str(paths)}, check=True)

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out.stdout).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    if "Non-2xx" in out.stdout:
        raise RuntimeError(f"errors under wrk: {out.stdout}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    return WrkResult(rps, latency("50"), latency("99"))


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def balanced_round(service: Service, paths: Path, seconds: int) -> WrkResult:
    """A wrk round in which both of the service's workers served (each did at least
    ``BALANCED_SHARE`` of their CPU); after ``ROUND_TRIES`` rounds, the last one."""
    workers = service.workers()
    for _ in range(ROUND_TRIES):
        before = [cpu_seconds(pid) for pid in workers]
        result = wrk(service.port, paths, seconds)
        used = [cpu_seconds(pid) - b for pid, b in zip(workers, before, strict=True)]
        if min(used) >= BALANCED_SHARE * sum(used):
            break
    return result


@dataclass
class Paired:
    """Median req/s and latencies of each app over the pairs, and the pairs' ratios."""

    ours: WrkResult
    floor: WrkResult
    ratios: list[float]

    def ratio_cell(self) -> str:
        """The median ratio, with the lowest and highest pair's."""
        return (f"{statistics.median(self.ratios):.2f}x "
                f"({min(self.ratios):.2f}..{max(self.ratios):.2f})")


def side_by_side(ours: Service, floor: Service, paths: Path, seconds: int,
                 pairs: int = HTTP_PAIRS) -> Paired:
    """Pairs of balanced wrk rounds, one per app back to back, in alternating order."""
    results: dict[str, list[WrkResult]] = {"ours": [], "floor": []}
    for i in range(pairs):
        order = [("floor", floor), ("ours", ours)]
        for name, service in order if i % 2 == 0 else order[::-1]:
            results[name].append(balanced_round(service, paths, seconds))

    def median(runs: list[WrkResult]) -> WrkResult:
        return WrkResult(*(statistics.median(getattr(r, f) for r in runs)
                           for f in ("rps", "p50", "p99")))

    return Paired(median(results["ours"]), median(results["floor"]),
                  [o.rps / f.rps for o, f in zip(results["ours"], results["floor"],
                                                 strict=True)])


def record_responses(port: int, paths: list[str], out: Path) -> None:
    """The bytes geosearch returns for each path, for the floor app to return."""
    import http.client

    table = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path in paths:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status}")
        table[path] = [resp.headers.get_content_type(), body.decode()]
    out.write_text(json.dumps(table))


def record_sql(cases: list[Case], out: Path) -> None:
    """Each path's raw SQL and parameters, for the floor app to run."""
    table = {}
    for case in cases:
        sql, params = statement(case.query)
        table[case.path] = [sql, {k: {"hex": v.hex()} if isinstance(v, bytes) else v
                                  for k, v in params.items()}]
    out.write_text(json.dumps(table))


# -- the report ----------------------------------------------------------------------------

@dataclass
class Report:
    """Tables of the run, in Markdown."""

    inproc: list[str]
    http: list[str]
    memory: list[str]
    notes: list[str]
    tiles: list[str]
    text: list[str]


def ratio_row(*cells: object) -> str:
    """A Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def bench_inprocess(name: str, memory: MemoryBackend, postgis: PostgisBackend,
                    work: dict[str, list[Case]], report: Report) -> None:
    """Backends in-process beside their floors."""
    floor = KdFloor(memory.ids, memory.lat, memory.lon, memory.mask)
    with psycopg.connect(postgis.dsn, autocommit=True) as conn:
        for kind, cases in work.items():
            pairs = [("PostGIS backend / raw SQL (psycopg, prepared)",
                      [backend_call(postgis, c.query) for c in cases],
                      raw_sql_calls(conn, cases))]
            if kind in ("radius 2 km + wifi", "nearest 10 + parking"):
                pairs.insert(0, ("memory backend / k-d tree floor",
                                 [backend_call(memory, c.query) for c in cases],
                                 [floor_call(floor, c.query) for c in cases]))
            for label, ours_calls, floor_calls in pairs:
                ours, base = (p50_p99(t)[0] for t in timed_pair(ours_calls, floor_calls))
                report.inproc.append(ratio_row(name, kind, label, f"{ours:.3f}", f"{base:.3f}",
                                               f"{ours / base:.2f}x"))


def bench_text(name: str, memory: MemoryBackend, postgis: PostgisBackend,
               frame: pd.DataFrame, count: int, report: Report) -> None:
    """Radius and nearest with ``q`` beside the same query without it (target < 2x):
    ``q`` is the first four letters of a word of the name of a random space, and the
    query is centred on another random space (the same origins both ways)."""
    rng = random.Random(4)
    rows = frame.sample(count, random_state=4)
    names = frame["name"].sample(count, random_state=5).tolist()
    cases = []
    for r, title in zip(rows.itertuples(), names, strict=True):
        terms = query_terms(rng.choice(query_terms(title) or ("a",))[:4])
        origin = Point(r.lat, r.lon)
        cases.append((RadiusQuery(origin, 2000, Filters(text=terms)),
                      RadiusQuery(origin, 2000),
                      NearestQuery(origin, 10, None, Filters(text=terms)),
                      NearestQuery(origin, 10)))
    for label, backend in (("memory", memory), ("PostGIS", postgis)):
        for kind, with_q, without in (("radius 2 km", 0, 1), ("nearest 10", 2, 3)):
            ours, base = (p50_p99(t)[0] for t in timed_pair(
                [backend_call(backend, c[with_q]) for c in cases],
                [backend_call(backend, c[without]) for c in cases]))
            report.text.append(ratio_row(name, f"{kind} + q", label, f"{ours:.3f}",
                                         f"{base:.3f}", f"{ours / base:.2f}x"))


def bench_tiles(name: str, memory: MemoryBackend, postgis: PostgisBackend,
                frame: pd.DataFrame, count: int, report: Report) -> None:
    """Vector tiles at every zoom 0..16 around random spaces (the tiles a map of them
    asks for), both backends in turn, each tile timed once after a warm-up."""
    rows = frame.sample(count, random_state=3)
    x, y = world_xy(rows["lat"].to_numpy(float), rows["lon"].to_numpy(float))
    inside = ~np.isnan(x)
    x, y = x[inside], y[inside]
    for z in range(17):
        queries = [TileQuery(z, int(a * (1 << z)), int(b * (1 << z)))
                   for a, b in zip(x, y, strict=True)]
        times: dict[str, list[float]] = {"memory": [], "postgis": []}
        largest = 0
        for backend in (memory, postgis):
            for q in queries[:10]:
                backend.tile_mvt(q)
        for i, q in enumerate(queries):
            pair = (("memory", memory), ("postgis", postgis))
            for label, backend in pair if i % 2 == 0 else pair[::-1]:
                t = time.perf_counter()
                data, _ = backend.tile_mvt(q)
                times[label].append(time.perf_counter() - t)
                largest = max(largest, len(data))
        (m50, m99), (p50, p99) = p50_p99(times["memory"]), p50_p99(times["postgis"])
        report.tiles.append(ratio_row(name, z, f"{m50:.2f} / {m99:.2f}",
                                      f"{p50:.2f} / {p99:.2f}", f"{p50 / m50:.2f}x",
                                      f"{largest / 1024:.0f}"))


def bench_http(name: str, snapshot: Path, url: str, work: dict[str, list[Case]],
               workdir: Path, seconds: int, report: Report) -> None:
    """Both services over HTTP beside their minimal-Flask floors; worker memory."""
    memory_service = Service(serve_args("--snapshot", str(snapshot)), "/readyz")
    postgis_service = Service(serve_args("--database", url), "/readyz")
    rss, pss = memory_service.memory_mb()
    report.memory.append(ratio_row(name, "memory (snapshot)", f"{rss:.0f}", f"{pss:.0f}"))
    rss, pss = postgis_service.memory_mb()
    report.memory.append(ratio_row(name, "PostGIS", f"{rss:.0f}", f"{pss:.0f}"))
    try:
        for kind, cases in work.items():
            cases = [c for c in cases if c.path]
            if not cases:
                continue
            paths = workdir / "paths.txt"
            paths.write_text("".join(c.path + "\n" for c in cases))
            responses, sql = workdir / "responses.json", workdir / "sql.json"
            record_responses(memory_service.port, [c.path for c in cases], responses)
            record_sql(cases, sql)
            floors = {
                "memory": Service([sys.executable, "scripts/floor_app.py", "--responses",
                                   str(responses)], cases[0].path),
                "PostGIS": Service([sys.executable, "scripts/floor_app.py", "--sql", str(sql),
                                    "--dsn", dsn(url)], cases[0].path),
            }
            try:
                for label, ours in (("memory", memory_service), ("PostGIS", postgis_service)):
                    paired = side_by_side(ours, floors[label], paths, seconds)
                    mine, base = paired.ours, paired.floor
                    report.http.append(ratio_row(
                        name, kind, label, f"{mine.rps:.0f}", f"{mine.p50:.2f} / {mine.p99:.2f}",
                        f"{base.rps:.0f}", f"{base.p50:.2f} / {base.p99:.2f}",
                        paired.ratio_cell()))
            finally:
                for service in floors.values():
                    service.stop()
    finally:
        memory_service.stop()
        postgis_service.stop()


def bench_servers(snapshot: Path, work: dict[str, list[Case]], workdir: Path,
                  seconds: int) -> list[str]:
    """The radius endpoint under gunicorn's sync, gthread and gevent workers."""
    paths = workdir / "paths.txt"
    paths.write_text("".join(c.path + "\n" for c in work["radius 2 km + wifi"]))
    rows = []
    for worker in ("sync", "gthread", "gevent"):
        service = Service(serve_args("--snapshot", str(snapshot)), "/readyz",
                          env={"GEOSEARCH_WORKER_CLASS": worker})
        try:
            result = max((balanced_round(service, paths, seconds) for _ in range(HTTP_ROUNDS)),
                         key=lambda r: r.rps)
        finally:
            service.stop()
        rows.append(ratio_row(worker, f"{result.rps:.0f}", f"{result.p50:.2f}",
                              f"{result.p99:.2f}"))
    return rows


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


def machine() -> str:
    """The machine, for the report."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, PostgreSQL 15")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=3, help="per wrk round")
    parser.add_argument("--quick", action="store_true", help="5k only, short rounds")
    parser.add_argument("--servers", action="store_true", help="compare worker classes")
    parser.add_argument("--ingest", action="store_true", help="time a 1M-row ingest")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 2
    if shutil.which("wrk") is None:
        parser.error("wrk is missing: apt-get install wrk (make bench does)")
    workdir = Path(tempfile.mkdtemp(prefix="geosearch-bench-"))
    workdir.chmod(0o755)
    pg_port = free_port()
    pgcluster.start(workdir / "pg", pg_port)
    report = Report([], [], [], [], [], [])
    servers: list[str] = []
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
            snapshot = write_snapshot(result.frame, workdir / f"{name}.parquet", result.meta())
            t = time.perf_counter()
            memory = MemoryBackend.from_snapshot(snapshot)
            load_s = time.perf_counter() - t
            url = pgcluster.create_database(pg_port, f"bench_{name.lower()}")
            engine = make_engine(Settings(database_url=url))
            t = time.perf_counter()
            load(result.frame, result.meta(), engine)
            pg_s = time.perf_counter() - t
            engine.dispose()
            report.notes.append(f"- {name}: snapshot load into memory {load_s:.1f} s; PostGIS "
                                f"bulk load (COPY, indexes, swap) {pg_s:.1f} s")
            postgis = PostgisBackend(Settings(database_url=url))
            work = workload(result.frame, args.queries)
            bench_inprocess(name, memory, postgis, work, report)
            bench_tiles(name, memory, postgis, result.frame, args.queries, report)
            bench_text(name, memory, postgis, result.frame, args.queries, report)
            postgis.close()
            bench_http(name, snapshot, url, work, workdir, args.seconds, report)
            if name == "5k" and args.servers:
                servers = bench_servers(snapshot, work, workdir, args.seconds)
            print(f"{name} done", file=sys.stderr)
        if args.ingest:
            report.notes += bench_ingest(workdir, args.big)
    finally:
        pgcluster.stop(workdir / "pg")
        shutil.rmtree(workdir, ignore_errors=True)
    write_report(args, report, servers)
    return 0


# docs/benchmarks.md: a run rewrites the text between these two lines and keeps the rest (the
# title and the hand-written "How to read these tables" after the tables).
GENERATED_BEGIN = "<!-- make bench writes from here to the end line (scripts/bench.py) -->"
GENERATED_END = "<!-- end of what make bench writes: the text below is written by hand -->"


def report_tables(args: argparse.Namespace, report: Report, servers: list[str]) -> str:
    """The run's part of docs/benchmarks.md: the machine, the date and the tables."""
    text = [
        f"Measured by `make bench` (scripts/bench.py) on {machine()}, "
        f"{time.strftime('%Y-%m-%d')}.", "",
        "## In-process (p50 ms; " f"{args.queries} queries per kind, each centred on a random "
        "space, ours and the floor interleaved, best of 3 passes)", "",
        "| spaces | query | ours / floor | ours | floor | ratio |",
        "| --- | --- | --- | ---: | ---: | ---: |", *report.inproc, "",
        f"## Over HTTP (wrk, 1 thread, 2 connections; {HTTP_PAIRS} pairs of {args.seconds} s "
        "rounds, one per app, in alternating order)", "",
        "| spaces | query | backend | ours req/s | ours p50 / p99 ms | floor req/s | "
        "floor p50 / p99 ms | ratio |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |", *report.http, "",
        "## Text search (in-process, p50 ms, the same query with and without `q`)", "",
        "| spaces | query | backend | with q | without q | ratio |",
        "| --- | --- | --- | ---: | ---: | ---: |", *report.text, "",
        "## Vector tiles (in-process, ms; tiles around random spaces at each zoom, "
        "each timed once, the two backends in turn)", "",
        "| spaces | zoom | memory p50 / p99 | PostGIS p50 / p99 | PostGIS / memory p50 | "
        "largest tile KB |", "| --- | ---: | ---: | ---: | ---: | ---: |", *report.tiles, "",
        "## Memory per worker (MiB, 2 workers forked after the load)", "",
        "| spaces | backend | RSS | PSS (shared pages split between processes) |",
        "| --- | --- | ---: | ---: |", *report.memory, "",
    ]
    if servers:
        text += [f"## Worker classes (radius endpoint, 5k, wrk 2 connections, best of "
                 f"{HTTP_ROUNDS} rounds)", "",
                 "| gunicorn worker | req/s | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: |",
                 *servers, ""]
    text += ["## Loads", "", *report.notes]
    return "\n".join(text)


def with_tables(document: str | None, tables: str) -> str:
    """``document`` with the text between its two marker lines replaced by ``tables``, the
    rest as it was; with no document, a new one of the title and the tables. A document
    without the marker lines is refused: its text would be lost."""
    block = f"{GENERATED_BEGIN}\n\n{tables}\n\n{GENERATED_END}"
    if document is None:
        return f"# Benchmarks\n\n{block}\n"
    head, begin, rest = document.partition(GENERATED_BEGIN)
    _, end, tail = rest.partition(GENERATED_END)
    if not begin or not end:
        raise ValueError(f"no {GENERATED_BEGIN!r} line followed by {GENERATED_END!r}: "
                         "add them around the tables to be replaced")
    return head + block + tail


def write_report(args: argparse.Namespace, report: Report, servers: list[str]) -> None:
    """The run's tables into ``args.out`` (docs/benchmarks.md) between its marker lines,
    printed first so that a refused document loses no run."""
    tables = report_tables(args, report, servers)
    print(tables)
    document = args.out.read_text() if args.out.exists() else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(with_tables(document, tables))

if __name__ == "__main__":
    sys.exit(main())
