"""Tiles and counts of the in-memory backend (:class:`MemoryTiles`): a map tile's spaces
or cluster cells from the :class:`~geosearch.tiles.TileIndex`, the matches of a list or
polygon query (every page's), and the spaces per amenity.
"""

from __future__ import annotations

import numpy as np

from geosearch.backends.memory_index import NO_ROWS, MemoryIndex
from geosearch.model import POINT_ZOOM, Amenity, ListQuery, PolygonQuery, TileQuery
from geosearch.tiles import TileFeatures, cell_shift


class MemoryTiles(MemoryIndex):
    """Map tiles and counts over the index."""

    def tile(self, query: TileQuery) -> TileFeatures:
        """The tile's spaces as points, or (below POINT_ZOOM) its cluster cells: from
        prefix sums without a filter, by grouping the tile's passing rows with one."""
        z, x, y, filters = query.z, query.x, query.y, query.filters
        index = self._tiles
        if z < POINT_ZOOM and filters.is_empty:
            first, count, world_x, world_y = index.cells(z, x, y)
            return self._tile_features(query, index.order[first], count, world_x, world_y)
        start, stop = index.span(z, x, y)
        rows, keys = index.order[start:stop], index.keys[start:stop]
        passing = self._passes(filters, rows)
        rows = rows[passing]
        if z >= POINT_ZOOM:
            return self._tile_features(query, rows, np.ones(len(rows), dtype=np.int64),
                                       index.x[rows], index.y[rows])
        if not len(rows):
            return self._tile_features(query, rows, NO_ROWS, index.x[rows], index.y[rows])
        cells = keys[passing] >> cell_shift(z)
        first = np.flatnonzero(np.concatenate(([True], cells[1:] != cells[:-1])))
        count = np.diff(np.append(first, len(rows)))
        world_x = np.add.reduceat(index.x[rows], first) / count
        world_y = np.add.reduceat(index.y[rows], first) / count
        return self._tile_features(query, rows[first], count, world_x, world_y)

    def _tile_features(self, query: TileQuery, rows: np.ndarray, count: np.ndarray,
                       world_x: np.ndarray, world_y: np.ndarray) -> TileFeatures:
        """Features at ``rows`` (a cluster's first space, or the one space of a cell):
        clusters keep their mean position, single spaces get their own attributes."""
        single = count == 1
        ids: list = [None] * len(rows)
        names: list = [None] * len(rows)
        amenities: list = [None] * len(rows)
        if single.any():
            at = np.flatnonzero(single)
            chosen = rows[at]
            world_x, world_y = world_x.copy(), world_y.copy()
            world_x[at], world_y[at] = self._tiles.x[chosen], self._tiles.y[chosen]
            for i, space_id, name, mask in zip(
                    at.tolist(), self.ids[chosen].tolist(),
                    self._names.take(chosen).to_pylist(),
                    self.mask[chosen].tolist(), strict=True):
                ids[i], names[i], amenities[i] = space_id, name, self._amenities_text(mask)
        return TileFeatures(query.z, query.x, query.y, world_x, world_y, count, ids, names,
                            amenities, self._version)

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
                    return self.size
                rows = np.arange(self.size)
        return int(np.count_nonzero(self._passes(query.filters, rows)))

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity."""
        return {a.value: len(self._by_amenity[a]) for a in Amenity}
