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

from dataclasses import dataclass, field
from functools import cached_property, lru_cache

import h3
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from geosearch.geo import WGS84, ecef, geodesic_m
from geosearch.model import Amenity
from geosearch.reference import market_cities, markets

MIN_RES, MAX_RES = 6, 8
# The smallest city a report can include; the H3 grid is built once for all of these.
MIN_POPULATION = 50_000
# More than any city has: larger values are refused rather than compared.
MAX_POPULATION = 100_000_000
MAX_WALK_M = 50_000.0


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


def _around(lat: float, lon: float, radius_m: float, sides: int = 48) -> h3.LatLngPoly:
    """A polygon around a geodesic disk (its edges touch the circle from outside)."""
    outer = radius_m / np.cos(np.pi / sides) * 1.001
    lons, lats, _ = WGS84.fwd(np.full(sides, lon), np.full(sides, lat),
                              np.linspace(0, 360, sides, endpoint=False), np.full(sides, outer))
    return h3.LatLngPoly(list(zip(lats, lons, strict=True)))


def city_cells(lat: float, lon: float, radius_m: float, res: int) -> list[str]:
    """Cells of ``res`` whose centres lie in the city's disk (the centre's cell included).

    H3 fills a polygon drawn around the disk; each cell's centre is then measured.
    """
    candidates = h3.polygon_to_cells(_around(lat, lon, radius_m), res)
    centre = h3.latlng_to_cell(lat, lon, res)
    if not candidates:
        return [centre]
    centres = np.array([h3.cell_to_latlng(c) for c in candidates])
    inside = geodesic_m(lat, lon, centres[:, 0], centres[:, 1]) <= radius_m
    return sorted({c for c, ok in zip(candidates, inside, strict=True) if ok} | {centre})


def report_cities() -> pd.DataFrame:
    """Every market city a report can include (at least MIN_POPULATION inhabitants)."""
    cities = market_cities()
    return cities[cities["population"] >= MIN_POPULATION].reset_index(drop=True)


@lru_cache(maxsize=4)
def city_grid(res: int) -> pd.DataFrame:
    """The cells over every city of :func:`report_cities` (independent of the spaces,
    so built once per resolution): h3, city_index, country, lat, lon, weight.

    Where disks overlap, a cell belongs to the larger city (cities are listed largest
    first within a country), so dropping small cities later keeps the grid consistent.
    """
    c = report_cities()
    pieces = [city_cells(r.latitude, r.longitude, r.radius_m, res) for r in c.itertuples()]
    cells = pd.DataFrame({"h3": [x for p in pieces for x in p],
                          "city_index": np.repeat(np.arange(len(c)), [len(p) for p in pieces])})
    cells = cells.drop_duplicates("h3", keep="first").reset_index(drop=True)
    cells["country"] = c["country_code"].to_numpy()[cells["city_index"]]
    centres = np.array([h3.cell_to_latlng(x) for x in cells["h3"]]).reshape(-1, 2)
    cells["lat"], cells["lon"] = centres[:, 0], centres[:, 1]
    i = cells["city_index"].to_numpy()
    d = geodesic_m(c["latitude"].to_numpy()[i], c["longitude"].to_numpy()[i],
                   cells["lat"].to_numpy(), cells["lon"].to_numpy())
    cells["weight"] = np.exp(-d / (c["radius_m"].to_numpy()[i] / 2))
    return cells


class Coverage:
    """Coverage of every market city, computed once for a set of spaces and options.

    Parameters
    ----------
    spaces : active spaces with columns id, lat, lon, country, city, amenities.
    options : the definition's parameters.
    """

    def __init__(self, spaces: pd.DataFrame, options: CoverageOptions | None = None) -> None:
        self.options = options or CoverageOptions()
        spaces = spaces.reset_index(drop=True)
        need = {a.value for a in self.options.amenities}
        self.spaces = spaces.assign(counted=[need <= set(a) for a in spaces["amenities"]])
        cities = report_cities()
        self.cities = cities[cities["population"] >= self.options.min_population]

    @cached_property
    def _tree(self) -> tuple[cKDTree, pd.DataFrame] | None:
        counted = self.spaces[self.spaces["counted"]]
        if counted.empty:
            return None
        return cKDTree(ecef(counted["lat"].to_numpy(), counted["lon"].to_numpy())), counted

    def nearest_m(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Geodesic metres from each point to the nearest counted space.

        The k-d tree finds the nearest space by chord in Earth-centred coordinates; at the
        distances that matter here chord and geodesic rank spaces alike.
        """
        if self._tree is None:
            return np.full(len(lat), np.inf)
        tree, counted = self._tree
        _, idx = tree.query(ecef(lat, lon).reshape(-1, 3))
        return geodesic_m(lat, lon, counted["lat"].to_numpy()[idx],
                          counted["lon"].to_numpy()[idx])

    @cached_property
    def assignment(self) -> np.ndarray:
        """For each space, the index of its city, or -1 outside any city."""
        s, c = self.spaces, self.cities
        city_of = np.full(len(s), -1)
        if s.empty or c.empty:
            return city_of
        tree = cKDTree(ecef(c["latitude"].to_numpy(), c["longitude"].to_numpy()))
        k = min(8, len(c))
        _, near = tree.query(ecef(s["lat"].to_numpy(), s["lon"].to_numpy()).reshape(-1, 3), k=k)
        near = near.reshape(len(s), k)
        rel = geodesic_m(s["lat"].to_numpy()[:, None], s["lon"].to_numpy()[:, None],
                         c["latitude"].to_numpy()[near], c["longitude"].to_numpy()[near])
        rel = rel / c["radius_m"].to_numpy()[near]
        same = c["country_code"].to_numpy()[near] == s["country"].to_numpy()[:, None]
        rel = np.where(same & (rel <= 1.0), rel, np.inf)
        best = np.argmin(rel, axis=1)
        found = np.isfinite(rel[np.arange(len(s)), best])
        city_of[found] = c.index.to_numpy()[near[np.arange(len(s)), best][found]]
        return city_of

    @cached_property
    def cells(self) -> pd.DataFrame:
        """Every cell over every city: h3, city index, country, centre, density weight,
        distance to the nearest space, covered, and the spaces in the cell."""
        res = self.options.res
        cells = city_grid(res)
        cells = cells[cells["city_index"].isin(self.cities.index)].reset_index(drop=True)
        cells["nearest_m"] = self.nearest_m(cells["lat"].to_numpy(), cells["lon"].to_numpy())
        cells["covered"] = cells["nearest_m"] <= self.options.walk_m
        counted = self.spaces[self.spaces["counted"]]
        per_cell = pd.Series([h3.latlng_to_cell(a, b, res) for a, b in
                              zip(counted["lat"], counted["lon"], strict=True)],
                             dtype=object).value_counts()
        cells["spaces"] = cells["h3"].map(per_cell).fillna(0).astype(int)
        return cells

    @cached_property
    def city_stats(self) -> pd.DataFrame:
        """One row per city of every country, in the cities' order."""
        c, cells = self.cities, self.cells
        cells = cells.assign(weighted=cells["weight"] * cells["covered"])
        g = cells.groupby("city_index")
        per = pd.DataFrame({
            "cells": g.size(), "covered_cells": g["covered"].sum(),
            "weight": g["weight"].sum(), "weighted": g["weighted"].sum(),
            "median_nearest_m": g["nearest_m"].median(),
            "p90_nearest_m": g["nearest_m"].quantile(0.9),
        }).reindex(c.index)
        counted = self.spaces.assign(city_index=self.assignment)
        counted = counted[counted["counted"] & (counted["city_index"] >= 0)]
        spaces = counted.groupby("city_index").size().reindex(c.index, fill_value=0)
        table = pd.DataFrame({
            "city": c["name"], "country": c["country_code"],
            "population": c["population"].astype(int), "lat": c["latitude"],
            "lon": c["longitude"], "radius_m": c["radius_m"].astype(float),
            "spaces": spaces.to_numpy(),
            "spaces_per_100k": (spaces.to_numpy() / c["population"] * 100_000).round(3),
            "cells": per["cells"].fillna(0).astype(int).to_numpy(),
            "covered_cells": per["covered_cells"].fillna(0).astype(int).to_numpy(),
            "covered_share": (per["covered_cells"] / per["cells"]).fillna(0).round(4).to_numpy(),
            "covered_share_population_weighted":
                (per["weighted"] / per["weight"]).fillna(0).round(4).to_numpy(),
            "median_nearest_m": per["median_nearest_m"].round(1).to_numpy(),
            "p90_nearest_m": per["p90_nearest_m"].round(1).to_numpy(),
        })
        exploded = counted[["city_index", "amenities"]].explode("amenities")
        shares = pd.crosstab(exploded["city_index"], exploded["amenities"])
        shares = shares.reindex(index=c.index, columns=[a.value for a in Amenity],
                                fill_value=0)
        for a in Amenity:
            share = shares[a.value].to_numpy() / np.maximum(spaces.to_numpy(), 1)
            table[f"share_{a.value}"] = np.where(spaces.to_numpy() > 0, share.round(4), np.nan)
        return table.replace([np.inf, -np.inf], np.nan)

    def city_table(self, country: str) -> pd.DataFrame:
        """One row per city of ``country``, largest first."""
        table = self.city_stats[self.city_stats["country"] == country]
        return table.sort_values("population", ascending=False, kind="stable")

    def country_table(self) -> pd.DataFrame:
        """One row per market country (and any other country that has spaces)."""
        m = markets()
        codes = list(m["iso_a2"]) + sorted(set(self.spaces["country"]) - set(m["iso_a2"]))
        names = dict(zip(m["iso_a2"], m["country_name"], strict=True))
        stats = self.city_stats
        counted = self.spaces[self.spaces["counted"]]
        outside = counted[self.assignment[self.spaces["counted"].to_numpy()] == -1]
        rows = []
        for code in codes:
            table = stats[stats["country"] == code]
            population = int(table["population"].sum())
            covered = float((table["population"] * table[
                "covered_share_population_weighted"]).sum())
            empty = table[table["spaces"] == 0].sort_values("population", ascending=False)
            rows.append({
                "country": code, "name": names.get(code, code),
                "spaces": int((counted["country"] == code).sum()),
                "spaces_in_cities": int(table["spaces"].sum()),
                "spaces_outside_cities": int((outside["country"] == code).sum()),
                "cities": len(table),
                "cities_with_spaces": int((table["spaces"] > 0).sum()),
                "cities_without_spaces": int((table["spaces"] == 0).sum()),
                "city_population": population,
                "population_covered_share": round(covered / population, 4) if population else 0.0,
                "expansion_candidates": [
                    {"city": r.city, "population": int(r.population)}
                    for r in empty.head(5).itertuples()],
            })
        return pd.DataFrame(rows)


def coverage_all(spaces: pd.DataFrame, options: CoverageOptions) -> pd.DataFrame:
    """The country table for every country (used by the benchmark)."""
    return Coverage(spaces, options).country_table()
