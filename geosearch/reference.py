"""Offline reference data: country outlines, the curated market cities, country names.

Loaded lazily and cached: the files are package data, ``geosearch/data/reference`` (see
its NOTICE), read through :mod:`importlib.resources` so that an installed wheel finds them
wherever it runs; ``GEOSEARCH_REFERENCE_DIR`` names another folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pycountry
import shapely
from shapely.strtree import STRtree

from geosearch.geo import geodesic_m
from geosearch.text import fold as fold_text

REFERENCE_DIR = Path(
    os.environ.get("GEOSEARCH_REFERENCE_DIR")
    or str(files("geosearch").joinpath("data", "reference"))
)
COUNTRY_TOLERANCE_M = 5_000.0
# Territories with an ISO code but no outline of their own in Natural Earth's admin-0
# layer: their land is part of the outline of the country that administers them.
OUTLINE_OF = {"BQ": "NL", "BV": "NO", "CC": "AU", "CX": "AU", "GF": "FR", "GP": "FR",
              "MQ": "FR", "RE": "FR", "SJ": "NO", "TK": "NZ", "YT": "FR"}

# Names that pycountry does not know: endonyms and everyday English forms.
_EXTRA_COUNTRY_NAMES = {
    "deutschland": "DE", "allemagne": "DE", "germania": "DE",
    "uk": "GB", "great britain": "GB", "britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northern ireland": "GB",
    "usa": "US", "u.s.a.": "US", "u.s.": "US", "america": "US", "united states of america": "US",
    "espana": "ES", "espagne": "ES", "spanien": "ES",
    "france": "FR", "frankreich": "FR",
    "italia": "IT", "italien": "IT",
    "nederland": "NL", "holland": "NL", "the netherlands": "NL", "niederlande": "NL",
    "belgie": "BE", "belgique": "BE", "belgien": "BE",
    "eire": "IE", "republic of ireland": "IE",
    "schweiz": "CH", "suisse": "CH", "svizzera": "CH",
    "osterreich": "AT", "sverige": "SE", "danmark": "DK", "norge": "NO", "polska": "PL",
    "cesko": "CZ", "czech republic": "CZ", "ceska republika": "CZ",
    "brasil": "BR", "mexico": "MX", "turkiye": "TR", "turkey": "TR",
    "nihon": "JP", "nippon": "JP", "south korea": "KR", "korea": "KR",
    "uae": "AE", "emirates": "AE", "hong kong sar": "HK", "russia": "RU",
    "vietnam": "VN", "iran": "IR", "syria": "SY", "bolivia": "BO", "venezuela": "VE",
    "tanzania": "TZ", "taiwan": "TW", "laos": "LA", "moldova": "MD",
}


def fold(text: str) -> str:
    """Case-fold, strip accents and squeeze spaces: the key used to compare names."""
    return " ".join(fold_text(text).replace("-", " ").split())


@cache
def _country_name_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for c in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            value = getattr(c, attr, None)
            if value:
                index[fold(value)] = c.alpha_2
        index[fold(c.alpha_3)] = c.alpha_2
    for feature_name, code in _countries_frame()[["name", "iso_a2"]].itertuples(index=False):
        index.setdefault(fold(feature_name), code)
    index.update(_EXTRA_COUNTRY_NAMES)
    return index


def country_code(value: str) -> str | None:
    """The ISO 3166-1 alpha-2 code for a code or a country name, or None if unknown.

    >>> country_code("Deutschland"), country_code("gb"), country_code("Atlantis")
    ('DE', 'GB', None)
    """
    text = value.strip()
    if len(text) == 2 and text.isalpha():
        code = text.upper()
        if pycountry.countries.get(alpha_2=code) or code == "XK":
            return code
    return _country_name_index().get(fold(text))


@cache
def _countries_frame() -> gpd.GeoDataFrame:
    raw = gpd.read_file(REFERENCE_DIR / "countries_ne10m.geojson")
    raw = raw[raw["iso_a2"].str.len() == 2]
    return raw.dissolve(by="iso_a2", as_index=False)[["iso_a2", "name", "geometry"]]


@dataclass(frozen=True)
class CountryIndex:
    """Country outlines by ISO code, with a point-in-country test that has a tolerance."""

    codes: list[str]
    geometries: np.ndarray
    tree: STRtree

    def geometry(self, code: str) -> shapely.Geometry | None:
        """The outline of a country (a territory: its administering country's outline),
        or None when the reference has none."""
        try:
            return self.geometries[self.codes.index(OUTLINE_OF.get(code, code))]
        except ValueError:
            return None

    def distance_outside_m(self, code: str, lat: float, lon: float) -> float | None:
        """0 inside the country, else the approximate geodesic distance to its outline.

        None when the reference has no outline for ``code``.
        """
        geom = self.geometry(code)
        if geom is None:
            return None
        point = shapely.Point(lon, lat)
        if geom.covers(point):
            return 0.0
        nearest = shapely.shortest_line(point, geom).coords[-1]
        return float(geodesic_m(lat, lon, nearest[1], nearest[0]))

    def in_country(self, code: str, lat: float, lon: float) -> bool | None:
        """Whether the point lies in the country or within 5 km of it (None: no outline)."""
        d = self.distance_outside_m(code, lat, lon)
        return None if d is None else d <= COUNTRY_TOLERANCE_M

    def countries_at(self, lat: float, lon: float) -> list[str]:
        """The codes of the countries whose outline covers the point."""
        idx = self.tree.query(shapely.Point(lon, lat), predicate="intersects")
        return sorted(self.codes[i] for i in idx)


@cache
def countries() -> CountryIndex:
    """The country outlines (Natural Earth 1:10m, dissolved by ISO alpha-2)."""
    frame = _countries_frame()
    geoms = np.asarray(frame.geometry.values)
    shapely.prepare(geoms)
    return CountryIndex(list(frame["iso_a2"]), geoms, STRtree(geoms))


def city_radius_m(population: float) -> float:
    """The radius of the disk that stands for a city's extent (no city polygons offline).

    Grows with the logarithm of the population: 2 km below 100,000 inhabitants, then
    3 km at 100,000, 7 km at 1 million and 11 km at 10 million.
    """
    if population < 100_000:
        return 2_000.0
    return 3_000.0 + 4_000.0 * math.log10(population / 100_000)


@cache
def market_cities() -> pd.DataFrame:
    """The curated market cities (``scripts/curate_cities.py``): districts merged."""
    return pd.read_csv(REFERENCE_DIR / "market_cities.csv", keep_default_na=False,
                       dtype={"geonameid": int, "admin1_code": str})


@cache
def markets() -> pd.DataFrame:
    """The 40 markets with their quotas and currencies."""
    return pd.read_csv(REFERENCE_DIR / "markets_40.csv", keep_default_na=False)
