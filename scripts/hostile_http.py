"""Send the hostile battery to a running service over real sockets.

    python scripts/hostile_http.py http://127.0.0.1:8000 [--timing] [--slowest 5] [--clients 1]

Every case of geosearch.testing.hostile and geosearch.testing.hostile_wire, and cursors
forged from those the service issues, each on a connection of its own, written byte for
byte. Every answer is judged (``hostile.judge``): a 2xx, or a 4xx problem+json that leaks
no stack trace or SQL, the status the case must get when it has one, no connection closed
without an answer, the forged host never echoed, every link on the service's own origin.
The service must still answer a search afterwards. Exit status 1 when one does not.

``--timing`` prints, for every case, the wall time of its answer: on an idle server, the
worker time it cost; then the slowest cases.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from geosearch.testing import hostile
from geosearch.testing.hostile_wire import request_bytes, wire_battery


@dataclass
class Answer:
    """What came back for one probe: status 0 and ``error`` when no answer did."""

    status: int
    content_type: str = ""
    head: str = ""
    text: str = ""
    seconds: float = 0.0
    error: str = ""


def send(base: str, probe: hostile.Probe, timeout: float = 30.0) -> Answer:
    """``probe`` on a connection of its own to the service at ``base``, and its answer
    read to the end."""
    parts = urlsplit(base)
    if probe.url.startswith("/") and parts.path.strip("/"):
        probe = replace(probe, url=parts.path.rstrip("/") + probe.url)
    start = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
        with suppress(OSError):  # refused before all was sent: the answer is still read
            sock.sendall(request_bytes(probe, parts.netloc))
        if probe.half_close:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock, method=probe.method)
        try:
            resp.begin()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            return Answer(0, seconds=time.perf_counter() - start,
                          error=f"no answer ({type(exc).__name__}: {exc})")
    head = f"{resp.status} {resp.reason}\r\n{resp.msg}"
    return Answer(resp.status, resp.headers.get("Content-Type", ""), head,
                  body.decode("utf-8", "replace"), time.perf_counter() - start)


def forged_cursors(base: str) -> Iterator[hostile.Probe]:
    """Each paged endpoint's first page continued by its own cursor, then by that cursor
    forged (``hostile.forged_from``)."""
    for page in hostile.PAGED:
        answer = send(base, page)
        issued = json.loads(answer.text).get("next") if answer.status == 200 else None
        if not issued:
            raise RuntimeError(f"{page.method} {page.url}: {answer.status}, no next cursor")
        yield from hostile.forged_from(page, issued)


def every_case(base: str) -> Iterator[hostile.Probe]:
    """The whole battery against the service at ``base`` (its cursors asked for first)."""
    forged = list(forged_cursors(base))
    yield from hostile.battery()
    yield from wire_battery()
    yield from forged


def shown(probe: hostile.Probe) -> str:
    return f"{probe.method} {probe.url[:110]}"


@dataclass
class Run:
    """The outcome of a battery: every case's answer time and status, what was wrong."""

    times: list[tuple[float, int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run(base: str, probes: Iterable[hostile.Probe], clients: int = 1) -> Run:
    """Send ``probes`` from ``clients`` connections at a time (one: one after another, as
    timing needs) and judge every answer."""
    origin = f"{urlsplit(base).scheme}://{urlsplit(base).netloc}"
    outcome = Run()
    with ThreadPoolExecutor(clients) as pool:
        answers = pool.map(lambda probe: (probe, send(base, probe)), probes)
    for probe, answer in answers:
        found = [answer.error] if answer.error else hostile.judge(
            probe, answer.status, answer.content_type, answer.head, answer.text, origin)
        if found:
            outcome.failures.append(f"{shown(probe)}: {', '.join(found)}")
        outcome.times.append((answer.seconds, answer.status, shown(probe)))
    return outcome


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("--timing", action="store_true",
                        help="print every case's answer time, then the slowest")
    parser.add_argument("--slowest", type=int, default=5, help="how many slowest to list")
    parser.add_argument("--clients", type=int, default=1,
                        help="connections at a time (1 for --timing: an idle server)")
    args = parser.parse_args(argv)
    outcome = run(args.base, every_case(args.base), args.clients)
    after = send(args.base, hostile.Probe("GET", "/v1/spaces?limit=1"))
    if after.status != 200:
        outcome.failures.append(f"the service answers {after.status} after the battery")
    if args.timing:
        for seconds, status, what in outcome.times:
            print(f"{seconds:8.4f} s  {status}  {what}")
        print(f"\nslowest {args.slowest}:")
        for seconds, status, what in sorted(outcome.times, reverse=True)[:args.slowest]:
            print(f"{seconds:8.4f} s  {status}  {what}")
    print(f"{len(outcome.times)} hostile requests, {len(outcome.failures)} problems")
    print("\n".join(outcome.failures[:50]))
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
