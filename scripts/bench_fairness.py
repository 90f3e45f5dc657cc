"""The bench's fairness (scripts/bench.py): one hostile client beside a victim.

The attacker sends the heaviest valid anonymous requests it can make, in turn, on
:data:`ATTACK_CONNECTIONS` keep-alive connections without pause; the victim (a map user:
nearest queries paced at :data:`VICTIM_RATE` a second on one connection) asks first
alone, then beside the attacker. The server's limits count per client address, so the
two are different clients: the attacker's sockets are bound to 127.0.0.2 (all of 127/8 is
loopback on Linux), the victim's to 127.0.0.1, and the server listens on 127.0.0.1. The
figure is the victim's p50 beside the attacker over its p50 alone; beside it, how many
of the attacker's requests were refused (429), and the heaviest request's own time on an
idle server. The requests
that find the largest coverage hexes and time each kind alone come from yet other
addresses (127.1.*.*, 127.2.*.*), one client each, so that no limit refuses them.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from string import ascii_uppercase
from urllib.parse import quote

import pandas as pd
from bench_http import Service, WrkResult
from bench_report import Report, ratio_row
from bench_workload import ATTACK_CONNECTIONS, FAIRNESS_ROUND_S, NEAREST, VICTIM_RATE, Case

from geosearch.api.cql import MAX_FILTER_OPERATORS
from geosearch.api.geojson import MAX_RINGS
from geosearch.model import MAX_K, MAX_LIMIT, MAX_VERTICES, Amenity
from geosearch.reports.coverage import (
    MAX_RES,
    MAX_WALK_M,
    MIN_POPULATION,
    MIN_RES,
    report_cities,
)
from geosearch.serving import WORKER_TIMEOUT_S
from geosearch.text import words

ATTACKER = "127.0.0.2"  # the hostile client's source address
VICTIM = "127.0.0.1"  # the other client's
FAR = (-48.88, -123.39)  # Point Nemo, the ocean's pole of inaccessibility: far from all
COST_RUNS = 3  # timed runs of each request alone (after one warm-up); the median counts
WARM_UP_S = 1.0  # the attacker's head start before the victim's round
TEXT_SAMPLE = 20_000  # spaces whose words choose the attacker's q
COMMON_WORDS = 40  # of which two make it


@dataclass(frozen=True)
class Heavy:
    """One kind of the attacker's requests: a GET, or a POST of a JSON body. A
    ``{walk_m}`` in the path takes a random distance, a new one each time, so that no
    cache answers."""

    kind: str
    path: str
    body: bytes | None = None

    def send(self, conn: http.client.HTTPConnection) -> int:
        """Send it and read the answer: its status, or 0 when the connection failed (it
        reopens on the next request)."""
        path = self.path.format(walk_m=f"{random.uniform(1, MAX_WALK_M):.3f}")
        headers = {} if self.body is None else {"Content-Type": "application/json"}
        try:
            conn.request("GET" if self.body is None else "POST", path, self.body, headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):  # reset, cut short, timed out
            conn.close()
            return 0
        return response.status


def largest_hexes(port: int) -> Heavy:
    """The coverage hexes of the most cells the server answers (it refuses too many with a
    400): at each resolution from the finest, the countries by the ground their report
    cities cover, each asked once by a client of its own; the first one answered 200."""
    cities = report_cities()
    ground = (cities["radius_m"] ** 2).groupby(cities["country_code"]).sum()
    for res in range(MAX_RES, MIN_RES - 1, -1):
        for i, country in enumerate(ground.sort_values(ascending=False).index):
            heavy = Heavy(f"coverage hexes, {country} at res {res}",
                          f"/v1/coverage/hexes?country={country}&res={res}"
                          f"&min_population={MIN_POPULATION}&walk_m={{walk_m}}")
            conn = connect(port, f"127.1.{res}.{i + 1}")
            status = heavy.send(conn)
            conn.close()
            if status == 200:
                return heavy
    raise RuntimeError("no coverage hexes answered")


def hardest_q(frame: pd.DataFrame) -> str:
    """Two of the :data:`COMMON_WORDS` commonest words of the spaces (name, address, city;
    in a sample) that no space has both of, the pair whose rarer word is the most common:
    each term matches many spaces, together none, so a nearest search finds no k."""
    rows = frame.sample(min(len(frame), TEXT_SAMPLE), random_state=6)
    having: dict[str, set[int]] = {}
    for i, texts in enumerate(zip(rows["name"], rows["address"].fillna(""),
                                  rows["city"].fillna(""), strict=True)):
        for word in set(words(" ".join(texts))):
            having.setdefault(word, set()).add(i)
    common = sorted(having, key=lambda w: len(having[w]), reverse=True)[:COMMON_WORDS]
    _, a, b = max((min(len(having[a]), len(having[b])), a, b)
                  for a, b in itertools.combinations(common, 2)
                  if having[a].isdisjoint(having[b]))
    return f"{a} {b}"


def ring(cx: float, cy: float, rx: float, ry: float, positions: int) -> list[list[float]]:
    """A closed ring of ``positions`` positions (the last one the first) on an ellipse."""
    points = [[round(cx + rx * math.cos(a), 5), round(cy + ry * math.sin(a), 5)]
              for a in (2 * math.pi * i / (positions - 1) for i in range(positions - 1))]
    return [*points, points[0]]


def world_of_rings() -> bytes:
    """A MultiPolygon at the body limits: :data:`MAX_RINGS` ellipses over a grid of the
    world, :data:`MAX_VERTICES` positions in all."""
    cols = 25
    rows = MAX_RINGS // cols
    width, height = 360 / cols, 170 / rows
    polygons = [[ring(-180 + width * (i + 0.5), -85 + height * (j + 0.5), 0.45 * width,
                      0.45 * height, MAX_VERTICES // MAX_RINGS)]
                for i in range(cols) for j in range(rows)]
    return json.dumps({"type": "MultiPolygon", "coordinates": polygons}).encode()


def operator_limit_filter(countries: list[str]) -> str:
    """CQL2 text at the operator limit: countries joined by OR, a capacity, amenities and
    the world's box, joined by AND (each comparison and each AND or OR counts)."""
    picked = countries[:(MAX_FILTER_OPERATORS - 3) // 2]
    amenities = ", ".join(f"'{a.value}'" for a in Amenity)
    return (f"({' OR '.join(f'country = {c!r}' for c in picked)}) AND capacity >= 1 AND "
            f"A_OVERLAPS(amenities, ({amenities})) AND "
            "S_INTERSECTS(geometry, BBOX(-180, -90, 180, 90))")


def heavy_requests(frame: pd.DataFrame, port: int) -> list[Heavy]:
    """The heaviest valid anonymous requests, one of each kind, on ``frame``'s spaces
    served on ``port``."""
    lat, lon = FAR
    countries = sorted(frame["country"].unique())  # and more codes, to reach the limit
    countries += ["".join(c) for c in itertools.product(ascii_uppercase, repeat=2)
                  if "".join(c) not in countries]
    return [
        largest_hexes(port),
        Heavy("polygon at the ring and vertex limits",
              f"/v1/spaces/polygon?limit={MAX_LIMIT}", world_of_rings()),
        Heavy("world list", f"/v1/spaces?limit={MAX_LIMIT}"),
        Heavy("nearest + q, far origin", f"/v1/spaces/nearest?lat={lat}&lon={lon}&k={MAX_K}"
              f"&q={quote(hardest_q(frame))}"),
        Heavy("CQL2 at the operator limit", f"/ogc/collections/spaces/items?limit={MAX_LIMIT}"
              f"&filter={quote(operator_limit_filter(countries))}"),
        Heavy("tile 0/0/0 (MVT)", "/v1/tiles/0/0/0.mvt"),
        Heavy("tile 0/0/0 (GeoJSON)", "/v1/tiles/0/0/0.json"),
        Heavy("world bbox", f"/v1/spaces/bbox?bbox=-180,-90,180,90&limit={MAX_LIMIT}"),
    ]


def connect(port: int, source: str) -> http.client.HTTPConnection:
    """A keep-alive connection to the server on 127.0.0.1 from the address ``source``."""
    return http.client.HTTPConnection("127.0.0.1", port, timeout=120,
                                      source_address=(source, 0))


def heaviest(port: int, heavies: list[Heavy]) -> tuple[float, str]:
    """The median time (s) of the costliest kind alone on the idle server, and its kind.
    Each kind is sent once to warm up, then :data:`COST_RUNS` times, each request from a
    client of its own (so that no limit of a client refuses it); a kind that is not
    answered 200 is an error of the bench."""
    costs = []
    for i, heavy in enumerate(heavies):
        times = []
        for n in range(1 + COST_RUNS):
            conn = connect(port, f"127.2.{i}.{n + 1}")
            t = time.perf_counter()
            status = heavy.send(conn)
            times.append(time.perf_counter() - t)
            conn.close()
            if status != 200:
                raise RuntimeError(f"{heavy.kind}: {status} on an idle server")
        costs.append((statistics.median(times[1:]), heavy.kind))
    return max(costs)


class Attacker:
    """:data:`ATTACK_CONNECTIONS` threads, each sending the heavy requests in turn on its
    own keep-alive connection from :data:`ATTACKER`, without pause, while in a ``with``;
    ``statuses`` counts the answers (0: the connection failed)."""

    def __init__(self, port: int, heavies: list[Heavy]) -> None:
        self.port = port
        self.heavies = heavies
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(ATTACK_CONNECTIONS)]
        self._counts: list[Counter[int]] = [Counter() for _ in self._threads]

    def __enter__(self) -> Attacker:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.statuses = sum(self._counts, Counter())

    def _run(self, i: int) -> None:
        conn = connect(self.port, ATTACKER)
        kinds = itertools.islice(itertools.cycle(self.heavies), i, None)  # each its own first
        while not self._stop.is_set():
            self._counts[i][next(kinds).send(conn)] += 1
        conn.close()


def attacked_round(port: int, heavies: list[Heavy], paths: list[str]
                   ) -> tuple[WrkResult, Counter[int]]:
    """The victim's round beside the attacker (after its head start), and the
    statuses the attacker got."""
    with Attacker(port, heavies) as attacker:
        time.sleep(WARM_UP_S)
        victim = victim_round(port, paths)
    return victim, attacker.statuses


def victim_round(port: int, paths: list[str]) -> WrkResult:
    """The victim: a map user's nearest queries at :data:`VICTIM_RATE` a second (paced,
    the way a person on a map asks, far inside its own budget), on one keep-alive
    connection from :data:`VICTIM`; each answer waited for as long as a worker may
    take. Every answer must be a 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WORKER_TIMEOUT_S,
                                      source_address=(VICTIM, 0))
    latencies = []
    started = time.perf_counter()
    for n, path in enumerate(itertools.cycle(paths)):
        due = started + n / VICTIM_RATE
        if due > started + FAIRNESS_ROUND_S:
            break
        time.sleep(max(0.0, due - time.perf_counter()))
        t = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        latencies.append((time.perf_counter() - t) * 1000)
        if response.status != 200:
            raise RuntimeError(f"the victim got {response.status} for {path}")
    conn.close()
    cuts = statistics.quantiles(latencies, n=100)
    return WrkResult(len(latencies) / (time.perf_counter() - started), cuts[49], cuts[98])


def victim_cell(result: WrkResult) -> str:
    """req/s and p50 / p99 ms, or that no answer came in the round."""
    if not result.rps:
        return f"no answer in {FAIRNESS_ROUND_S} s"
    return f"{result.rps:.0f}, {result.p50:.2f} / {result.p99:.2f}"


def statuses_cell(statuses: Counter[int]) -> str:
    """The attacker's requests, then its refusals and any other status that was not a
    200 (0: a failed connection)."""
    others = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())
                       if status not in (200, 429))
    return (f"{sum(statuses.values())} ({statuses[429]} 429"
            f"{'; ' + others if others else ''})")


def bench_fairness(name: str, services: dict[str, Service], frame: pd.DataFrame,
                   work: dict[str, list[Case]], workdir: Path, report: Report) -> None:
    """On each service: the heaviest request's time alone, then the victim's nearest
    queries alone and beside the attacker."""
    paths = [case.path for case in work[NEAREST]]
    for label, service in services.items():
        heavies = heavy_requests(frame, service.port)
        cost, kind = heaviest(service.port, heavies)
        alone = victim_round(service.port, paths)
        attacked, statuses = attacked_round(service.port, heavies, paths)
        ratio = (f"{attacked.p50 / alone.p50:.2f}x" if attacked.rps else
                 f"> {FAIRNESS_ROUND_S * 1000 / alone.p50:.0f}x")
        report.fairness.append(ratio_row(
            name, label, victim_cell(alone), victim_cell(attacked), ratio,
            statuses_cell(statuses), f"{cost * 1000:.0f} ({kind})"))
