"""A process's copy of the PostGIS ``search_words`` table: how many spaces a text term
matches, without a round trip per query.

A nearest query with ``q`` asks it whether the rarest term is rare enough to rank its own
spaces rather than walk outwards from the origin (:meth:`PostgisBackend.nearest`). The
copy follows the dataset: it is checked against ``dataset_state`` at most every
:data:`CHECK_EVERY_S` seconds and read again when the version changed. A copy that is a
little late only makes that choice less apt; the answer does not depend on it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from itertools import accumulate
from threading import Lock

from geosearch.text import prefix_bounds

CHECK_EVERY_S = 10.0
STATE_SQL = "SELECT version, tile_count FROM dataset_state"
# "C" order is code point order, the order of :func:`geosearch.text.prefix_bounds`
WORDS_SQL = 'SELECT word, spaces FROM search_words ORDER BY word COLLATE "C"'


class TermCounts:
    """The words of the dataset and their spaces, from ``fetch(sql, params) -> rows``
    (a backend's read on any node)."""

    def __init__(self, fetch: Callable[[str, dict], list]) -> None:
        self._fetch = fetch
        self._lock = Lock()
        self._checked = -float("inf")
        self._version: str | None = None
        # the words in order, the spaces of the words before each, the dataset's spaces
        self._table: tuple[list[str], list[int], int] = ([], [0], 0)

    def rarest(self, terms: Iterable[str]) -> tuple[int, int]:
        """The spaces of the rarest term (an upper bound: the sum over the words it is a
        prefix of) and the dataset's size (its spaces in the square of the map tiles:
        all of them but those within 5° of a pole). Raises as ``fetch`` does
        (NoDataset before the first load)."""
        self._follow()
        words, before, total = self._table
        counts = [before[bisect_left(words, high)] - before[bisect_left(words, low)]
                  for low, high in map(prefix_bounds, terms)]
        return min(counts, default=0), total

    def _follow(self) -> None:
        """Read the table again when the dataset's version changed (checked at most every
        CHECK_EVERY_S seconds, by one thread at a time)."""
        if time.monotonic() - self._checked < CHECK_EVERY_S or not self._lock.acquire(False):
            return
        try:
            state = self._fetch(STATE_SQL, {})
            version, total = (state[0][0], int(state[0][1] or 0)) if state else (None, 0)
            if version != self._version:
                rows = self._fetch(WORDS_SQL, {}) if version is not None else []
                self._table = ([w for w, _ in rows], [0, *accumulate(int(n) for _, n in rows)],
                               total)
                self._version = version
            self._checked = time.monotonic()
        finally:
            self._lock.release()
