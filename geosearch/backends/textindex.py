"""The memory backend's term-prefix index (:mod:`geosearch.text` says what matches)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.spatial import cKDTree

from geosearch.features import ranked_words
from geosearch.geo import chords_from
from geosearch.text import prefix_bounds

# A word with at least this many rows gets a k-d tree of them (smaller ones are scanned).
TREE_ROWS = 1024


def _spans(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The positions ``starts[i]`` to ``stops[i] - 1`` of every i, one after the other."""
    counts = (stops - starts).ravel()
    return np.repeat(starts.ravel() - np.cumsum(counts) + counts, counts) \
        + np.arange(int(counts.sum()))


class TextIndex:
    """A term-prefix index of the spaces' words, built once per dataset (memory backend).

    The vocabulary is sorted, so that the words a term is a prefix of are one range of
    word numbers. Rows keep their word numbers (to test candidates of a geographic
    search), and each word keeps its rows, in word order (so that a term's rows are one
    slice: the posting list of a selective ``q``). A word of at least
    :data:`TREE_ROWS` rows also has a k-d tree of its rows' Earth-centred coordinates
    (``xyz``), so that its rows nearest a place are found without scanning its list.
    """

    def __init__(self, row_words: pa.ListArray | pa.ChunkedArray, rows: int,
                 xyz: np.ndarray) -> None:
        if isinstance(row_words, pa.ChunkedArray):
            row_words = row_words.combine_chunks()
        parent = pc.list_parent_indices(row_words).to_numpy().astype(np.int64)
        self.vocabulary, word = ranked_words(pc.list_flatten(row_words))
        self.row_words = word  # grouped by row, in row order
        self.row_start = np.searchsorted(parent, np.arange(rows + 1))
        by_word = np.argsort(word, kind="stable")  # rows stay in order within a word
        self.word_rows = parent[by_word]
        self.word_start = np.searchsorted(word[by_word], np.arange(len(self.vocabulary) + 1))
        self._xyz = xyz
        sizes = np.diff(self.word_start)
        self._trees = {w: cKDTree(xyz[self._rows_of(w)])
                       for w in np.flatnonzero(sizes >= TREE_ROWS).tolist()}

    def _rows_of(self, word: int) -> np.ndarray:
        """The rows that have the word numbered ``word``, in row order."""
        return self.word_rows[self.word_start[word]:self.word_start[word + 1]]

    def words_of(self, term: str) -> tuple[int, int]:
        """The range of word numbers that ``term`` is a prefix of."""
        low, high = np.searchsorted(self.vocabulary, prefix_bounds(term))
        return int(low), int(high)

    def rarest(self, terms: Iterable[str]) -> tuple[str, tuple[int, int], int]:
        """The term with the fewest rows, the range of words it is a prefix of, and an
        upper bound of its rows (its words' postings)."""
        found = []
        for term in terms:
            low, high = self.words_of(term)
            found.append((term, (low, high), int(self.word_start[high] - self.word_start[low])))
        return min(found, key=lambda t: t[2])

    def rows(self, term: str) -> np.ndarray:
        """The sorted rows with a word that ``term`` is a prefix of."""
        low, high = self.words_of(term)
        found = self.word_rows[self.word_start[low]:self.word_start[high]]
        if high - low <= 1:  # one word's rows: sorted and distinct already
            return found
        found = np.sort(found)
        return found[np.concatenate(([True], found[1:] != found[:-1]))]

    def nearest(self, words: tuple[int, int], centre: np.ndarray, count: int
                ) -> tuple[np.ndarray, np.ndarray, float]:
        """The rows with a word in ``words`` nearest to an Earth-centred point: at least
        the ``count`` nearest by chord (once each), their chords, and the reach: the
        chord within which every such row is among them (infinite when all are)."""
        found, chords, reach = [], [], math.inf
        for w in range(*words):
            tree = self._trees.get(w)
            if tree is None:  # few rows: all of them
                rows = self._rows_of(w)
                found.append(rows)
                chords.append(chords_from(centre, self._xyz[rows]))
                continue
            chord, at = (np.atleast_1d(a) for a in tree.query(centre, k=min(count, tree.n)))
            found.append(self.word_rows[self.word_start[w] + at])
            chords.append(chord)
            if count < tree.n:
                reach = min(reach, float(chord[-1]))
        rows, chord = np.concatenate(found), np.concatenate(chords)
        if words[1] - words[0] > 1:  # a row can have two of the words
            rows, first = np.unique(rows, return_index=True)
            chord = chord[first]
        return rows, chord, reach

    def within(self, words: tuple[int, int], centre: np.ndarray, reach: float) -> np.ndarray:
        """The rows with a word in ``words`` within the chord ``reach`` of an
        Earth-centred point, once each, unordered."""
        found = []
        for w in range(*words):
            tree = self._trees.get(w)
            if tree is None:
                rows = self._rows_of(w)
                found.append(rows[chords_from(centre, self._xyz[rows]) <= reach])
            else:
                at = np.asarray(tree.query_ball_point(centre, reach), dtype=np.int64)
                found.append(self.word_rows[self.word_start[w] + at])
        rows = np.concatenate(found)
        return np.unique(rows) if words[1] - words[0] > 1 else rows

    def matches(self, terms: Iterable[str], idx: np.ndarray) -> np.ndarray:
        """Which of the rows ``idx`` have, for every term, a word it is a prefix of."""
        starts, stops = self.row_start[idx], self.row_start[idx + 1]
        # every word number of the rows, row after row, and the row each belongs to
        owner = np.repeat(np.arange(len(idx)), stops - starts)
        flat = self.row_words[_spans(starts, stops)]
        ok = np.ones(len(idx), dtype=bool)
        for term in terms:
            low, high = self.words_of(term)
            hit = np.zeros(len(idx), dtype=bool)
            hit[owner[(flat >= low) & (flat < high)]] = True
            ok &= hit
        return ok
