"""How far the cells of a coverage grid are from the nearest counted space.

A :class:`Reach` is one set of spaces measured against the grid of one resolution with
one amenity filter. It does not depend on the walking distance or on the smallest city,
so every report that differs only in those shares it (the API keeps it between
requests), and it measures only the rows asked for, once:

- the nearest counted space of a cell, by chord in Earth-centred coordinates (a k-d
  tree), and the chord itself, for the rows a report includes;
- the exact geodesic to that space only where a distance is shown (a country's cities
  and hexes);
- whether a cell is covered, from the chord where it decides: a chord longer than
  :func:`~geosearch.geo.chord_at_most` of the walk is out of reach, one whose
  :func:`~geosearch.geo.geodesic_at_most` is within it is in reach; the few cells in
  between are measured exactly. So the answer is the exact geodesic's, without measuring
  every cell;
- the counted spaces in a cell, from the H3 cells of only the spaces near the cells
  asked for (a ball query in the same tree), each space's cell computed once: the
  country and city tables need none.
"""

from __future__ import annotations

from itertools import repeat

import h3
import h3.api.basic_int as h3i
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from geosearch.geo import chord_at_most, ecef, geodesic_at_most, geodesic_m
from geosearch.model import Amenity
from geosearch.reports.grid import city_grid, rows_of
from geosearch.reports.spaces import SpaceArrays

# Above this many cells asked at once, every counted space gets its H3 cell rather than
# those found by a ball query around each cell.
BALLS_UP_TO = 20_000


class Reach:
    """The counted spaces of ``spaces`` (those with every one of ``amenities``) against
    the grid of ``res``.

    ``spaces`` is a :class:`~geosearch.reports.spaces.SpaceArrays`, or a frame with the
    columns lat, lon, country, amenities (made into one); :attr:`counted` says which of
    them count. What it measures it keeps in arrays over the whole grid, filled as rows
    are asked for: one thread at a time (the API measures under a lock).
    """

    def __init__(self, spaces: SpaceArrays | pd.DataFrame, res: int,
                 amenities: frozenset[Amenity] = frozenset()) -> None:
        self.res = res
        self.amenities = amenities
        self.spaces = (spaces if isinstance(spaces, SpaceArrays)
                       else SpaceArrays.from_frame(spaces))
        self.counted = self.spaces.with_all(amenities)
        self.at = np.flatnonzero(self.counted).astype(np.int32)
        # the counted spaces in Earth-centred coordinates (None: no space is counted)
        self.tree = (cKDTree(ecef(self.spaces.lat[self.at], self.spaces.lon[self.at]),
                             balanced_tree=False, compact_nodes=False)
                     if len(self.at) else None)
        # the H3 cell of each counted space (0: not computed yet; no cell is 0)
        self._cells = np.zeros(len(self.at), dtype=np.uint64)
        self.grid = city_grid(res)
        n = len(self.grid)
        # per grid row: the nearest counted space and the chord to it (NaN: not looked
        # up yet), the exact geodesic to it (NaN: not measured yet)
        self._nearest = np.zeros(n, dtype=np.int32)
        self._chord = np.full(n, np.nan)
        self._metres = np.full(n, np.nan)
        # per grid row: the counted spaces in the cell (-1: not counted yet)
        self._spaces = np.full(n, -1, dtype=np.int32)

    @property
    def nbytes(self) -> int:
        """The memory it holds of its own: the counted positions, the k-d tree's points
        and what it measured (the spaces' arrays and the grid are shared)."""
        tree = 0 if self.tree is None else self.tree.data.nbytes + self.tree.indices.nbytes
        return (self.counted.nbytes + self.at.nbytes + self._cells.nbytes + tree
                + self._nearest.nbytes + self._chord.nbytes + self._metres.nbytes
                + self._spaces.nbytes)

    def spaces_in(self, rows: np.ndarray) -> np.ndarray:
        """The counted spaces in the cell of each of the grid's ``rows``.

        Only the spaces that can lie in those cells get their H3 cell computed: those
        whose chord to a cell's centre is within twice the resolution's mean edge (the
        farthest point of any cell is within 1.1 of it), or every counted space when the
        rows are many."""
        todo = rows[self._spaces[rows] < 0]
        if len(todo):
            self._spaces[todo] = 0
            if self.tree is not None:
                if len(todo) > BALLS_UP_TO:
                    near = np.arange(len(self.at))
                else:
                    centres = ecef(self.grid["lat"].to_numpy()[todo],
                                   self.grid["lon"].to_numpy()[todo])
                    reach = 2 * h3.average_hexagon_edge_length(self.res, unit="m")
                    balls = self.tree.query_ball_point(centres, r=reach, return_sorted=False)
                    near = np.unique(np.concatenate(
                        [np.asarray(b, dtype=np.intp) for b in balls]))
                found = rows_of(self.res, self._cells_of(near))
                wanted = np.zeros(len(self._spaces), dtype=bool)
                wanted[todo] = True
                found = found[found >= 0]
                self._spaces += np.bincount(found[wanted[found]],
                                            minlength=len(self._spaces)).astype(np.int32)
        return self._spaces[rows]

    def _cells_of(self, near: np.ndarray) -> np.ndarray:
        """The H3 cells of the counted spaces ``near`` (positions in :attr:`at`),
        computed once each."""
        todo = near[self._cells[near] == 0]
        at = self.at[todo]
        self._cells[todo] = np.fromiter(
            map(h3i.latlng_to_cell, self.spaces.lat[at].tolist(), self.spaces.lon[at].tolist(),
                repeat(self.res)), dtype=np.uint64, count=len(todo))
        return self._cells[near]

    def _looked_up(self, rows: np.ndarray) -> None:
        """Find the nearest counted space of each of ``rows`` not looked up yet."""
        todo = rows[np.isnan(self._chord[rows])]
        if not len(todo):
            return
        if self.tree is None:
            self._chord[todo] = np.inf
            return
        grid = self.grid
        points = ecef(grid["lat"].to_numpy()[todo], grid["lon"].to_numpy()[todo])
        self._chord[todo], self._nearest[todo] = self.tree.query(points.reshape(-1, 3))

    def metres(self, rows: np.ndarray) -> np.ndarray:
        """The geodesic metres from the centre of each of the grid's ``rows`` to the nearest
        counted space (infinite when none is counted)."""
        self._looked_up(rows)
        todo = rows[np.isnan(self._metres[rows])]
        if len(todo):
            if self.tree is None:
                self._metres[todo] = np.inf
            else:
                near = self.at[self._nearest[todo]]
                self._metres[todo] = geodesic_m(
                    self.grid["lat"].to_numpy()[todo], self.grid["lon"].to_numpy()[todo],
                    self.spaces.lat[near], self.spaces.lon[near])
        return self._metres[rows]

    def covered(self, rows: np.ndarray, walk_m: float) -> np.ndarray:
        """Whether the nearest counted space is within ``walk_m`` (geodesic) of the centre
        of each of ``rows``: what ``metres(rows) <= walk_m`` says, measuring only the cells
        whose chord leaves it open."""
        self._looked_up(rows)
        chord = self._chord[rows]
        near = geodesic_at_most(chord) <= walk_m
        open_ = ~near & (chord <= chord_at_most(walk_m))
        near[open_] = self.metres(rows[open_]) <= walk_m
        return near
