"""Latency benchmarks: p50/p99 per query kind, per backend, at 5,000 and 1,000,000 spaces.

For each dataset (the committed feed, and a synthetic 1,000,000 spaces around the same
cities) and each backend (memory, PostGIS), four query kinds are timed in-process and
over HTTP (gunicorn on 127.0.0.1, one keep-alive client): radius 2 km with one amenity,
nearest k=10 with a filter, a city-sized polygon, a map-viewport bbox. The raw SQL of each
PostGIS query, run straight through psycopg, is the floor. The coverage report of all
countries is timed too. Writes a Markdown table (``--out``), with the machine it ran on.

Run: python scripts/bench.py --out docs/benchmarks.md [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pgcluster  # noqa: E402

from geosearch.backends.memory import MemoryBackend  # noqa: E402
from geosearch.backends.postgis import PostgisBackend, statement  # noqa: E402
from geosearch.geo import WGS84, bbox_area  # noqa: E402
from geosearch.ingest.pipeline import IngestResult, dataset_version, run_pipeline  # noqa: E402
from geosearch.ingest.report import IngestReport  # noqa: E402
from geosearch.model import (  # noqa: E402
    Amenity,
    Filters,
    NearestQuery,
    Point,
    PolygonQuery,
    RadiusQuery,
)
from geosearch.reference import market_cities  # noqa: E402
from geosearch.settings import Settings  # noqa: E402
from geosearch.snapshot import write_snapshot  # noqa: E402
from geosearch.store import load, make_engine  # noqa: E402

AMENITIES = [a.value for a in Amenity]


def synthetic_million(n: int, seed: int = 1) -> IngestResult:
    """``n`` spaces scattered around the market cities (weighted by population)."""
    import h3

    rng = np.random.default_rng(seed)
    cities = market_cities()
    cities = cities[cities["population"] >= 50_000]
    weights = cities["population"].to_numpy(float)
    pick = rng.choice(len(cities), size=n, p=weights / weights.sum())
    c = cities.iloc[pick]
    dist = c["radius_m"].to_numpy() * np.sqrt(rng.random(n))
    lon, lat, _ = WGS84.fwd(c["longitude"].to_numpy(), c["latitude"].to_numpy(),
                            rng.uniform(0, 360, n), dist)
    lon = ((np.asarray(lon) + 180) % 360) - 180
    masks = rng.random((n, len(AMENITIES))) < np.linspace(0.9, 0.05, len(AMENITIES))
    amenities = [[AMENITIES[j] for j in np.nonzero(row)[0]] for row in masks]
    cells = {r: [h3.latlng_to_cell(a, b, r) for a, b in zip(lat, lon, strict=True)]
             for r in (7, 8, 9)}
    frame = pd.DataFrame({
        "id": [f"m{i:07d}" for i in range(n)], "name": "Bench space", "address": "1 Main St",
        "city": c["name"].to_numpy(), "postcode": None, "country": c["country_code"].to_numpy(),
        "lat": np.round(lat, 6), "lon": np.round(lon, 6), "amenities": amenities,
        "capacity": pd.array(rng.integers(5, 300, n), dtype="Int64"),
        "price_day": pd.array(np.round(rng.uniform(5, 80, n), 2), dtype="Float64"),
        "currency": "USD", "status": "active", "h3_r7": cells[7], "h3_r8": cells[8],
        "h3_r9": cells[9], "geocode_precision": "input", "feed_row": np.arange(1, n + 1),
    })
    frame = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                             crs="EPSG:4326")
    report = IngestReport(feed=f"synthetic {n}", input_rows=n, loaded=n)
    report.dataset_version = dataset_version(frame)
    return IngestResult(frame, report)


def workload(frame: pd.DataFrame, count: int, seed: int = 2) -> dict[str, list]:
    """Query objects and their HTTP equivalents, centred on random spaces."""
    rng = random.Random(seed)
    rows = frame.sample(count, random_state=seed)
    out: dict[str, list] = {"radius 2 km + wifi": [], "nearest k=10 + parking": [],
                            "city polygon (10 km)": [], "viewport bbox": []}
    for r in rows.itertuples():
        o = Point(r.lat, r.lon)
        out["radius 2 km + wifi"].append((
            RadiusQuery(o, 2000, Filters(frozenset({Amenity.WIFI}))),
            f"/v1/spaces/radius?lat={r.lat}&lon={r.lon}&radius_m=2000&amenities=wifi", None))
        out["nearest k=10 + parking"].append((
            NearestQuery(o, 10, None, Filters(frozenset({Amenity.PARKING}))),
            f"/v1/spaces/nearest?lat={r.lat}&lon={r.lon}&k=10&amenities=parking", None))
        ring = [(r.lon + 0.12 * np.cos(a) * rng.uniform(0.7, 1.0),
                 r.lat + 0.09 * np.sin(a) * rng.uniform(0.7, 1.0))
                for a in np.linspace(0, 2 * np.pi, 24, endpoint=False)]
        ring.append(ring[0])
        from shapely.geometry import Polygon

        poly = Polygon(ring)
        out["city polygon (10 km)"].append((
            PolygonQuery(poly), "/v1/spaces/polygon?limit=50",
            {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}))
        w, s, e, n = r.lon - 0.06, r.lat - 0.035, r.lon + 0.06, r.lat + 0.035
        out["viewport bbox"].append((
            PolygonQuery(bbox_area(w, s, e, n)), f"/v1/spaces/bbox?bbox={w},{s},{e},{n}", None))
    return out


def percentiles(samples: list[float]) -> str:
    ms = sorted(x * 1000 for x in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{statistics.median(ms):.2f} / {p99:.2f}"


def time_calls(calls) -> list[float]:
    samples = []
    for call in calls:
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    return samples


def run_backend(backend, queries) -> list[float]:
    method = {"RadiusQuery": backend.radius, "NearestQuery": backend.nearest,
              "PolygonQuery": backend.polygon}
    return time_calls([lambda q=q: method[type(q).__name__](q) for q, _, _ in queries])


def run_raw_sql(dsn: str, queries) -> list[float]:
    """The backend's own SQL, straight through psycopg (server-side binding)."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.psycopg.dialect()
    with psycopg.connect(dsn) as conn:
        prepared = []
        for q, _, _ in queries:
            sql, params = statement(q)
            compiled = text(sql).bindparams(**params).compile(dialect=dialect)
            prepared.append((str(compiled), compiled.params))
        return time_calls([lambda s=s, p=p: conn.execute(s, p).fetchall() for s, p in prepared])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_http(args: list[str], queries) -> list[float]:
    """Start ``geosearch serve`` (gunicorn, 2 workers) and time each request."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "geosearch.cli", "serve", *args,
                               "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/readyz")
                if conn.getresponse().read() and True:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        def call(url, body):
            if body is None:
                conn.request("GET", url)
            else:
                conn.request("POST", url, json.dumps(body),
                             {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, (url, response.status)

        return time_calls([lambda u=u, b=b: call(u, b) for _, u, b in queries])
    finally:
        server.terminate()
        server.wait(30)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, PostgreSQL 15")


def bench_dataset(name, result, workdir, dsn_base, count, rows):
    snap = workdir / f"{name}.parquet"
    t = time.perf_counter()
    write_snapshot(result.frame, snap, result.meta())
    memory = MemoryBackend.from_snapshot(snap)
    load_memory_s = time.perf_counter() - t
    url = pgcluster.create_database(dsn_base, f"bench_{name}")
    t = time.perf_counter()
    engine = make_engine(Settings(database_url=url))
    load(result, engine)
    load_pg_s = time.perf_counter() - t
    postgis = PostgisBackend(engine)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    for kind, queries in workload(result.frame, count).items():
        for q, _, _ in queries[:5]:  # warm caches and the pool
            run_backend(memory, [(q, None, None)])
            run_backend(postgis, [(q, None, None)])
        rows.append((name, kind, "memory, in-process", percentiles(run_backend(memory, queries))))
        rows.append((name, kind, "PostGIS backend, in-process",
                     percentiles(run_backend(postgis, queries))))
        rows.append((name, kind, "PostGIS raw SQL (psycopg)",
                     percentiles(run_raw_sql(dsn, queries))))
        rows.append((name, kind, "memory over HTTP",
                     percentiles(run_http(["--snapshot", str(snap)], queries))))
        rows.append((name, kind, "PostGIS over HTTP",
                     percentiles(run_http(["--database", url], queries))))
    postgis.close()
    return load_memory_s, load_pg_s


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--big", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="geosearch-bench-"))
    workdir.chmod(0o755)
    port = free_port()
    pgcluster.start(workdir / "pg", port)
    rows: list[tuple] = []
    notes = []
    try:
        feed = run_pipeline(ROOT / "data" / "feed" / "spaces.csv", progress=False)
        for name, result in (("5k", feed), ("1M", None)):
            if result is None:
                t = time.perf_counter()
                result = synthetic_million(args.big)
                notes.append(f"- generating {args.big:,} synthetic spaces: "
                             f"{time.perf_counter() - t:.0f} s")
            mem_s, pg_s = bench_dataset(name, result, workdir, port, args.queries, rows)
            notes.append(f"- {name}: snapshot write + MemoryBackend load {mem_s:.1f} s; "
                         f"PostGIS COPY load + indexes {pg_s:.1f} s")
            print(f"{name} done", file=sys.stderr)
        notes += coverage_timing(feed)
    finally:
        pgcluster.stop(workdir / "pg")
    table = ["| spaces | query | path | p50 / p99 ms |", "| --- | --- | --- | ---: |"]
    table += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join([
        "# Benchmarks", "",
        f"Measured by `make bench` (scripts/bench.py) on {machine()}, "
        f"{time.strftime('%Y-%m-%d')}. {args.queries} queries per kind, each centred on a "
        "random space; HTTP is one keep-alive client against `geosearch serve` (gunicorn, "
        "2 sync workers) on 127.0.0.1.", "", *table, "", *notes, ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


def coverage_timing(feed: IngestResult) -> list[str]:
    """Time the coverage report over every country, when that module exists."""
    try:
        from geosearch.reports.coverage import CoverageOptions, coverage_all
    except ImportError:
        return []
    memory = MemoryBackend.from_frame(feed.frame, "bench")
    t = time.perf_counter()
    coverage_all(memory.active_frame(), CoverageOptions())
    return [f"- coverage of all 40 countries (cities, H3 r8 cells, nearest distances): "
            f"{time.perf_counter() - t:.1f} s"]


if __name__ == "__main__":
    main()
