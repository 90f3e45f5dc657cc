"""The bench over HTTP (scripts/bench.py): ``geosearch serve`` beside minimal Flask
floors under wrk, the memory of its workers, and gunicorn's worker classes.

The servers of a dataset are started once (:func:`serving`) and shared by the parts
that speak HTTP (these rounds, and the fairness of scripts/bench_fairness.py)."""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench_report import Report, ratio_row
from bench_workload import HTTP_PAIRS, HTTP_ROUNDS, RADIUS, Case
from faults import Server, serve_args

from geosearch.backends.postgis import statement
from geosearch.database import libpq_url as dsn

WRK_SCRIPT = Path(__file__).parent / "wrk" / "paths.lua"
# A round counts when each worker did at least this share of the workers' CPU in it (its
# two connections served by two workers); tries per round before the last one is kept.
BALANCED_SHARE = 0.25
ROUND_TRIES = 4


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


# The throughput rounds' settings: wrk is one client keeping both workers busy, which the
# per-client budget would refuse; a budget it never reaches keeps the accounting's cost
# in the figures. The fairness part serves with the defaults.
LOAD_GENERATOR = {"GEOSEARCH_CLIENT_BUDGET": "1000"}


@contextmanager
def serving(sources: dict[str, tuple[str, ...]], env: dict[str, str] | None = None
            ) -> Iterator[dict[str, Service]]:
    """``geosearch serve`` (default settings, then ``env``) on each source
    (``--snapshot PATH`` or ``--database URL``), by backend label; stopped on exit."""
    services: dict[str, Service] = {}
    try:
        for label, source in sources.items():
            services[label] = Service(serve_args(*source), "/readyz", env=env)
        yield services
    finally:
        for service in services.values():
            service.stop()


@dataclass
class WrkResult:
    """Requests per second and latency percentiles (ms) of one wrk run."""

    rps: float
    p50: float
    p99: float


def wrk(port: int, paths: Path, seconds: int, connections: int = 2,
        timeout_s: int | None = None) -> WrkResult:
    """wrk with ``connections`` connections on one thread, cycling through ``paths``; a
    request unanswered after ``timeout_s`` (wrk's default: 2 s) counts as an error, not
    in the latencies."""
    timeout = [] if timeout_s is None else [f"--timeout={timeout_s}s"]
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *timeout,
                          "--latency", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True,
                         env={**os.environ, "WRK_PATHS": str(paths)}, check=True)

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


def write_paths(cases: list[Case], out: Path) -> Path:
    """The cases' paths, one a line, for wrk (scripts/wrk/paths.lua) to cycle through."""
    out.write_text("".join(c.path + "\n" for c in cases))
    return out


def record_responses(port: int, paths: list[str], out: Path) -> None:
    """The bytes geosearch returns for each path, for the floor app to return."""
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


def floor_service(label: str, cases: list[Case], services: dict[str, Service],
                  url: str | None, workdir: Path) -> Service:
    """The minimal Flask floor (scripts/floor_app.py) of the service ``label``: the bytes
    the memory service returned for each path, or the raw SQL of each on PostGIS."""
    if label == "memory":
        source = ["--responses", str(workdir / "responses.json")]
        record_responses(services["memory"].port, [c.path for c in cases], Path(source[1]))
    else:
        source = ["--sql", str(workdir / "sql.json"), "--dsn", dsn(url)]
        record_sql(cases, Path(source[1]))
    return Service([sys.executable, "scripts/floor_app.py", *source], cases[0].path)


def bench_http(name: str, services: dict[str, Service], url: str | None,
               work: dict[str, list[Case]], workdir: Path, seconds: int,
               report: Report) -> None:
    """The services over HTTP beside their minimal-Flask floors; worker memory."""
    for label, service in services.items():
        rss, pss = service.memory_mb()
        report.memory.append(ratio_row(name, "memory (snapshot)" if label == "memory"
                                       else label, f"{rss:.0f}", f"{pss:.0f}"))
    for kind, cases in work.items():
        cases = [c for c in cases if c.path]
        if not cases:
            continue
        paths = write_paths(cases, workdir / "paths.txt")
        for label, ours in services.items():
            floor = floor_service(label, cases, services, url, workdir)
            try:
                paired = side_by_side(ours, floor, paths, seconds)
            finally:
                floor.stop()
            mine, base = paired.ours, paired.floor
            report.http.append(ratio_row(
                name, kind, label, f"{mine.rps:.0f}", f"{mine.p50:.2f} / {mine.p99:.2f}",
                f"{base.rps:.0f}", f"{base.p50:.2f} / {base.p99:.2f}", paired.ratio_cell()))


def bench_servers(snapshot: Path, work: dict[str, list[Case]], workdir: Path,
                  seconds: int) -> list[str]:
    """The radius endpoint under gunicorn's sync, gthread and gevent workers."""
    paths = write_paths(work[RADIUS], workdir / "paths.txt")
    rows = []
    for worker in ("sync", "gthread", "gevent"):
        service = Service(serve_args("--snapshot", str(snapshot)), "/readyz",
                          env={"GEOSEARCH_WORKER_CLASS": worker, **LOAD_GENERATOR})
        try:
            result = max((balanced_round(service, paths, seconds) for _ in range(HTTP_ROUNDS)),
                         key=lambda r: r.rps)
        finally:
            service.stop()
        rows.append(ratio_row(worker, f"{result.rps:.0f}", f"{result.p50:.2f}",
                              f"{result.p99:.2f}"))
    return rows
