"""The bench's report (scripts/bench.py): the tables the parts fill in, and how a run
writes them into docs/benchmarks.md between two marker lines, keeping the rest."""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_workload import (
    ATTACK_CONNECTIONS,
    FAIRNESS_ROUND_S,
    FAIRNESS_TARGET,
    HEAVIEST_TARGET_S,
    HTTP_PAIRS,
    HTTP_ROUNDS,
    NEAREST,
    READERS,
    READERS_KEEP_TARGET,
    VICTIM_RATE,
    WRITE_PAIRS,
    WRITE_SCALE_TARGET,
    WRITERS,
    WRITES_TARGET,
)


@dataclass
class Report:
    """Tables of the run, in Markdown."""

    inproc: list[str]
    http: list[str]
    memory: list[str]
    notes: list[str]
    tiles: list[str]
    text: list[str]
    fairness: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    writers: list[str] = field(default_factory=list)


def ratio_row(*cells: object) -> str:
    """A Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


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
        f"## Fairness (`geosearch serve` with its default per-client budget; a hostile "
        f"client on {ATTACK_CONNECTIONS} keep-alive connections from 127.0.0.2 sends the "
        f"heaviest anonymous requests in a loop; the victim, a map user on 1 connection "
        f"from 127.0.0.1, asks for the {NEAREST} at {VICTIM_RATE} a second: "
        f"{FAIRNESS_ROUND_S} s alone, then "
        f"{FAIRNESS_ROUND_S} s beside the attacker; all on this one machine)", "",
        "| spaces | backend | victim alone: req/s, p50 / p99 ms | victim attacked: req/s, "
        "p50 / p99 ms | "
        f"attacked / alone p50 (target <= {FAIRNESS_TARGET:g}x) | attacker requests "
        "(refused 429) | heaviest request ms, on an idle server (target <= "
        f"{HEAVIEST_TARGET_S * 1000:.0f}) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |", *report.fairness, "",
        "## Writes (over HTTP on PostGIS, after the reads; one write at a time on one "
        f"connection, {args.queries} of each after a warm-up)", "",
        "| spaces | write | p50 / p99 ms | target ms | 1M / 5k p50 (target <= "
        f"{WRITE_SCALE_TARGET:g}x) |", "| --- | --- | ---: | ---: | ---: |", *report.writes, "",
        f"## Writers beside readers ({WRITERS} writers without pause, 3 patches then a "
        f"create; {READERS} readers: wrk connections of radius searches; {WRITE_PAIRS} "
        f"pairs of {args.seconds} s reader rounds, alone and beside the writers)", "",
        f"| spaces | writes/s (target >= {WRITES_TARGET}) | readers alone req/s | readers "
        f"beside the writers req/s | beside / alone (target >= {READERS_KEEP_TARGET:g}x) |",
        "| --- | ---: | ---: | ---: | ---: |", *report.writers, "",
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

