"""A process's copy of the PostGIS ``search_words`` table: how many spaces a text term
matches, and whether its words are in the word plane, without a round trip per query.

A nearest query with ``q`` asks it which way to search (:meth:`PostgisBackend.nearest`):
in the word plane (:mod:`geosearch.wordplane`) when the rarest term has few words, all
in it; else ranking the rarest term's own spaces when it is rare, or walking outwards
from the origin. The copy only chooses: each way is exact whatever the counts say, and
the word plane's statements read the tiles of the term's words from ``search_words``
itself, in their own snapshot (:class:`Plane`), so that a word a write added since the
copy was read is searched too. Writes never take a tile away: a word keeps its tile (a
word without one never gets one) and a word new to the dataset gets a tile above every
other, so the words a copy names as all tiled stay so, and the table's largest tile
tells whether a write added a word.

The copy follows the table: it is checked against ``dataset_state`` and the largest tile
at most every :data:`CHECK_EVERY_S` seconds and read again when either changed (a load,
or a write that added a word). A copy that is late (a load, or counts that writes
changed since) only makes the choice less apt.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from threading import Lock

from geosearch.text import prefix_bounds

CHECK_EVERY_S = 10.0
# A term of more words than this is not searched in the word plane (a walk per word)
PLANE_WORDS = 8
# One row: the dataset's version, its spaces in the map's square and the largest tile of
# the word plane (an index's end: search_words_tile)
STATE_SQL = ("SELECT version, tile_count, (SELECT max(tile) FROM search_words) AS last_tile "
             "FROM dataset_state")
# "C" order is code point order, the order of :func:`geosearch.text.prefix_bounds`
WORDS_SQL = 'SELECT word, spaces, tile FROM search_words ORDER BY word COLLATE "C"'


@dataclass(frozen=True)
class Plane:
    """A term's ``words`` in the word plane, as of a dataset ``version``: those from the
    first bound up to the second (code point order: :func:`geosearch.text.prefix_bounds`),
    each with a tile. The statements read their tiles from ``search_words`` in the
    snapshot that reads the plane, a word new since the copy included."""

    words: tuple[str, str]
    version: str


@dataclass(frozen=True)
class Lookup:
    """A query's terms in the copy: ``matches``, the spaces of the rarest term (an upper
    bound: the sum over the words it is a prefix of); ``total``, the dataset's size (its
    spaces in the square of the map tiles: all but those within 5° of a pole); ``plane``,
    the rarest term's words when it is a prefix of at most PLANE_WORDS words (one at
    least), all with a tile in the word plane, else None. All as of the copy: they
    choose the way to search, never what it finds."""

    matches: int
    total: int
    plane: Plane | None


class TermCounts:
    """The words of the dataset and their spaces, from ``fetch(sql, params) -> rows``
    (a backend's read on any node)."""

    def __init__(self, fetch: Callable[[str, dict], list]) -> None:
        self._fetch = fetch
        self._lock = Lock()
        self._checked = -float("inf")
        # the words in order, the spaces of the words before each, the words' tiles, the
        # dataset's spaces, its version and largest tile (one tuple: threads read it whole)
        self._table: tuple[list[str], list[int], list[int | None], int, str | None,
                           int | None] = ([], [0], [], 0, None, None)

    def lookup(self, terms: Iterable[str]) -> Lookup:
        """What the copy says of a query's terms (:class:`Lookup`). Raises as ``fetch``
        does (NoDataset before the first load)."""
        self._follow()
        words, before, tiles, total, version, _ = self._table
        spans = [(bisect_left(words, low), bisect_left(words, high), (low, high))
                 for low, high in map(prefix_bounds, terms)]
        matches, first, end, bounds = min(((before[end] - before[first], first, end, bounds)
                                           for first, end, bounds in spans),
                                          default=(0, 0, 0, ("", "")))
        word_tiles = tiles[first:end]
        plane = (Plane(bounds, version)
                 if 0 < len(word_tiles) <= PLANE_WORDS and None not in word_tiles
                 and version is not None else None)
        return Lookup(matches, total, plane)

    def expire(self) -> None:
        """Check the dataset's version at the next question (a query met another)."""
        self._checked = -float("inf")

    def _follow(self) -> None:
        """Read the table again when the dataset's version or its largest tile changed
        (checked at most every CHECK_EVERY_S seconds, by one thread at a time)."""
        if time.monotonic() - self._checked < CHECK_EVERY_S or not self._lock.acquire(False):
            return
        try:
            state = self._fetch(STATE_SQL, {})
            version, tile_count, last_tile = state[0] if state else (None, 0, None)
            total = int(tile_count or 0)
            if (version, last_tile) != self._table[4:]:
                rows = self._fetch(WORDS_SQL, {}) if version is not None else []
                self._table = ([w for w, _, _ in rows],
                               [0, *accumulate(int(n) for _, n, _ in rows)],
                               [tile for _, _, tile in rows], total, version, last_tile)
            self._checked = time.monotonic()
        finally:
            self._lock.release()
