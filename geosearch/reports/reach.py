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
  every cell.
"""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from geosearch.geo import chord_at_most, ecef, geodesic_at_most, geodesic_m
from geosearch.model import Amenity
from geosearch.reports.grid import city_grid, rows_of


class Reach:
    """The counted spaces of ``spaces`` (those with every one of ``amenities``) against
    the grid of ``res``.

    ``spaces`` has the columns id, lat, lon, country, city, amenities; :attr:`spaces` is
    it with a ``counted`` column. What it measures it keeps in arrays over the whole grid,
    filled as rows are asked for: one thread at a time (the API measures under a lock).
    """

    def __init__(self, spaces: pd.DataFrame, res: int,
                 amenities: frozenset[Amenity] = frozenset()) -> None:
        self.res = res
        self.amenities = amenities
        need = {a.value for a in amenities}
        spaces = spaces.reset_index(drop=True)
        self.spaces = spaces.assign(counted=[need <= set(a) for a in spaces["amenities"]])
        self._spaces_bytes = int(self.spaces.memory_usage(deep=True).sum())
        counted = self.spaces[self.spaces["counted"]]
        self._lat, self._lon = counted["lat"].to_numpy(), counted["lon"].to_numpy()
        self._tree = cKDTree(ecef(self._lat, self._lon)) if len(counted) else None
        self.grid = city_grid(res)
        n = len(self.grid)
        # per grid row: the nearest counted space and the chord to it (NaN: not looked
        # up yet), the exact geodesic to it (NaN: not measured yet)
        self._nearest = np.zeros(n, dtype=np.int32)
        self._chord = np.full(n, np.nan)
        self._metres = np.full(n, np.nan)
        rows = rows_of(res, [h3.latlng_to_cell(a, b, res)
                             for a, b in zip(self._lat, self._lon, strict=True)])
        self.spaces_per_cell = np.bincount(rows[rows >= 0], minlength=n).astype(np.int32)

    @property
    def nbytes(self) -> int:
        """The memory it holds of its own: the spaces, the k-d tree's points and what it
        measured (the grid is shared by every reach of its resolution)."""
        tree = 0 if self._tree is None else self._tree.data.nbytes + self._tree.indices.nbytes
        return (self._spaces_bytes + tree + self._nearest.nbytes + self._chord.nbytes
                + self._metres.nbytes + self.spaces_per_cell.nbytes)

    def _looked_up(self, rows: np.ndarray) -> None:
        """Find the nearest counted space of each of ``rows`` not looked up yet."""
        todo = rows[np.isnan(self._chord[rows])]
        if not len(todo):
            return
        if self._tree is None:
            self._chord[todo] = np.inf
            return
        grid = self.grid
        points = ecef(grid["lat"].to_numpy()[todo], grid["lon"].to_numpy()[todo])
        self._chord[todo], self._nearest[todo] = self._tree.query(points.reshape(-1, 3))

    def metres(self, rows: np.ndarray) -> np.ndarray:
        """The geodesic metres from the centre of each of the grid's ``rows`` to the nearest
        counted space (infinite when none is counted)."""
        self._looked_up(rows)
        todo = rows[np.isnan(self._metres[rows])]
        if len(todo):
            if self._tree is None:
                self._metres[todo] = np.inf
            else:
                near = self._nearest[todo]
                self._metres[todo] = geodesic_m(
                    self.grid["lat"].to_numpy()[todo], self.grid["lon"].to_numpy()[todo],
                    self._lat[near], self._lon[near])
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
