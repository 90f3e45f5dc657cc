"""Tiles and counts of the in-memory backend (:class:`MemoryTiles`): a map tile's spaces
or cluster cells from the :class:`~geosearch.tiles.TileIndex`, the matches of a list or
polygon query (every page's), and the spaces per amenity.

A tile is made in two steps: its cells (:class:`TileCells`: each cluster cell's count and
sums of positions, or each space from POINT_ZOOM up) from one index, then drawn
(:func:`draw`). A live follower's tile (:mod:`geosearch.backends.follower`) draws the
cells of two indexes as one: those of a key are one cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geosearch.backends.memory_index import NO_ROWS, MemoryIndex
from geosearch.model import POINT_ZOOM, Amenity, ListQuery, PolygonQuery, TileQuery
from geosearch.tiles import TileFeatures, cell_bounds, cell_shift

_NO_SUMS = np.empty(0, dtype=float)


@dataclass(frozen=True)
class TileCells:
    """A tile's features from one index, before they are drawn: each one's ``key`` (a
    cluster cell's, ``tile key >> cell_shift(z)``; a space's own tile key from POINT_ZOOM
    up), its ``count`` (at least 1), the sums of its spaces' world positions, and a row
    of the index in it (its space when the count is 1). In key order (then id order)."""

    key: np.ndarray
    count: np.ndarray
    sum_x: np.ndarray
    sum_y: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.count)


class MemoryTiles(MemoryIndex):
    """Map tiles and counts over the index."""

    def tile(self, query: TileQuery) -> TileFeatures:
        """The tile's spaces as points, or (below POINT_ZOOM) its cluster cells."""
        return draw(query, [(self, self.tile_cells(query))])

    def tile_cells(self, query: TileQuery) -> TileCells:
        """The tile's cells (:class:`TileCells`): from prefix sums without a filter, by
        grouping the tile's passing rows with one; its spaces from POINT_ZOOM up."""
        z, x, y, filters = query.z, query.x, query.y, query.filters
        index = self._tiles
        if z < POINT_ZOOM and filters.is_empty:
            return self._summed_cells(z, x, y)
        start, stop = index.span(z, x, y)
        rows, keys = index.order[start:stop], index.keys[start:stop]
        passing = self._passes(filters, rows)
        rows, keys = rows[passing], keys[passing]
        if z >= POINT_ZOOM:
            return TileCells(keys, np.ones(len(rows), dtype=np.int64), index.x[rows],
                             index.y[rows], rows)
        if not len(rows):
            return TileCells(NO_ROWS, NO_ROWS, _NO_SUMS, _NO_SUMS, NO_ROWS)
        cells = keys >> cell_shift(z)
        first = np.flatnonzero(np.concatenate(([True], cells[1:] != cells[:-1])))
        count = np.diff(np.append(first, len(rows)))
        return TileCells(cells[first], count, np.add.reduceat(index.x[rows], first),
                         np.add.reduceat(index.y[rows], first), rows[first])

    def _summed_cells(self, z: int, x: int, y: int) -> TileCells:
        """The tile's cluster cells, unfiltered, from the prefix sums: each cell's count
        and sums from the sums at its bounds, less the rows a view hides in it."""
        index = self._tiles
        edges = cell_bounds(z, x, y)
        bounds = np.searchsorted(index.keys, edges)
        first, last = bounds[:-1], bounds[1:]
        count = last - first
        sum_x = index.prefix_x[last] - index.prefix_x[first]
        sum_y = index.prefix_y[last] - index.prefix_y[first]
        rows = index.order[np.minimum(first, max(index.count - 1, 0))] if index.count else (
            np.zeros(len(first), dtype=np.int64))
        low, high = np.searchsorted(self._hidden_at, [bounds[0], bounds[-1]])
        if high > low:  # hidden rows in the tile: out of their cells' counts and sums
            at = self._hidden_at[low:high]
            cell = np.searchsorted(bounds, at, side="right") - 1
            gone = index.order[at]
            count = count - np.bincount(cell, minlength=len(count))
            sum_x = sum_x - np.bincount(cell, weights=index.x[gone], minlength=len(count))
            sum_y = sum_y - np.bincount(cell, weights=index.y[gone], minlength=len(count))
            for c in np.flatnonzero((count == 1) & np.isin(np.arange(len(count)), cell)):
                shown = np.setdiff1d(np.arange(first[c], last[c]), at)  # the one space
                rows[c] = index.order[shown[0]]
        full = count > 0
        return TileCells(edges[:-1][full] >> cell_shift(z), count[full], sum_x[full],
                         sum_y[full], rows[full])

    def singles(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list, list, list]:
        """What a tile draws of each of the spaces ``rows``: world x and y, ids, names
        and amenities (comma-separated names)."""
        return (self._tiles.x[rows], self._tiles.y[rows], self.ids[rows].tolist(),
                self._names.take(rows).to_pylist(),
                [self._amenities_text(mask) for mask in self.mask[rows].tolist()])

    def tile_mvt(self, query: TileQuery) -> tuple[bytes, str]:
        """The tile as MVT bytes, and the snapshot's version."""
        return self.tile(query).mvt(), self._version

    def _amenities_text(self, mask: int) -> str:
        """The amenities of a bitmask as comma-separated names, in vocabulary order."""
        text = self._amenity_text.get(mask)
        if text is None:
            text = self._amenity_text[mask] = ",".join(a.value for a in Amenity
                                                       if mask & a.bit)
        return text

    def count(self, query: ListQuery | PolygonQuery) -> int:
        """Matches of every page: the area's points (or the smallest posting list, or
        every row) that pass the filters."""
        self._serves(query.version)
        if isinstance(query, PolygonQuery):
            rows = self._strtree.query(query.area, predicate="covers")
        else:
            rows = self._posting(query.filters)
            if rows is None:
                if query.filters.is_empty:
                    return self.size - len(self._hidden_rows)
                rows = np.arange(self.size)
        return int(np.count_nonzero(self._passes(query.filters, rows)))

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity (but those a view hides)."""
        hidden = self.mask[self._hidden_rows]
        return {a.value: len(self._by_amenity[a]) - int(np.count_nonzero(hidden & a.bit))
                for a in Amenity}


def draw(query: TileQuery, parts: Sequence[tuple[MemoryTiles, TileCells]]) -> TileFeatures:
    """The tile's features from the cells of one index or more (a follower's base and
    overlay, which hold no space twice): below POINT_ZOOM the cells of one key are one
    cluster, at its spaces' mean position; a cell of one space is that space, drawn with
    its own position and attributes. Features in key order, then id order."""
    if len(parts) == 1:
        (_, cells), = parts
        part = np.zeros(len(cells), dtype=np.int64)
        key, count, sum_x, sum_y, rows = (cells.key, cells.count, cells.sum_x, cells.sum_y,
                                          cells.rows)
    else:
        key, count, sum_x, sum_y, rows = (np.concatenate([getattr(c, name) for _, c in parts])
                                          for name in ("key", "count", "sum_x", "sum_y",
                                                       "rows"))
        part = np.repeat(np.arange(len(parts)), [len(c) for _, c in parts])
        ids = np.concatenate([index.ids[c.rows] for index, c in parts])
        order = np.lexsort((ids, key))
        key, count, sum_x, sum_y, rows, part = (a[order] for a in (key, count, sum_x, sum_y,
                                                                  rows, part))
        if query.z < POINT_ZOOM and len(key):  # the cells of a key: one cluster
            first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
            key, rows, part = key[first], rows[first], part[first]
            count, sum_x, sum_y = (np.add.reduceat(a, first) for a in (count, sum_x, sum_y))
    world_x, world_y = sum_x / np.maximum(count, 1), sum_y / np.maximum(count, 1)
    n = len(count)
    ids_out: list = [None] * n
    names: list = [None] * n
    amenities: list = [None] * n
    single = np.flatnonzero(count == 1)
    for p, (index, _) in enumerate(parts):
        at = single[part[single] == p]
        if not at.size:
            continue
        world_x[at], world_y[at], got_ids, got_names, got_amenities = index.singles(rows[at])
        for i, space_id, name, text in zip(at.tolist(), got_ids, got_names, got_amenities,
                                           strict=True):
            ids_out[i], names[i], amenities[i] = space_id, name, text
    return TileFeatures(query.z, query.x, query.y, world_x, world_y, count, ids_out, names,
                        amenities, parts[0][0]._version)
