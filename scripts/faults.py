"""Faults under load: a real gunicorn server on a real PostGIS, clients querying (or
writing) all the while, and the faults of production injected one after another.

    python scripts/faults.py [--seconds-between 3] [--clients 4] [--only reads|writes]

Reads (:func:`run`), faults in order: kill -9 a worker; restart PostgreSQL; stop it for
5 s; swap the dataset with a second ingest; kill an ingest in the middle of its COPY.
Every response is counted. The run fails when any response is a 5xx other than the
documented 503 while the database is away, when a 503 comes outside a database outage,
when a request fails outside the moment a worker is killed, when answers after recovery
differ from the brute-force oracle, or when the killed ingest changed the served data.

Writes (:func:`fault_writes.run_writes`): writers creating and patching spaces
(``If-Match``, again on a 412) while a worker is killed -9 and PostgreSQL is restarted in
immediate mode (a crash, then recovery). The same judgement of the answers, then of what
was written: every write answered 2xx is in the table at (at least) its revision and in
the change feed; no write is half applied; the feed's seqs have no gap and no duplicate.

``make test`` runs both in a short form (tests/test_faults.py); ``make faults`` in full.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from geosearch.testing import pgcluster
from geosearch.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
FEED = ROOT / "data" / "feed" / "spaces.csv"
QUERIES = [
    "/v1/spaces/nearest?lat=52.52&lon=13.405&k=5&amenities=wifi",
    "/v1/spaces/radius?lat=48.8566&lon=2.3522&radius_m=5000&limit=20",
    "/v1/spaces/bbox?bbox=-0.5,51.3,0.3,51.7&limit=20",
    "/v1/spaces?country=NL&limit=10",
    "/ogc/collections/spaces/items?limit=5",
]
# A few seconds after a fault ends, the answers must be back to normal.
GRACE_S = 5.0


def children(pid: int) -> list[int]:
    """The pids of a process' children (gunicorn's workers under its arbiter)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class Server:
    """A server command (``--port N`` appended) in a subprocess run in ``cwd``, ready when
    ``probe`` answers 200; its stderr goes to ``log`` when given."""

    def __init__(self, args: list[str], probe: str = "/readyz", env: dict | None = None,
                 log: Path | None = None, wait_s: float = 300.0, cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.log = log
        self._log_file = log.open("w") if log is not None else None
        self.proc = subprocess.Popen(
            [*args, "--port", str(self.port)], cwd=cwd,
            env={**os.environ, "GEOSEARCH_ACCESS_LOG": "", **(env or {})},
            stdout=subprocess.DEVNULL, stderr=self._log_file or subprocess.DEVNULL)
        deadline = time.monotonic() + wait_s
        while get(self.port, probe)[0] != 200:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{args} did not become ready")
            time.sleep(0.3)

    def workers(self) -> list[int]:
        """The worker pids."""
        return children(self.proc.pid)

    def stop(self) -> None:
        """Stop the arbiter and its workers."""
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self._log_file is not None:
            self._log_file.close()


def serve_args(*source: str) -> list[str]:
    """``geosearch serve`` over a snapshot or a database (``--database URL``)."""
    return [sys.executable, "-m", "geosearch.cli", "serve", *source]


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """One GET on a new connection: (status, body); status 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException):  # refused, reset, cut short
        return 0, b""
    finally:
        conn.close()


@dataclass
class Outcome:
    """One response seen by the load: when, what, and to which request."""

    at: float
    status: int
    path: str


@dataclass
class Load:
    """Clients that query the server without pause until stopped."""

    port: int
    clients: int = 4
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """Start the client threads."""
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, n: int) -> None:
        i = n
        while not self._stop.is_set():
            path = QUERIES[i % len(QUERIES)]
            status, _ = get(self.port, path)
            self.outcomes.append(Outcome(time.monotonic(), status, path))
            i += 1

    def stop(self) -> None:
        """Stop and wait for the clients."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


@dataclass
class Window:
    """A time span of a fault, and what it allows: 503 (database away) or failed
    connections (a worker killed)."""

    fault: str
    start: float
    end: float
    allows: frozenset[int]


def dataset_state(url: str) -> tuple[str, int]:
    """The served version and the number of rows, read straight from PostgreSQL."""
    with psycopg.connect(url.replace("+psycopg", "")) as db:
        return db.execute("SELECT (SELECT version FROM dataset_state), "
                          "(SELECT count(*) FROM spaces)").fetchone()


def ingest(url: str, feed: Path) -> subprocess.CompletedProcess:
    """``geosearch ingest FEED --database URL``."""
    return subprocess.run([sys.executable, "-m", "geosearch.cli", "ingest", str(feed),
                           "--database", url], cwd=ROOT, capture_output=True, text=True,
                          check=False)


# ``geosearch ingest`` whose COPY of the spaces stops after a few hundred rows, says so on
# stdout and waits there: a kill then lands mid-COPY however busy the machine is (polling
# pg_stat_activity for the COPY, a loaded machine can miss a 5k COPY's few milliseconds)
_STALLED_INGEST = """
import sys, time
import geosearch.store as store
from geosearch.cli import main
chunks = store.csv_chunks
def stalled(tables):
    def read():
        for i, table in enumerate(tables):
            if i == 3 and "feature" in table.column_names:  # in the spaces' COPY
                print("copying", flush=True)
                time.sleep(600)
            yield table
    return chunks(read())
store.COPY_CHUNK_ROWS = 100
store.csv_chunks = stalled
sys.exit(main(sys.argv[1:]))
"""


def start_stalled_ingest(url: str, feed: Path = FEED) -> subprocess.Popen:
    """Start ``geosearch ingest FEED --database URL`` and return once it is stopped in the
    middle of its spaces COPY (see :data:`_STALLED_INGEST`)."""
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_INGEST, "ingest", str(feed),
                             "--database", url], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    proc.stdout.close()  # it writes nothing more
    if line != "copying":
        proc.kill()
        raise RuntimeError(f"the ingest ended before its COPY (exit {proc.wait(30)})")
    return proc


def kill_ingest_mid_copy(url: str, feed: Path) -> bool:
    """Start an ingest, kill -9 it in its COPY; True when PostgreSQL was running the COPY
    of the spaces when the kill came."""
    proc = start_stalled_ingest(url, feed)
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as db:
        copying = db.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                             "AND query ILIKE 'COPY spaces_staging%%'").fetchone()[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return copying == 1


def subset_feed(feed: Path, rows: int, out: Path) -> Path:
    """The first ``rows`` data rows of a CSV feed (a second, different dataset)."""
    lines = feed.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    out.write_text("".join(lines[:rows + 1]), encoding="utf-8")
    return out


def check_answers(port: int, feed: Path) -> list[str]:
    """Compare the served answers with the brute-force oracle over the ingested feed."""
    from geosearch.ingest.pipeline import run_pipeline
    from geosearch.model import Amenity, Filters
    from geosearch.testing import oracle

    frame = run_pipeline(feed, progress=False).frame
    frame = frame[frame["status"] == "active"]
    wrong = []
    for lat, lon in ((52.52, 13.405), (48.8566, 2.3522), (40.4168, -3.7038)):
        status, body = get(port, f"/v1/spaces/nearest?lat={lat}&lon={lon}&k=10&amenities=wifi")
        served = [f["id"] for f in json.loads(body)["features"]] if status == 200 else status
        want = [i for i, _ in oracle.nearest(frame, lat, lon, 10, None,
                                             Filters(all_amenities=frozenset({Amenity.WIFI})))]
        if served != want:
            wrong.append(f"nearest {lat},{lon}: served {served}, oracle {want}")
    return wrong


@dataclass
class Report:
    """What a run saw."""

    counts: Counter
    violations: list[str]
    windows: list[Window]

    def summary(self) -> str:
        """A few lines for people."""
        lines = [f"responses: {dict(sorted(self.counts.items()))}"]
        lines += [f"fault {w.fault}: {w.end - w.start:.1f} s" for w in self.windows]
        lines += [f"VIOLATION {v}" for v in self.violations] or ["no violations"]
        return "\n".join(lines)


def judge(outcomes: list[Outcome], windows: list[Window]) -> list[str]:
    """Every response that no fault window allows (a 2xx or a 4xx is always allowed)."""
    bad = []
    for o in outcomes:
        if 200 <= o.status < 300 or 400 <= o.status < 500:
            continue
        allowed = any(w.start <= o.at <= w.end + GRACE_S and o.status in w.allows
                      for w in windows)
        if not allowed:
            bad.append(f"{o.status} for {o.path} at +{o.at - windows[0].start:.1f} s")
    return bad


class Drill:
    """A scenario's cluster in a folder of its own (``work``, removed at :meth:`close`),
    the server over it, the faults injected and what they broke."""

    def __init__(self, pause_s: float, work: Path | None = None) -> None:
        self.work = Path(work or tempfile.mkdtemp(prefix="geosearch-faults-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.work.chmod(0o755)
        self.pause_s = pause_s
        self.datadir, self.pg_port = self.work / "pg", free_port()
        self.url = pgcluster.start(self.datadir, self.pg_port)
        self.windows: list[Window] = []
        self.violations: list[str] = []
        self.server: Server | None = None

    def serve(self, **env: str) -> Server:
        """``geosearch serve`` over the cluster (a 2 s statement timeout, then ``env``):
        the load's threads stand for many clients, so no per-client budget refuses them."""
        self.server = Server(serve_args("--database", self.url), log=self.work / "server.log",
                             env={"GEOSEARCH_STATEMENT_TIMEOUT_MS": "2000",
                                  "GEOSEARCH_CLIENT_BUDGET": "0", **env}, wait_s=60)
        return self.server

    def fault(self, name: str, allows: set[int], action: Callable[[], object]) -> None:
        """Inject a fault (``action``), noting its window and the statuses it allows; then
        a pause for the load to go on."""
        start = time.monotonic()
        action()
        self.windows.append(Window(name, start, time.monotonic(), frozenset(allows)))
        time.sleep(self.pause_s)

    def kill_worker(self) -> None:
        """kill -9 one of the server's workers."""
        assert self.server is not None
        os.kill(self.server.workers()[0], signal.SIGKILL)

    def restart_postgres(self, mode: str = "fast") -> None:
        """Stop PostgreSQL (``fast``, or ``immediate``: as in a crash) and start it again."""
        pgcluster.stop(self.datadir, mode)
        pgcluster.start(self.datadir, self.pg_port)

    def close(self) -> None:
        """Stop the server (its log's end into the violations, when there are any) and the
        cluster; remove the folder."""
        if self.server is not None:
            self.server.stop()
            if self.violations and self.server.log is not None:
                self.violations.append("server log: " + self.server.log.read_text()[-3000:])
        pgcluster.stop(self.datadir)
        shutil.rmtree(self.work, ignore_errors=True)


@contextmanager
def drill(pause_s: float, work: Path | None = None) -> Iterator[Drill]:
    """A :class:`Drill` whose cluster has the feed ingested; closed on exit."""
    d = Drill(pause_s, work)
    try:
        first = ingest(d.url, FEED)
        if first.returncode:
            raise RuntimeError(f"the first ingest failed: {first.stderr}")
        yield d
    finally:
        d.close()


def run(clients: int = 4, pause_s: float = 3.0, work: Path | None = None) -> Report:
    """The whole scenario of reads on a cluster of its own; returns what was seen."""
    with drill(pause_s, work) as d:
        url, violations = d.url, d.violations
        server = d.serve()
        load = Load(server.port, clients)
        try:
            load.start()
            time.sleep(pause_s)
            d.fault("kill -9 a worker", {0}, d.kill_worker)
            d.fault("restart PostgreSQL", {503}, d.restart_postgres)

            def outage() -> None:
                pgcluster.stop(d.datadir)
                time.sleep(5)
                pgcluster.start(d.datadir, d.pg_port)

            d.fault("stop PostgreSQL for 5 s", {503}, outage)
            second = subset_feed(FEED, 3000, d.work / "second.csv")
            swapped = {}
            d.fault("swap the dataset (second ingest)", set(),
                    lambda: swapped.update(done=ingest(url, second)))
            if swapped["done"].returncode:
                violations.append(f"the second ingest failed: {swapped['done'].stderr[-300:]}")
            before = dataset_state(url)
            caught = {}
            d.fault("kill an ingest mid-COPY", set(),
                    lambda: caught.update(done=kill_ingest_mid_copy(url, FEED)))
            if not caught["done"]:
                violations.append("the ingest was not caught in its COPY")
            if dataset_state(url) != before:
                violations.append("the killed ingest changed the served dataset")
        finally:
            load.stop()
        violations += judge(load.outcomes, d.windows)
        violations += check_answers(server.port, second)
        if not any(o.status == 200 and o.at > d.windows[-1].end for o in load.outcomes):
            violations.append("no successful answer after the last fault")
    return Report(Counter(o.status for o in load.outcomes), d.violations, d.windows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds-between", type=float, default=10.0)
    parser.add_argument("--only", choices=("reads", "writes"),
                        help="run only this scenario (default: both)")
    args = parser.parse_args(argv)
    from fault_writes import run_writes  # here: fault_writes builds on this module

    failed = False
    for name, scenario in (("reads", run), ("writes", run_writes)):
        if args.only in (None, name):
            report = scenario(args.clients, args.seconds_between)
            print(f"{name}:\n{report.summary()}")
            failed = failed or bool(report.violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
