"""The memory backend's term-prefix index (:mod:`geosearch.text` says what matches)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from geosearch.text import prefix_bounds


class TextIndex:
    """A term-prefix index of the spaces' words, built once per dataset (memory backend).

    The vocabulary is sorted, so that the words a term is a prefix of are one range of
    word numbers. Rows keep their word numbers (to test candidates of a geographic
    search), and each word keeps its rows, in word order (so that a term's rows are one
    slice: the posting list of a selective ``q``).
    """

    def __init__(self, row_words: pa.ListArray | pa.ChunkedArray, rows: int) -> None:
        if isinstance(row_words, pa.ChunkedArray):
            row_words = row_words.combine_chunks()
        flat = pc.list_flatten(row_words)
        parent = pc.list_parent_indices(row_words).to_numpy().astype(np.int64)
        encoded = flat.dictionary_encode() if len(flat) else pa.array([], pa.string())
        vocabulary = np.array(encoded.dictionary.to_pylist() if len(flat) else [], dtype=str)
        order = np.argsort(vocabulary, kind="stable")
        self.vocabulary = vocabulary[order]
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        word = rank[encoded.indices.to_numpy()] if len(flat) else np.empty(0, np.int64)
        self.row_words = word  # grouped by row, in row order
        self.row_start = np.searchsorted(parent, np.arange(rows + 1))
        by_word = np.argsort(word, kind="stable")  # rows stay in order within a word
        self.word_rows = parent[by_word]
        self.word_start = np.searchsorted(word[by_word], np.arange(len(order) + 1))

    def words_of(self, term: str) -> tuple[int, int]:
        """The range of word numbers that ``term`` is a prefix of."""
        low, high = np.searchsorted(self.vocabulary, prefix_bounds(term))
        return int(low), int(high)

    def estimate(self, term: str) -> int:
        """An upper bound of the rows ``term`` matches (its words' postings)."""
        low, high = self.words_of(term)
        return int(self.word_start[high] - self.word_start[low])

    def rarest(self, terms: Iterable[str]) -> tuple[str, int]:
        """The term with the fewest rows (by :meth:`estimate`), and that estimate."""
        return min(((t, self.estimate(t)) for t in terms), key=lambda pair: pair[1])

    def rows(self, term: str) -> np.ndarray:
        """The sorted rows with a word that ``term`` is a prefix of."""
        low, high = self.words_of(term)
        found = self.word_rows[self.word_start[low]:self.word_start[high]]
        if high - low <= 1:  # one word's rows: sorted and distinct already
            return found
        found = np.sort(found)
        return found[np.concatenate(([True], found[1:] != found[:-1]))]

    def matches(self, terms: Iterable[str], idx: np.ndarray) -> np.ndarray:
        """Which of the rows ``idx`` have, for every term, a word it is a prefix of."""
        starts, stops = self.row_start[idx], self.row_start[idx + 1]
        counts = stops - starts
        # every word number of the rows, row after row, and the row each belongs to
        owner = np.repeat(np.arange(len(idx)), counts)
        flat = self.row_words[np.repeat(starts - np.cumsum(counts) + counts, counts)
                              + np.arange(int(counts.sum()))]
        ok = np.ones(len(idx), dtype=bool)
        for term in terms:
            low, high = self.words_of(term)
            hit = np.zeros(len(idx), dtype=bool)
            hit[owner[(flat >= low) & (flat < high)]] = True
            ok &= hit
        return ok
