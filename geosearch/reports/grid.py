"""The cells a coverage report measures: H3 cells over the disks of the market cities.

The grid depends on neither the spaces nor the report's options (but its resolution), so
it is built once per resolution and process (:func:`city_grid`) for every city a report
can include; a report then keeps the rows of its own cities.
"""

from __future__ import annotations

from functools import lru_cache

import h3
import numpy as np
import pandas as pd

from geosearch.geo import WGS84, geodesic_m
from geosearch.reference import market_cities

MIN_RES, MAX_RES = 6, 8
# The smallest city a report can include; the H3 grid is built once for all of these.
MIN_POPULATION = 50_000


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


@lru_cache(maxsize=4)
def _sorted_cells(res: int) -> tuple[np.ndarray, np.ndarray]:
    """The cells of :func:`city_grid` as H3 integers, sorted, and the row of each."""
    cells = np.array([h3.str_to_int(x) for x in city_grid(res)["h3"].tolist()], dtype=np.uint64)
    order = np.argsort(cells)
    return cells[order], order


def rows_of(res: int, cells: np.ndarray) -> np.ndarray:
    """The row of :func:`city_grid` of each of ``cells`` (H3 integers of ``res``), -1
    where none."""
    sorted_cells, order = _sorted_cells(res)
    wanted = np.asarray(cells, dtype=np.uint64)
    at = np.searchsorted(sorted_cells, wanted).clip(max=len(sorted_cells) - 1)
    return np.where(sorted_cells[at] == wanted, order[at], -1)


@lru_cache(maxsize=4)
def _population(res: int) -> np.ndarray:
    """For each row of :func:`city_grid`, the population of its city."""
    return report_cities()["population"].to_numpy()[city_grid(res)["city_index"].to_numpy()]


@lru_cache(maxsize=4)
def _of_country(res: int) -> dict[str, np.ndarray]:
    """The rows of :func:`city_grid` of each country, in order."""
    return city_grid(res).groupby("country").indices


def cell_rows(res: int, min_population: int, country: str | None = None) -> np.ndarray:
    """The rows of :func:`city_grid` over the cities of at least ``min_population``
    inhabitants, of ``country`` (None: of every country), in order."""
    rows = (np.arange(len(city_grid(res))) if country is None
            else _of_country(res).get(country, np.empty(0, dtype=np.intp)))
    return rows[_population(res)[rows] >= min_population]


def build_grids(resolutions: range) -> None:
    """Build every grid of ``resolutions`` now (a server does before it forks its
    workers, so that no request pays for them and the workers share them)."""
    for res in resolutions:
        cell_rows(res, 0)
        _sorted_cells(res)
