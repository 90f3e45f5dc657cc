"""The bench's writes (scripts/bench.py): what one write costs over HTTP, writers beside
readers, and how soon a follower of the change feed sees a change.

Each dataset's writes run on ``geosearch serve --database`` (gunicorn, 2 gevent workers)
over the bench's PostGIS database of that dataset, after the parts that read it (a write
changes the data they measure), with a key of the scopes write and changes; the server
has the read parts' client budget and a per-key write limit the load never reaches
(:data:`WRITE_ENV`: the accounting's cost stays in the figures, its refusals do not).

- **One write**: a PATCH (a JSON Merge Patch of ``amenities`` and ``price_day``) and a
  create (a Feature with a Point: a new name at the position of a space of the dataset),
  each sequential on one keep-alive connection after a warm-up, each patch with the ETag
  of its space's last answer as ``If-Match``, cycling over :data:`SITES` spaces spread
  over the dataset; p50 / p99, and at 1M the p50 over the same run's 5k p50;
- **Visibility**: a writer patching at :data:`FOLLOWED_RATE` a second and a follower on
  ``GET /v1/changes?wait=``: for each change, the follower's clock when it read the entry
  minus the entry's ``at`` (PostgreSQL's ``clock_timestamp()`` when the entry was written
  in the write's transaction, just before its NOTIFY and commit; one machine, one clock);
- **Writers beside readers**: :data:`WRITERS` writers, each on its own connection and
  spaces (three patches, then a create, without pause) beside :data:`READERS` wrk
  connections of radius searches; the readers' req/s alone and beside the writers in
  :data:`WRITE_PAIRS` pairs of rounds (in alternating order), the writers' 2xx a second
  during the readers' rounds.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import psycopg
from bench_http import LOAD_GENERATOR, WrkResult, serving, write_paths, wrk
from bench_report import Report, ratio_row
from bench_workload import (
    FOLLOWED_RATE,
    RADIUS,
    READERS,
    VISIBLE_TARGET_MS,
    WRITE_PAIRS,
    WRITE_TARGET_MS,
    WRITERS,
    Case,
    p50_p99,
)
from write_client import Answer, WriteClient, space_feature

from geosearch import changes
from geosearch.database import libpq_url
from geosearch.keys import CHANGES, WRITE, KeyStore
from geosearch.settings import Settings

WRITE_ENV = {**LOAD_GENERATOR, "GEOSEARCH_WRITE_RATE_LIMIT": "1000000/second"}
KEY_NAME = "bench-writes"
AMENITY_SETS = (["wifi", "coffee"], ["wifi", "meeting_rooms", "parking"])
WARM_UP = 20  # untimed writes before a timed round
SITES = 48  # spaces the patches cycle over (and the creates' positions)
CANDIDATES = 20  # times SITES: the spaces tried for them
WRITERS_HEAD_START_S = 0.5  # the writers' start before the readers' round
FOLLOW_WAIT_S = 5  # the follower's wait= per request
FOLLOW_HEAD_START_S = 0.5  # the follower's first wait before the first write


def bench_key(url: str) -> str:
    """A new key of the scopes write and changes in the database; its secret."""
    keys = KeyStore(Settings(database_url=url))
    try:
        return keys.create(KEY_NAME, [WRITE, CHANGES])
    finally:
        keys.close()


def patch_body(n: int) -> dict:
    """The ``n``-th patch of a space: amenities and price_day, both unlike the last one's."""
    return {"properties": {"amenities": AMENITY_SETS[n % 2], "price_day": float(10 + n % 90)}}


@dataclass
class Site:
    """A space of the dataset that takes a patch: its revision now and its patches so far,
    and where a new space can be created beside it."""

    id: str
    revision: int
    patches: int
    lon: float
    lat: float
    country: str
    city: str | None
    address: str | None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def sites(client: WriteClient, frame: pd.DataFrame, count: int, seed: int = 7
          ) -> list[Site]:
    """``count`` random active spaces of ``frame`` that take a patch, each at the revision
    its first patch (untimed) left: the synthetic 1M scatters some spaces across borders
    or into the sea, where a write is refused (422) and an ingest keeps them."""
    active = frame[frame["status"] == "active"]
    rows = active.sample(min(len(active), CANDIDATES * count), random_state=seed)
    found: list[Site] = []
    for row in rows.itertuples():
        got = client.get(row.id)
        if got.status != 200 or got.revision is None:
            raise RuntimeError(f"GET /v1/spaces/{row.id}: {got.status}")
        answer = client.patch(row.id, got.revision, patch_body(0))
        if answer.status == 422:
            continue
        _check(answer)
        found.append(Site(row.id, int(answer.revision or 0), 1, float(row.lon),
                          float(row.lat), str(row.country), _text(row.city),
                          _text(row.address)))
        if len(found) == count:
            return found
    raise RuntimeError(f"only {len(found)} of {len(rows)} spaces took a patch")


def _check(answer: Answer) -> Answer:
    """``answer`` when it is a 2xx with an ETag; else the bench fails, saying why."""
    if not answer.ok or answer.revision is None:
        raise RuntimeError(f"a write answered {answer.status}: {answer.body[:300]!r}")
    return answer


def patch_site(client: WriteClient, site: Site) -> Answer:
    """Patch the site with ``If-Match`` its last revision, and keep the revision of the
    answer (a 412's names the current one)."""
    answer = client.patch(site.id, site.revision, patch_body(site.patches))
    if answer.revision is not None:
        site.revision = answer.revision
    site.patches += answer.ok
    return answer


def create_body(site: Site, name: str) -> dict:
    """A new space ``name`` at the site's position, in its country and city."""
    extra = {"address": site.address} if site.address else {}
    return space_feature(name, site.lon, site.lat, site.country, city=site.city,
                         amenities=AMENITY_SETS[0], capacity=12, price_day=25.0,
                         currency="EUR", **extra)


def timed(write: Callable[[int], Answer], count: int) -> list[float]:
    """The seconds each of ``count`` writes took, one after another after
    :data:`WARM_UP` untimed ones; every one must be a 2xx."""
    times = []
    for n in range(-WARM_UP, count):
        t = time.perf_counter()
        answer = write(n)
        elapsed = time.perf_counter() - t
        _check(answer)
        if n >= 0:
            times.append(elapsed)
    return times


class Writers:
    """:data:`WRITERS` threads writing without pause while in a ``with``, each on its own
    connection and its own share of the sites: three patches, then a create. ``done``: the
    ``time.monotonic()`` of each 2xx; a 412 takes the current revision and goes on; any
    other answer fails the bench."""

    def __init__(self, port: int, secret: str, spots: list[Site], tag: str) -> None:
        self.port, self.secret, self.spots, self.tag = port, secret, spots, tag
        self.done: list[list[float]] = [[] for _ in range(WRITERS)]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(WRITERS)]

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self.errors:
            raise RuntimeError(f"writers beside the readers: {self.errors[:3]}")

    def _run(self, i: int) -> None:
        client = WriteClient(self.port, self.secret)
        mine = self.spots[i::WRITERS]
        n = 0
        while not self._stop.is_set():
            site = mine[n % len(mine)]
            answer = (client.create(create_body(site, f"Bench {self.tag} writer {i} {n}"))
                      if n % 4 == 3 else patch_site(client, site))
            if answer.ok:
                self.done[i].append(time.monotonic())
            elif answer.status != 412:
                self.errors.append(f"{answer.status}: {answer.body[:200]!r}")
                return
            n += 1
        client.close()

    def rate(self, start: float, end: float) -> float:
        """The writers' 2xx a second between two ``time.monotonic()`` readings."""
        return sum(start <= t <= end for done in self.done for t in done) / (end - start)


def readers_beside_writers(port: int, paths: Path, seconds: int, secret: str,
                           spots: list[Site], tag: str) -> tuple[WrkResult, float]:
    """The readers' wrk round while the writers write (from a head start); their
    writes a second during it."""
    with Writers(port, secret, spots, tag) as writers:
        time.sleep(WRITERS_HEAD_START_S)
        start = time.monotonic()
        readers = wrk(port, paths, seconds, READERS)
        end = time.monotonic()
    return readers, writers.rate(start, end)


class Follower:
    """A follower of the change feed from ``since`` (``GET /v1/changes?wait=``, on its own
    connection) until it has read ``expected`` entries; ``lags``: for each, the seconds
    from its ``at`` to the moment its answer was read."""

    def __init__(self, port: int, secret: str, since: int, expected: int) -> None:
        self.lags: list[float] = []
        self.error = ""
        self._client = WriteClient(port, secret)
        self._since, self._expected = since, expected
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Follower:
        self._thread.start()
        time.sleep(FOLLOW_HEAD_START_S)
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(FOLLOW_WAIT_S * 3)
        self._client.close()
        if self.error or len(self.lags) < self._expected:
            raise RuntimeError(f"the follower read {len(self.lags)} of {self._expected} "
                               f"entries {self.error}")

    def _run(self) -> None:
        since = self._since
        deadline = time.monotonic() + 600
        while len(self.lags) < self._expected and time.monotonic() < deadline:
            answer, entries, since = self._client.changes(since, wait_s=FOLLOW_WAIT_S)
            if answer.status != 200:
                self.error = f"(GET /v1/changes answered {answer.status})"
                return
            self.lags += [answer.at - datetime.fromisoformat(e["at"]).timestamp()
                          for e in entries]


def followed(port: int, secret: str, url: str, spots: list[Site], count: int
             ) -> list[float]:
    """``count`` patches at :data:`FOLLOWED_RATE` a second while a follower reads them
    from the feed; the follower's lags (seconds)."""
    with psycopg.connect(libpq_url(url)) as conn:
        since = changes.latest(conn)
    client = WriteClient(port, secret)
    with Follower(port, secret, since, count) as follower:
        started = time.monotonic()
        for n in range(count):
            time.sleep(max(0.0, started + n / FOLLOWED_RATE - time.monotonic()))
            _check(patch_site(client, spots[n % len(spots)]))
    client.close()
    return follower.lags


class WriteBench:
    """The write section, one dataset after the other; the 5k p50 of each write is kept
    for the 1M one's ratio."""

    def __init__(self, count: int, seconds: int) -> None:
        self.count, self.seconds = count, seconds
        self.small: dict[str, float] = {}

    def _one_write(self, name: str, kind: str, times: list[float], report: Report) -> None:
        p50, p99 = p50_p99(times)
        if name == "5k":
            self.small[kind] = p50
        ratio = f"{p50 / self.small[kind]:.2f}x" if name != "5k" and kind in self.small else "-"
        report.writes.append(ratio_row(name, kind, f"{p50:.2f} / {p99:.2f}",
                                       "p50 <= {:g}, p99 <= {:g}".format(*WRITE_TARGET_MS),
                                       ratio))

    def run(self, name: str, url: str, frame: pd.DataFrame, work: dict[str, list[Case]],
            workdir: Path, report: Report) -> None:
        """Every write figure of the dataset ``name`` in the database ``url``."""
        secret = bench_key(url)
        paths = write_paths(work[RADIUS], workdir / "radius.txt")
        with serving({"PostGIS": ("--database", url)}, WRITE_ENV) as services:
            port = services["PostGIS"].port
            client = WriteClient(port, secret)
            spots = sites(client, frame, SITES)
            self._one_write(name, "PATCH amenities + price_day (If-Match)", timed(
                lambda n: patch_site(client, spots[n % len(spots)]), self.count), report)
            self._one_write(name, "create, a Feature with a Point", timed(
                lambda n: client.create(create_body(spots[n % len(spots)],
                                                    f"Bench {name} create {n + WARM_UP}")),
                self.count), report)
            client.close()
            p50, p99 = p50_p99(followed(port, secret, url, spots, self.count))
            report.writes.append(ratio_row(
                name, f"change read by a follower (wait=; {FOLLOWED_RATE} writes/s)",
                f"{p50:.2f} / {p99:.2f}", f"p99 <= {VISIBLE_TARGET_MS:g}", "-"))
            self._beside(name, port, paths, secret, spots, report)

    def _beside(self, name: str, port: int, paths: Path, secret: str, spots: list[Site],
                report: Report) -> None:
        """Pairs of reader rounds, alone and beside the writers, in alternating order."""
        alone: list[WrkResult] = []
        beside: list[WrkResult] = []
        rates: list[float] = []
        for i in range(WRITE_PAIRS):
            for kind in ("alone", "beside") if i % 2 == 0 else ("beside", "alone"):
                if kind == "alone":
                    alone.append(wrk(port, paths, self.seconds, READERS))
                    continue
                readers, rate = readers_beside_writers(port, paths, self.seconds, secret,
                                                       spots, f"{name} round {i}")
                beside.append(readers)
                rates.append(rate)
        ratios = [b.rps / a.rps for a, b in zip(alone, beside, strict=True)]
        report.writers.append(ratio_row(
            name, f"{statistics.median(rates):.0f}",
            f"{statistics.median(r.rps for r in alone):.0f}",
            f"{statistics.median(r.rps for r in beside):.0f}",
            f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}..{max(ratios):.2f})"))
