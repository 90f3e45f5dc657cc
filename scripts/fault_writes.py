"""Writers under faults (scripts/faults.py): writers under load while a gunicorn worker is
killed -9 and PostgreSQL is restarted in immediate mode (:func:`run_writes`, on the
drill's machinery of :mod:`faults`), and the check of what they wrote against the spaces
table and the change feed.

:class:`WriteLoad`'s threads create spaces of their own (ids ``drill-*``) and patch them
without pause, each patch with ``If-Match`` the space's last revision and tried again on
a 412 with the revision the 412 names. Every write sets ``price_day`` to a mark of its own,
so that a row and a feed entry say which write they hold. :func:`check_writes` then
reads the rows straight from PostgreSQL and the feed through the API, and finds:

- an acknowledged write (2xx) whose entry (its id, its revision, its mark) is not in the
  feed, or whose space's row is below that revision;
- a space whose row and entries disagree: its entries, in seq order, are not one chain
  (a create at revision 1, then each entry one revision up from the one before) ending
  at the row's revision and mark, or a row without entries, or entries without a row
  (a write that failed half applied);
- a gap or a duplicate in the feed's seqs, or a last seq other than the counter's.

A write that failed (no answer, 503) may have committed before its answer was lost: it
may be in the table, but then whole.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import psycopg
from faults import Outcome, Report, drill, judge
from write_client import WriteClient, space_feature

from geosearch import changes
from geosearch.database import libpq_url
from geosearch.keys import CHANGES, WRITE, KeyStore
from geosearch.settings import Settings
from geosearch.testing import pgcluster

PREFIX = "drill-"  # the ids of the spaces the load creates
MARK_STEP = 1_000_000  # writer t's marks are (t + 1) * MARK_STEP + n, under MAX_PRICE
CREATE_EVERY = 4  # one write in so many is a create
STALE_TRIES = 5  # a patch answered 412 is sent again at most so many times
BERLIN = (13.3777, 52.5163)  # lon, lat: far inside DE, where the creates go


@dataclass(frozen=True)
class Attempt:
    """One write sent: ``create`` or ``update``, the space, the mark it writes, the
    answer's status (0: no answer) and revision, and ``time.monotonic()`` at the answer."""

    op: str
    id: str
    mark: float
    status: int
    revision: int | None
    at: float


class WriteLoad:
    """``clients`` threads writing without pause from :meth:`start` to :meth:`stop`;
    ``attempts``: every write they sent, with its answer."""

    def __init__(self, port: int, secret: str, clients: int) -> None:
        self.port, self.secret = port, secret
        self.attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True)
                         for t in range(clients)]

    def start(self) -> None:
        """Start the writers."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the writers and wait for their last answers."""
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, t: int) -> None:
        client = WriteClient(self.port, self.secret, timeout_s=20)
        own: list[tuple[str, int]] = []  # the spaces created, with their last revision
        n = 0
        while not self._stop.is_set():
            mark = float((t + 1) * MARK_STEP + n)
            if n % CREATE_EVERY == 0 or not own:
                self._create(client, f"{PREFIX}{t}-{n}", mark, own)
            else:
                own[n % len(own)] = self._patch(client, *own[n % len(own)], mark)
            n += 1
        client.close()

    def _create(self, client: WriteClient, space_id: str, mark: float,
                own: list[tuple[str, int]]) -> None:
        step = 0.0004 * (len(own) % 100)
        doc = space_feature(f"Drill {space_id}", BERLIN[0] + step, BERLIN[1] - step, "DE",
                            city="Berlin", address=f"Drill Street {len(own)}",
                            amenities=["wifi"], capacity=5, price_day=mark, currency="EUR")
        doc["id"] = space_id
        answer = client.create(doc)
        self._note("create", space_id, mark, answer.status, answer.revision)
        if answer.ok and answer.revision is not None:
            own.append((space_id, answer.revision))

    def _patch(self, client: WriteClient, space_id: str, revision: int, mark: float
               ) -> tuple[str, int]:
        """Patch the space (again on a 412, against the revision it names); the space
        with the revision it is known to have now."""
        for _ in range(STALE_TRIES):
            answer = client.patch(space_id, revision, {"properties": {"price_day": mark}})
            self._note("update", space_id, mark, answer.status, answer.revision)
            if answer.revision is not None:  # a 2xx's, or the current one of a 412
                revision = answer.revision
            if answer.status != 412:
                break
        return space_id, revision

    def _note(self, op: str, space_id: str, mark: float, status: int,
              revision: int | None) -> None:
        self.attempts.append(Attempt(op, space_id, mark, status,
                                     revision if 200 <= status < 300 else None,
                                     time.monotonic()))


def read_feed(port: int, secret: str) -> list[dict]:
    """Every entry of the change feed, read through the API page by page."""
    client = WriteClient(port, secret)
    entries: list[dict] = []
    since = 0
    while True:
        answer, page, since = client.changes(since, limit=changes.MAX_LIMIT)
        if answer.status != 200:
            raise RuntimeError(f"GET /v1/changes answered {answer.status}")
        if not page:
            client.close()
            return entries
        entries += page


def _mark(entry: dict) -> float:
    return float(entry["space"]["properties"]["price_day"])


def _chain_errors(space_id: str, entries: list[dict], row: tuple[int, float] | None
                  ) -> list[str]:
    """What is wrong with one space's entries (in seq order) beside its row (revision,
    mark; None: no row)."""
    if row is None:
        return [f"{space_id}: in the feed, not in the table"]
    if not entries:
        return [f"{space_id}: in the table at revision {row[0]}, not in the feed"]
    errors = []
    previous = None
    for entry in entries:
        op = "create" if previous is None else "update"
        want = (op, 1 if previous is None else previous + 1, previous)
        got = (entry["op"], entry["revision"], entry["previous_revision"])
        if got != want:
            errors.append(f"{space_id}: seq {entry['seq']} is {got}, want {want}")
        previous = entry["revision"]
    last = entries[-1]
    if (last["revision"], _mark(last)) != row:
        errors.append(f"{space_id}: the table holds (revision, mark) {row}, the feed's "
                      f"last entry ({last['revision']}, {_mark(last)})")
    return errors


def check_writes(url: str, port: int, secret: str, attempts: list[Attempt]) -> list[str]:
    """Every disagreement between the acknowledged writes, the rows and the feed."""
    with psycopg.connect(libpq_url(url)) as db:
        rows = {space_id: (int(revision), float(price))
                for space_id, revision, price in db.execute(
                    "SELECT id, revision, price_day FROM spaces WHERE id LIKE %s",
                    (f"{PREFIX}%",))}
        latest = changes.latest(db)
    feed = read_feed(port, secret)
    seqs = [entry["seq"] for entry in feed]
    errors = []
    if seqs != list(range(1, len(seqs) + 1)) or latest != len(seqs):
        errors.append(f"the feed's seqs are not 1..{latest} once each: {len(seqs)} entries, "
                      f"first {seqs[:3]}, last {seqs[-3:]}")
    by_space: dict[str, list[dict]] = defaultdict(list)
    for entry in feed:
        if str(entry["id"]).startswith(PREFIX):
            by_space[entry["id"]].append(entry)
    for space_id in sorted(set(by_space) | set(rows)):
        errors += _chain_errors(space_id, by_space[space_id], rows.get(space_id))
    written = {(e["id"], e["revision"]): (e["op"], _mark(e))
               for entries in by_space.values() for e in entries}
    for a in attempts:
        if 200 <= a.status < 300 and written.get((a.id, a.revision)) != (a.op, a.mark):
            errors.append(f"acknowledged {a.op} of {a.id} at revision {a.revision} (mark "
                          f"{a.mark:.0f}): the feed has {written.get((a.id, a.revision))}")
        elif 400 <= a.status < 500 and a.status != 412:
            errors.append(f"{a.op} of {a.id} answered {a.status}")
    return errors


def run_writes(clients: int = 4, pause_s: float = 3.0, work: Path | None = None) -> Report:
    """Writers (:class:`WriteLoad`) while a worker is killed -9 and PostgreSQL is
    restarted in immediate mode, on a cluster of its own; then the answers are judged and
    the acknowledged writes, the rows and the change feed checked against each other
    (:func:`check_writes`); returns what was seen."""
    with drill(pause_s, work) as d:
        with psycopg.connect(libpq_url(d.url), autocommit=True) as db:
            # The throwaway cluster runs with synchronous_commit=off (fast tests), under
            # which a crash loses the last commits it acknowledged; a deployment keeps the
            # default, on. A database's own setting outranks the server's command line.
            db.execute(f"ALTER DATABASE {pgcluster.DATABASE} SET synchronous_commit = on")
        keys = KeyStore(Settings(database_url=d.url))
        secret = keys.create("drill", [WRITE, CHANGES])
        keys.close()
        server = d.serve(GEOSEARCH_WRITE_RATE_LIMIT="1000000/second")
        load = WriteLoad(server.port, secret, clients)
        try:
            load.start()
            time.sleep(pause_s)
            d.fault("kill -9 a worker", {0}, d.kill_worker)
            d.fault("restart PostgreSQL (immediate)", {503},
                    lambda: d.restart_postgres("immediate"))
        finally:
            load.stop()
        outcomes = [Outcome(a.at, a.status, f"{a.op} {a.id}") for a in load.attempts]
        d.violations += judge(outcomes, d.windows)
        d.violations += check_writes(d.url, server.port, secret, load.attempts)
        if not any(200 <= o.status < 300 and o.at > d.windows[-1].end for o in outcomes):
            d.violations.append("no acknowledged write after the last fault")
    return Report(Counter(o.status for o in outcomes), d.violations, d.windows)
