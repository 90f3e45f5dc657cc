"""The docs a newcomer reads: every file they cite is in the repository, the reference
pages carry no commit hashes or clock times (the history is in CHANGES.md), docs/api.md
has a section per endpoint family, and ``make bench`` rewrites only the tables of
docs/benchmarks.md."""

from __future__ import annotations

import argparse
import fnmatch
import functools
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
# Pages rewritten or read as they are, which must not carry the notebook of their making.
NO_HISTORY = [ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "api.md"]
# The endpoint families of docs/api.md: each needs a heading that names it.
FAMILIES = {
    "health and readiness": r"health|ready",
    "search": r"search",
    "a single space": r"single space|\{id\}",
    "text search": r"text|\bq\b",
    "paging": r"pag|cursor",
    "tiles": r"tile",
    "coverage": r"coverage",
    "OGC API Features": r"OGC",
    "errors": r"error|problem",
    "limits": r"limit",
    "CORS": r"CORS",
    "backends": r"backend",
}

# A markdown link's target; a path in text (segments joined by /, not part of a URL or of
# an absolute path); a bare file name.
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./:~@-])((?:[\w-]+/)+(?:[\w.*-]*[\w*])?)")
BARE = re.compile(r"(?<![\w./:~@-])([\w-]+\.(?:md|py))\b")
# Extensions that make a slashed word a file path even outside the repository's folders.
FILE_SUFFIXES = (".md", ".py", ".lua", ".toml", ".cfg", ".ini", ".sql", ".sh")
# A commit hash: 7 to 40 hex digits, letters and digits both. A clock time: 10:23.
HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")
CLOCK = re.compile(r"(?<![\d.:])\d{1,2}:\d{2}(?![\d:])")


@functools.cache
def tracked() -> frozenset[str]:
    """The files in the repository (git's index)."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    return frozenset(out.splitlines())


def exists(path: str) -> bool:
    """Whether ``path`` (from the repository's root) is a tracked file, a folder holding
    some, or a pattern (``docs/embedding-*.md``) matching some."""
    path = path.rstrip("/")
    files = tracked()
    if "*" in path:
        return any(fnmatch.fnmatch(f, path) for f in files)
    return path in files or any(f.startswith(path + "/") for f in files)


def missing(text: str, folder: Path) -> list[str]:
    """The repository files that ``text``, a page in ``folder``, cites and that are not
    there."""
    files = tracked()
    folders = {f.split("/", 1)[0] for f in files if "/" in f}
    absent = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:|#", target):
            continue
        local = (folder / target.split("#", 1)[0]).resolve()
        if not exists(local.relative_to(ROOT).as_posix()):
            absent.append(target)
    for path in PATH.findall(text):
        if path.split("/", 1)[0] in folders:
            if not exists(path):
                absent.append(path)
        elif path.endswith(FILE_SUFFIXES) and not any(f.endswith("/" + path) for f in files):
            absent.append(path)
    names = {f.rsplit("/", 1)[-1] for f in files}
    absent += [name for name in BARE.findall(text) if name not in names]
    return absent


@pytest.mark.parametrize("doc", REFERENCE_DOCS, ids=lambda d: d.name)
def test_reference_docs_cite_only_files_in_the_repository(doc):
    assert missing(doc.read_text(), doc.parent) == []


def test_the_file_check_tells_files_from_urls_and_media_types():
    text = ("The contract is `shared/api.md`; design.md measured it; see tests/nothing.py, "
            "[the API](api.md), [nowhere](gone.md#x), [up](#limits), docs/embedding-*.md, "
            "geosearch/backends/, backends/prepared.py, `/v1/spaces/radius`, "
            "http://127.0.0.1:8000/ogc/api.md, application/vnd.mapbox-vector-tile, lon/lat.")
    assert missing(text, ROOT / "docs") == [
        "gone.md#x", "shared/api.md", "tests/nothing.py", "design.md", "gone.md"]


@pytest.mark.parametrize("doc", NO_HISTORY, ids=lambda d: d.name)
def test_reference_pages_carry_no_commit_hashes_or_clock_times(doc):
    text = doc.read_text()
    assert HASH.findall(text) == []
    assert CLOCK.findall(text) == []


def test_api_doc_has_a_heading_per_endpoint_family():
    headings = re.findall(r"^#{2,3} (.+)$", (ROOT / "docs" / "api.md").read_text(), re.M)
    assert len(headings) >= len(FAMILIES)
    assert [family for family, pattern in FAMILIES.items()
            if not any(re.search(pattern, h, re.I) for h in headings)] == []


# -- what make bench writes ----------------------------------------------------------------

@pytest.fixture(scope="module")
def bench():
    import bench_report  # scripts/bench_report.py, what make bench writes (pytest's pythonpath)

    return bench_report


def fake_run(bench, out: Path) -> tuple[argparse.Namespace, object]:
    """Arguments and a report of one row per table, as a run would make them."""
    row = bench.ratio_row
    report = bench.Report(inproc=[row("5k", "fake radius", "ours / floor", 1, 2, "0.50x")],
                          http=[row("5k", "fake radius", "memory", 1, 2, 3, 4, "0.25x")],
                          memory=[row("5k", "fake memory", 1, 2)],
                          notes=["- fake load: 1.0 s"],
                          tiles=[row("5k", 0, "1 / 2", "3 / 4", "3.00x", 0)],
                          text=[row("5k", "fake nearest + q", "memory", 1, 2, "0.50x")])
    return argparse.Namespace(queries=3, seconds=1, out=out), report


def test_a_run_rewrites_the_tables_and_keeps_the_reading_notes(bench, tmp_path, monkeypatch):
    committed = (ROOT / "docs" / "benchmarks.md").read_text()
    out = tmp_path / "benchmarks.md"
    out.write_text(committed)
    monkeypatch.setattr(bench, "machine", lambda: "a fake machine")
    args, report = fake_run(bench, out)
    bench.write_report(args, report, [bench.ratio_row("gevent", 1, 2, 3)])

    written = out.read_text()
    before, _, rest = committed.partition(bench.GENERATED_BEGIN)
    _, _, after = rest.partition(bench.GENERATED_END)
    assert written.startswith(before + bench.GENERATED_BEGIN)
    assert written.endswith(bench.GENERATED_END + after)
    assert "## How to read these tables" in after
    tables = written[len(before):len(written) - len(after)]
    assert "a fake machine" in tables
    for name in ("fake radius", "fake memory", "fake load", "fake nearest + q", "| gevent |"):
        assert name in tables
    assert "| 1M |" not in tables  # the committed run's rows are gone
    assert HASH.findall(written) == []


def test_a_run_writes_a_new_page_and_refuses_one_without_markers(bench, tmp_path,
                                                                monkeypatch):
    monkeypatch.setattr(bench, "machine", lambda: "a fake machine")
    args, report = fake_run(bench, tmp_path / "new" / "benchmarks.md")
    bench.write_report(args, report, [])
    first = args.out.read_text()
    assert first.startswith("# Benchmarks\n\n" + bench.GENERATED_BEGIN)
    assert first.rstrip().endswith(bench.GENERATED_END)
    assert "Worker classes" not in first  # no --servers, no such table
    bench.write_report(args, report, [])
    assert args.out.read_text() == first

    hand_written = "# Benchmarks\n\nNotes with no markers.\n"
    args.out.write_text(hand_written)
    with pytest.raises(ValueError, match="make bench writes"):
        bench.write_report(args, report, [])
    assert args.out.read_text() == hand_written


def test_the_committed_page_has_its_markers_once_and_in_order(bench):
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count(bench.GENERATED_BEGIN) == text.count(bench.GENERATED_END) == 1
    assert text.index(bench.GENERATED_BEGIN) < text.index(bench.GENERATED_END)
