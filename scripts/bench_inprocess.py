"""The bench's in-process parts (scripts/bench.py): each backend beside its floor, text
search beside the same query without ``q``, and vector tiles at every zoom."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import psycopg
from bench_report import Report, ratio_row
from bench_workload import NEAREST, RADIUS, Case, p50_p99, timed_pair
from floors import KdFloor

from geosearch.backends.memory import MemoryBackend
from geosearch.backends.postgis import PostgisBackend, statement
from geosearch.model import Amenity, Filters, NearestQuery, Point, RadiusQuery, TileQuery
from geosearch.text import query_terms
from geosearch.tiles import world_xy


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


def bench_inprocess(name: str, memory: MemoryBackend, postgis: PostgisBackend,
                    work: dict[str, list[Case]], report: Report) -> None:
    """Backends in-process beside their floors."""
    floor = KdFloor(memory.ids, memory.lat, memory.lon, memory.mask)
    with psycopg.connect(postgis.dsn, autocommit=True) as conn:
        for kind, cases in work.items():
            pairs = [("PostGIS backend / raw SQL (psycopg, prepared)",
                      [backend_call(postgis, c.query) for c in cases],
                      raw_sql_calls(conn, cases))]
            if kind in (RADIUS, NEAREST):
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
