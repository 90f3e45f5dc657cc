"""What the bench measures, and how much of it (scripts/bench.py).

The synthetic 1M spaces, the workload of each query kind (a query object and its HTTP
path, centred on random spaces), how many rounds of what length each part runs (the
report's headings say so too), percentiles, and the interleaved timing of ours beside a
floor."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from shapely.geometry import Polygon

from geosearch.geo import bbox_area
from geosearch.ingest.pipeline import IngestResult, dataset_version
from geosearch.ingest.report import IngestReport
from geosearch.model import Amenity, Filters, NearestQuery, Point, PolygonQuery, RadiusQuery
from geosearch.testing.synthetic import city_scatter

WIFI, PARKING = Filters(frozenset({Amenity.WIFI})), Filters(frozenset({Amenity.PARKING}))
RADIUS, NEAREST = "radius 2 km + wifi", "nearest 10 + parking"  # kinds of the workload
# Pairs of wrk rounds (one per app) over HTTP; the median of their ratios is reported.
HTTP_PAIRS = 6
# wrk rounds of one app in the worker-class comparison; the best is kept.
HTTP_ROUNDS = 5
# Fairness: the hostile client's connections, the length (s) of each of the victim's two
# wrk rounds (without, then with the attacker), and the targets: the victim's p50 at most
# so many times its p50 alone, and no anonymous request taking a worker longer than so
# many seconds on an idle server.
ATTACK_CONNECTIONS = 4
FAIRNESS_ROUND_S = 8
VICTIM_RATE = 50  # the fairness victim's requests per second (a map user's pace)
FAIRNESS_TARGET = 3.0
HEAVIEST_TARGET_S = 0.3
# Writes (scripts/bench_writes.py): the targets of one write over HTTP (p50, p99 ms) and of
# its figure at 1M over its figure at 5k; the concurrent writers and the readers (wrk
# connections) beside them, the pairs of reader rounds (alone, beside the writers), and
# the targets there; the writes a second while a follower of the feed times how soon it
# sees each one, and the target of that.
WRITE_TARGET_MS = (5.0, 25.0)
WRITE_SCALE_TARGET = 1.5
WRITERS, READERS, WRITE_PAIRS = 4, 2, 3
WRITES_TARGET = 300
READERS_KEEP_TARGET = 0.8
FOLLOWED_RATE = 50
VISIBLE_TARGET_MS = 50.0


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
    out: dict[str, list[Case]] = {RADIUS: [], NEAREST: [],
                                  "viewport bbox": [], "city polygon (10 km)": []}
    for r in rows.itertuples():
        o = Point(r.lat, r.lon)
        out[RADIUS].append(Case(
            RadiusQuery(o, 2000, WIFI),
            f"/v1/spaces/radius?lat={r.lat}&lon={r.lon}&radius_m=2000&amenities=wifi"))
        out[NEAREST].append(Case(
            NearestQuery(o, 10, None, PARKING),
            f"/v1/spaces/nearest?lat={r.lat}&lon={r.lon}&k=10&amenities=parking"))
        w, s, e, n = r.lon - 0.06, r.lat - 0.035, r.lon + 0.06, r.lat + 0.035
        out["viewport bbox"].append(Case(PolygonQuery(bbox_area(w, s, e, n)),
                                         f"/v1/spaces/bbox?bbox={w},{s},{e},{n}"))
        ring = [(r.lon + 0.12 * np.cos(a) * rng.uniform(0.7, 1.0),
                 r.lat + 0.09 * np.sin(a) * rng.uniform(0.7, 1.0))
                for a in np.linspace(0, 2 * np.pi, 24, endpoint=False)]
        out["city polygon (10 km)"].append(Case(PolygonQuery(Polygon([*ring, ring[0]])), ""))
    return out


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
