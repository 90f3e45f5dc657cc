"""The checked argument types of the ``geosearch`` command line.

Each function takes the text of one argument and returns its value, or raises
:class:`argparse.ArgumentTypeError` saying what is valid: argparse then prints its usage
and one ``error:`` line naming the option, and exits with status 2, as for its own errors.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from geosearch.model import Amenity
from geosearch.reports.coverage import (
    MAX_POPULATION,
    MAX_RES,
    MAX_WALK_M,
    MIN_POPULATION,
    MIN_RES,
)

FEED_SUFFIXES = (".csv", ".geojson", ".json", ".parquet", ".geoparquet")
FEED_COLUMNS = {"id", "name", "lat", "lon"}


def _number(text: str, kind: Callable[[str], float], what: str) -> float:
    try:
        return kind(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An integer from ``low`` to ``high`` (both included; ``_`` allowed as in 100_000)."""

    def parse(text: str) -> int:
        value = int(_number(text, int, "an integer"))
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: expected an integer "
                                             f"from {low:,} to {high:,}")
        return value

    return parse


def walk_m(text: str) -> float:
    """A walking distance in metres: more than 0, at most MAX_WALK_M."""
    value = _number(text, float, "a number of metres")
    if not 0 < value <= MAX_WALK_M:
        raise argparse.ArgumentTypeError(f"{text} is out of range: expected metres above 0 "
                                         f"and at most {MAX_WALK_M:,.0f}")
    return value


def amenities(text: str) -> frozenset[Amenity]:
    """Amenity names separated by commas (the vocabulary of :class:`Amenity`)."""
    try:
        return Amenity.parse_set(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def countries(text: str) -> list[str]:
    """ISO 3166-1 alpha-2 codes separated by commas (whether the dataset knows them is the
    report's to say)."""
    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    bad = [c for c in codes if len(c) != 2 or not c.isascii() or not c.isalpha()]
    if bad or not codes:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected two-letter country codes separated by commas, e.g. DE,FR")
    return codes


PORT = int_in(1, 65_535)
RES = int_in(MIN_RES, MAX_RES)
MIN_POPULATION_ARG = int_in(MIN_POPULATION, MAX_POPULATION)
WORKERS = int_in(1, 64)


class FeedFolderError(Exception):
    """A feed path that names nothing, or a folder that holds no single feed file."""


def _could_be_feed(path: Path) -> bool:
    """Whether a file of a folder may be a feed: a GeoJSON or GeoParquet file, or a CSV
    whose header names the columns every feed has (id, name, lat, lon)."""
    suffix = path.suffix.lower()
    if suffix != ".csv":
        return suffix in FEED_SUFFIXES
    with path.open("rb") as f:
        head = f.readline(4096).decode("utf-8-sig", errors="replace")
    return {h.strip().strip('"').lower() for h in head.split(",")} >= FEED_COLUMNS


def feed_path(path: Path) -> Path:
    """The feed file ``path`` names: itself, or the only feed file of a folder (a CSV
    with the feed's columns, a GeoJSON or GeoParquet file). Raises
    :class:`FeedFolderError` saying what a folder must hold otherwise."""
    if not path.exists():
        raise FeedFolderError(f"{path}: no such file or folder")
    if not path.is_dir():
        return path
    found = sorted(p for p in path.iterdir() if p.is_file() and _could_be_feed(p))
    if len(found) == 1:
        return found[0]
    kinds = ", ".join(FEED_SUFFIXES)
    if not found:
        raise FeedFolderError(f"{path} is a folder with no feed file in it (expected one file "
                              f"ending {kinds}, a CSV with the columns id, name, lat, lon); "
                              f"give the feed file itself")
    names = ", ".join(p.name for p in found)
    raise FeedFolderError(f"{path} is a folder with {len(found)} files that could be the feed "
                          f"({names}); give the one to ingest, e.g. {found[0]}")
