"""What a write returns, and the change feed's entries, as the HTTP client
(:mod:`geosearch.client`) and the library (:class:`geosearch.Geosearch`) both give them.

A space's revision counts its writes (1 when created, one more per replace, patch and
close); it is the number in the space's ``ETag``. A write made against a revision that is
no longer the space's own is refused, so that no update is lost: read the space (its
:class:`Revised`), change it, write it back naming ``revised.revision``.

Only the model is imported here: the client stays free of the server's stack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from geosearch.model import FEATURE_PROPERTIES, Space

# The status a closed space is stored with (a close entry's space is the last one served)
CLOSED = "inactive"
Wait = TypeVar("Wait", int, float)  # seconds: whole ones over HTTP


@dataclass(frozen=True, slots=True)
class Revised:
    """A space as a write left it (or as read for a write), and its revision."""

    space: Space
    revision: int


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change feed: ``op`` is ``create``, ``replace``, ``update`` (a
    patch), ``close`` or ``dataset`` (an ingest replaced the dataset: no ``id``, no
    ``space``); ``actor`` names who made it (a key's name, or a library's actor);
    ``space`` is the space as the change left it (as it was last served, for a close)."""

    seq: int
    op: str
    id: str | None
    revision: int | None
    previous_revision: int | None
    at: datetime
    actor: str
    dataset_version: str
    space: Space | None


@dataclass(frozen=True, slots=True)
class ChangePage:
    """The entries after a seq, in seq order, and the ``next_since`` to ask from next
    (the last entry's seq; the same ``since`` when there was none)."""

    changes: tuple[Change, ...]
    next_since: int


def checked_revision(revision: int) -> int:
    """``revision``, when it can be a space's: a positive integer."""
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise ValueError(f"a revision is a positive integer (Revised.revision), not "
                         f"{revision!r:.40}")
    return revision


def space_of(feature: Mapping, status: str = "active") -> Space:
    """The :class:`Space` of a served Feature (its properties read by name; others, such
    as a search's ``distance_m``, ignored)."""
    props = feature["properties"]
    lon, lat = feature["geometry"]["coordinates"][:2]
    return Space(id=feature["id"], lat=lat, lon=lon, status=status,
                 amenities=tuple(props["amenities"]),
                 **{k: props[k] for k in FEATURE_PROPERTIES if k != "amenities"})


def change_of(entry: Mapping) -> Change:
    """A feed entry as ``GET /v1/changes`` writes it."""
    space = entry["space"]
    return Change(
        seq=entry["seq"], op=entry["op"], id=entry["id"], revision=entry["revision"],
        previous_revision=entry["previous_revision"], at=datetime.fromisoformat(entry["at"]),
        actor=entry["actor"], dataset_version=entry["dataset_version"],
        space=None if space is None else space_of(
            space, CLOSED if entry["op"] == "close" else "active"))


def page_of(body: Mapping) -> ChangePage:
    """An answer of ``GET /v1/changes``."""
    return ChangePage(tuple(change_of(e) for e in body["changes"]), int(body["next_since"]))


def follow(changes: Callable[[int, int, Wait], ChangePage], since: int, limit: int,
           wait: Wait) -> Iterator[Change]:
    """Every entry after ``since``, for ever: ``changes(since, limit, wait)`` (which waits
    up to ``wait`` seconds for the next commit when there is none) asked again from each
    answer's ``next_since``."""
    if not wait > 0:
        raise ValueError("following the feed waits for each next change: wait must be "
                         "more than 0 seconds")
    while True:
        page = changes(since, limit, wait)
        yield from page.changes
        since = page.next_since
