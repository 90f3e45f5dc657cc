"""City-level coverage: where the network of spaces is thin.

Definitions (docs/coverage.md gives the reasons):

- **Cities**: the curated market cities (``geosearch/data/reference/market_cities.csv``) of at least
  ``min_population`` inhabitants (default 100,000). No city polygons exist offline: a
  city's extent is a disk around its GeoNames centre whose radius grows with the log of
  the population (:func:`geosearch.reference.city_radius_m`).
- **Cells**: the H3 cells at resolution ``res`` (default 8, about 0.74 km²) whose centres
  lie in a city's disk (and always the cell of the centre itself). A cell is **covered**
  when an active space (passing the amenity filter) lies within ``walk_m`` (default
  1,000 m) of its centre, in WGS84 geodesic metres.
- **A space belongs to a city** when it lies in the city's disk; where disks overlap, to
  the city it is nearest to in units of the cities' radii. Other spaces are "outside
  any city". So a country's spaces = the sum over its cities + those outside.
- **Population-weighted coverage** assumes (an explicit assumption, not a measurement)
  that density falls off from the centre as exp(-d / (radius / 2)); each cell weighs by
  the density at its centre.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from geosearch.geo import ecef, geodesic_at_most, geodesic_m
from geosearch.model import Amenity
from geosearch.reference import markets
from geosearch.reports.grid import (
    MAX_RES,
    MIN_POPULATION,
    MIN_RES,
    cell_rows,
    report_cities,
)
from geosearch.reports.reach import Reach
from geosearch.reports.spaces import SpaceArrays

# More than any city has: larger values are refused rather than compared.
MAX_POPULATION = 100_000_000
MAX_WALK_M = 50_000.0
# The steps of :meth:`CoverageOptions.rounded`: walking distances are multiples of this,
# smallest cities one of the ladder (1-2-5 steps from MIN_POPULATION to MAX_POPULATION).
WALK_STEP_M = 50.0
POPULATION_LADDER = (50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000,
                     10_000_000, 20_000_000, 50_000_000, 100_000_000)


@dataclass(frozen=True)
class CoverageOptions:
    """What coverage means for one report."""

    min_population: int = 100_000
    walk_m: float = 1_000.0
    res: int = 8
    amenities: frozenset[Amenity] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not MIN_RES <= self.res <= MAX_RES:
            raise ValueError(f"res must be an integer in {MIN_RES}..{MAX_RES}")
        if not 0 < self.walk_m <= MAX_WALK_M:
            raise ValueError(f"walk_m must be a number with 0 < walk_m <= {MAX_WALK_M:g}")
        if not MIN_POPULATION <= self.min_population <= MAX_POPULATION:
            raise ValueError(f"min_population must be an integer in "
                             f"{MIN_POPULATION}..{MAX_POPULATION}")

    def rounded(self) -> CoverageOptions:
        """These options on the API's steps: ``walk_m`` to the nearest multiple of
        WALK_STEP_M (at least one step), ``min_population`` down to the ladder value at or
        below it. The API answers for these, so nearby values share one cached answer."""
        steps = max(1, math.floor(self.walk_m / WALK_STEP_M + 0.5))
        ladder = POPULATION_LADDER[bisect_right(POPULATION_LADDER, self.min_population) - 1]
        return replace(self, walk_m=steps * WALK_STEP_M, min_population=ladder)


class Coverage:
    """Coverage of every market city, computed once for a set of spaces and options.

    Parameters
    ----------
    spaces : active spaces with columns lat, lon, country, amenities (others are not
        read); or their :class:`~geosearch.reports.spaces.SpaceArrays`; or their
        :class:`~geosearch.reports.reach.Reach` for the options' res and amenities, already
        (partly) measured: reports that differ only in walk_m or min_population share one.
    options : the definition's parameters.

    The tables of one country (:meth:`city_table`, :meth:`country_cells`) measure only
    that country's cells. Every count is a ``bincount`` over the spaces' arrays.
    """

    def __init__(self, spaces: pd.DataFrame | SpaceArrays | Reach,
                 options: CoverageOptions | None = None) -> None:
        self.options = o = options or CoverageOptions()
        if not isinstance(spaces, Reach):
            spaces = Reach(spaces, o.res, o.amenities)
        elif (spaces.res, spaces.amenities) != (o.res, o.amenities):
            raise ValueError("the reach was measured for another res or other amenities")
        self.reach = spaces
        self.arrays = spaces.spaces
        self.all_cities = report_cities()
        self.cities = self.all_cities[self.all_cities["population"] >= o.min_population]

    @cached_property
    def spaces(self) -> pd.DataFrame:
        """The spaces: lat, lon, country and whether each is counted (has the options'
        amenities)."""
        a = self.arrays
        return pd.DataFrame({"lat": a.lat, "lon": a.lon, "country": a.country_names(),
                             "counted": self.reach.counted})

    def _cells_at(self, rows: np.ndarray) -> pd.DataFrame:
        """The grid's ``rows`` with the distance from each centre to the nearest counted
        space, whether that is within walk_m, and the counted spaces in each cell."""
        cells = self.reach.grid.iloc[rows].reset_index(drop=True)
        cells["nearest_m"] = self.reach.metres(rows)
        cells["covered"] = cells["nearest_m"] <= self.options.walk_m
        cells["spaces"] = self.reach.spaces_in(rows).astype(int)
        return cells

    def _country_rows(self, country: str | None) -> np.ndarray:
        """The grid rows of the report's cities of ``country`` (None: of every country)."""
        return cell_rows(self.options.res, self.options.min_population, country)

    @cached_property
    def cells(self) -> pd.DataFrame:
        """Every cell over every city: h3, city index, country, centre, density weight,
        distance to the nearest space, covered, and the spaces in the cell."""
        return self._cells_at(self._country_rows(None))

    def country_cells(self, country: str) -> pd.DataFrame:
        """The :attr:`cells` of ``country``, measuring no other country's."""
        return self._cells_at(self._country_rows(country))

    @cached_property
    def assignment(self) -> np.ndarray:
        """For each counted space (``reach.at``), the index of its city, or -1 outside
        any city.

        The candidates of a space are the cities of its country whose chord ball (a
        chord is never longer than its geodesic) holds it, found by one ball query per
        city in the spaces' k-d tree. A space with one candidate that the chord's upper
        bound of the geodesic already puts in the disk needs no exact geodesic; the
        others are measured exactly and go to the city they are nearest to in radii."""
        a, c = self.arrays, self.cities
        city_of = np.full(len(self.reach.at), -1)
        tree = self.reach.tree
        if tree is None or c.empty:
            return city_of
        lat, lon = c["latitude"].to_numpy(), c["longitude"].to_numpy()
        radii = c["radius_m"].to_numpy(dtype=float)
        balls = tree.query_ball_point(ecef(lat, lon), r=radii, return_sorted=False)
        sizes = np.fromiter(map(len, balls), dtype=np.intp, count=len(balls))
        space = np.concatenate([np.asarray(b, dtype=np.intp) for b in balls])
        city = np.repeat(np.arange(len(c)), sizes)
        country = pd.Index(a.countries).get_indexer(c["country_code"].to_numpy())
        same = a.country_code[self.reach.at[space]] == country[city]
        space, city = space[same], city[same]
        chord = np.linalg.norm(tree.data[space] - ecef(lat[city], lon[city]), axis=1)
        single = np.bincount(space, minlength=len(city_of))[space] == 1
        sure = single & (geodesic_at_most(chord) <= radii[city])
        rel = np.zeros(len(space))
        far = self.reach.at[space[~sure]]
        rel[~sure] = geodesic_m(a.lat[far], a.lon[far], lat[city[~sure]],
                                lon[city[~sure]]) / radii[city[~sure]]
        inside = rel <= 1.0
        space, city, rel = space[inside], city[inside], rel[inside]
        # the nearest in radii last for each space: the last assignment wins
        order = np.lexsort((-rel, space))
        city_of[space[order]] = c.index.to_numpy()[city[order]]
        return city_of

    def _per_city(self, rows: np.ndarray, distances: bool) -> pd.DataFrame:
        """Per city of the grid's ``rows`` (indexed by city index): cells, covered cells,
        density weight in all and covered; with ``distances``, the median and p90
        distance to the nearest space (which measures every cell exactly)."""
        grid = self.reach.grid
        covered = self.reach.covered(rows, self.options.walk_m)
        weight = grid["weight"].to_numpy()[rows]
        city = grid["city_index"].to_numpy()[rows]
        n = len(self.all_cities)
        per = pd.DataFrame({
            "cells": np.bincount(city, minlength=n),
            "covered_cells": np.bincount(city, weights=covered, minlength=n).astype(int),
            "weight": np.bincount(city, weights=weight, minlength=n),
            "weighted": np.bincount(city, weights=weight * covered, minlength=n)})
        if distances:
            g = pd.Series(self.reach.metres(rows)).groupby(city)
            per["median_nearest_m"] = g.median()
            per["p90_nearest_m"] = g.quantile(0.9)
        return per[per["cells"] > 0]

    @cached_property
    def _in_city(self) -> tuple[np.ndarray, np.ndarray]:
        """The counted spaces in a city: their indices and their city's index."""
        inside = self.assignment >= 0
        return self.reach.at[inside], self.assignment[inside]

    def _city_stats(self, country: str | None, distances: bool) -> pd.DataFrame:
        """One row per city of ``country`` (None: of every country), in the cities' order;
        the distance columns only with ``distances``."""
        c = self.cities
        if country is not None:
            c = c[c["country_code"] == country]
        per = self._per_city(self._country_rows(country), distances).reindex(c.index)
        _, city = self._in_city
        spaces = np.bincount(city, minlength=len(self.all_cities))[c.index]
        table = pd.DataFrame({
            "city": c["name"], "country": c["country_code"],
            "population": c["population"].astype(int), "lat": c["latitude"],
            "lon": c["longitude"], "radius_m": c["radius_m"].astype(float),
            "spaces": spaces,
            "spaces_per_100k": (spaces / c["population"] * 100_000).round(3),
            "cells": per["cells"].fillna(0).astype(int).to_numpy(),
            "covered_cells": per["covered_cells"].fillna(0).astype(int).to_numpy(),
            "covered_share": (per["covered_cells"] / per["cells"]).fillna(0).round(4).to_numpy(),
            "covered_share_population_weighted":
                (per["weighted"] / per["weight"]).fillna(0).round(4).to_numpy(),
        })
        if distances:
            table["median_nearest_m"] = per["median_nearest_m"].round(1).to_numpy()
            table["p90_nearest_m"] = per["p90_nearest_m"].round(1).to_numpy()
        for a, counts in zip(Amenity, self._amenity_counts, strict=True):
            share = counts[c.index] / np.maximum(spaces, 1)
            table[f"share_{a.value}"] = np.where(spaces > 0, share.round(4), np.nan)
        return table.replace([np.inf, -np.inf], np.nan)

    @cached_property
    def _amenity_counts(self) -> list[np.ndarray]:
        """For each amenity (in the vocabulary's order), the counted spaces with it per
        city index."""
        at, city = self._in_city
        bits = self.arrays.amenities[at]
        return [np.bincount(city[(bits & a.bit) != 0], minlength=len(self.all_cities))
                for a in Amenity]

    def city_table(self, country: str) -> pd.DataFrame:
        """One row per city of ``country``, largest first."""
        table = self._city_stats(country, distances=True)
        return table.sort_values("population", ascending=False, kind="stable")

    def country_table(self) -> pd.DataFrame:
        """One row per market country (and any other country that has spaces)."""
        m = markets()
        a = self.arrays
        codes = list(m["iso_a2"]) + sorted(set(a.countries) - set(m["iso_a2"]))
        names = dict(zip(m["iso_a2"], m["country_name"], strict=True))
        stats = self._city_stats(None, distances=False)
        of_country = stats.groupby("country").indices
        city, population, in_city = (stats[k].to_numpy() for k in ("city", "population",
                                                                   "spaces"))
        covered = population * stats["covered_share_population_weighted"].to_numpy()
        country = a.country_code[self.reach.at]
        spaces = np.bincount(country, minlength=len(a.countries))
        outside = np.bincount(country[self.assignment == -1], minlength=len(a.countries))
        index = {code: i for i, code in enumerate(a.countries)}
        rows = []
        for code in codes:
            at = of_country.get(code, np.empty(0, dtype=np.intp))
            j = index.get(code)
            people = int(population[at].sum())
            empty = at[in_city[at] == 0]
            largest = pd.Series(population[empty], empty).sort_values(ascending=False)
            rows.append({
                "country": code, "name": names.get(code, code),
                "spaces": 0 if j is None else int(spaces[j]),
                "spaces_in_cities": int(in_city[at].sum()),
                "spaces_outside_cities": 0 if j is None else int(outside[j]),
                "cities": len(at),
                "cities_with_spaces": len(at) - len(empty),
                "cities_without_spaces": len(empty),
                "city_population": people,
                "population_covered_share":
                    round(float(covered[at].sum()) / people, 4) if people else 0.0,
                "expansion_candidates": [{"city": city[i], "population": int(population[i])}
                                         for i in largest.index[:5]],
            })
        return pd.DataFrame(rows)


def coverage_all(spaces: pd.DataFrame, options: CoverageOptions) -> pd.DataFrame:
    """The country table for every country (used by the benchmark)."""
    return Coverage(spaces, options).country_table()
