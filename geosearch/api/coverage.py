"""The coverage blueprint: /coverage/countries, /coverage/cities, /coverage/hexes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from functools import cache
from typing import Protocol

from flask import Blueprint, Response

from geosearch.api.errors import ApiError, ParamError
from geosearch.api.geojson import GEOJSON, VERSION_HEADER
from geosearch.api.guard import register
from geosearch.api.openapi import ERRORS, OBJECT, Operation, add_route, body
from geosearch.api.params import (
    AMENITIES,
    COUNTRY_SET,
    Param,
    Params,
    Parser,
    any_case,
    integer,
    number,
    query_args,
)
from geosearch.api.responses import Encoded
from geosearch.backends.base import Backend
from geosearch.geo import cell_geojson
from geosearch.observe.metrics import cache_lookup
from geosearch.reports.coverage import (
    MAX_POPULATION,
    MAX_RES,
    MAX_WALK_M,
    MIN_POPULATION,
    MIN_RES,
    WALK_STEP_M,
    Coverage,
    CoverageOptions,
)
from geosearch.reports.grid import cell_rows, report_cities
from geosearch.reports.reach import Reach
from geosearch.reports.spaces import SpaceArrays

# What the cache of a process may hold: encoded answers and the measured reaches of
# spaces, counted in bytes.
CACHE_BYTES = 64 * 2**20
WAIT_S = 20.0
# The most cells /coverage/hexes answers (each one a polygon on the wire); more is a 400
# naming res.
MAX_HEX_CELLS = 10_000
# The spaces a cached entry was made from (CoverageCache.stamp): the dataset version and
# the seq of the last write, the first member of every key, so that no entry answers for
# another dataset or for the spaces before a write.
Stamp = tuple[str, int]


_DEFAULTS = CoverageOptions()
MIN_POPULATION_PARAM: Param[int] = Param(
    "min_population", integer(MIN_POPULATION, MAX_POPULATION),
    "Cities of at least this many inhabitants, lowered to the ladder 50,000, 100,000, "
    "200,000, 500,000, 1,000,000... (the answer's options say which)",
    _DEFAULTS.min_population)
WALK_M: Param[float] = Param("walk_m", number(0, MAX_WALK_M, low_open=True),
                             f"A cell is covered by a space this near its centre, rounded "
                             f"to a multiple of {WALK_STEP_M:g} m (the answer's options say "
                             f"which)", _DEFAULTS.walk_m)
RES: Param[int] = Param("res", integer(MIN_RES, MAX_RES),
                        f"H3 resolution of the cells (/coverage/hexes answers at most "
                        f"{MAX_HEX_CELLS:,} cells: a large country asks a lower one)",
                        _DEFAULTS.res)
WITH_AMENITIES = replace(AMENITIES, description="Count only spaces with all of these "
                                                "amenities")
OPTIONS = (WITH_AMENITIES, WALK_M, MIN_POPULATION_PARAM, RES)


@cache
def report_countries() -> tuple[str, ...]:
    """The codes of the countries whose cities the coverage report covers, sorted."""
    return tuple(sorted(set(report_cities()["country_code"])))


def _one(text: str) -> str:
    """The one code ``text`` names (any case), a country of the report; else what is
    valid."""
    if "," in text:
        raise ValueError("one ISO 3166-1 alpha-2 code, such as DE, not a list")
    codes = COUNTRY_SET.read(text)
    if len(codes) != 1:
        raise ValueError("one ISO 3166-1 alpha-2 code, such as DE")
    code = next(iter(codes))
    if code not in report_countries():
        raise ValueError(f"{code} is not a country of the coverage report; valid: "
                         f"{', '.join(report_countries())}")
    return code


COUNTRY_ONE: Param[str] = Param(
    "country", Parser(_one, {"type": "string", "pattern": "^(" + "|".join(
        any_case(code) for code in report_countries()) + ")$"}),
    "One ISO 3166-1 alpha-2 code (any case) of a country the report covers (one of its "
    "market countries: /coverage/countries lists them); not a list", required=True)


def options_from(p: Params) -> CoverageOptions:
    """Coverage options from the request's :data:`OPTIONS`, on the cache's steps
    (:meth:`CoverageOptions.rounded`): the answer is the rounded options' own."""
    return CoverageOptions(min_population=p[MIN_POPULATION_PARAM], walk_m=p[WALK_M],
                           res=p[RES], amenities=p[WITH_AMENITIES]).rounded()


_COUNT = {"type": "integer", "minimum": 0}
_SHARE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_METRES = {"type": ["number", "null"], "minimum": 0}
_TEXT = {"type": "string"}


def _rows(fields: dict[str, dict], more: dict | None = None) -> dict:
    """An array of rows, each with ``fields`` (all of them present) and, where
    ``more`` is given, members matching it (by name pattern)."""
    row: dict = {"type": "object", "required": list(fields), "properties": fields}
    if more is not None:
        row["patternProperties"] = more
    return {"type": "array", "items": row}


OPTIONS_DOC = {"type": "object", "required": ["min_population", "walk_m", "res", "amenities"],
               "description": "The options the answer was computed for (after rounding)",
               "properties": {"min_population": _COUNT, "walk_m": {"type": "number"},
                              "res": _COUNT, "amenities": {"type": "array", "items": _TEXT}}}
COUNTRY_ROWS = _rows({
    "country": _TEXT, "name": _TEXT, "spaces": _COUNT, "spaces_in_cities": _COUNT,
    "spaces_outside_cities": _COUNT, "cities": _COUNT, "cities_with_spaces": _COUNT,
    "cities_without_spaces": _COUNT, "city_population": _COUNT,
    "population_covered_share": _SHARE,
    "expansion_candidates": {
        "type": "array", "description": "The largest cities without a space",
        "items": {"type": "object", "required": ["city", "population"],
                  "properties": {"city": _TEXT, "population": _COUNT}}}})
CITY_ROWS = _rows({
    "city": _TEXT, "country": _TEXT, "population": _COUNT, "lat": {"type": "number"},
    "lon": {"type": "number"}, "radius_m": _METRES, "spaces": _COUNT,
    "spaces_per_100k": _METRES, "cells": _COUNT, "covered_cells": _COUNT,
    "covered_share": _SHARE, "covered_share_population_weighted": _SHARE,
    "median_nearest_m": _METRES, "p90_nearest_m": _METRES},
    {"^share_": {**_SHARE, "description": "share_<amenity>: the share of the city's spaces "
                 "with the amenity"}})
HEX_FEATURES = {"type": "array", "items": {
    "type": "object", "required": ["type", "id", "geometry", "properties"],
    "properties": {
        "type": {"const": "Feature"}, "id": _TEXT, "geometry": OBJECT,
        "properties": {"type": "object",
                       "required": ["h3", "city", "spaces", "covered", "nearest_m"],
                       "properties": {"h3": _TEXT, "city": _TEXT, "spaces": _COUNT,
                                      "covered": {"type": "boolean"},
                                      "nearest_m": _METRES}}}}}
VERSIONED = {"X-Dataset-Version": True}
COUNTRIES = Operation(
    "Coverage per country: spaces, cities with and without, population covered",
    body("application/json", {"type": "object", "required": ["options", "countries"],
                              "properties": {"options": OPTIONS_DOC,
                                             "countries": COUNTRY_ROWS}},
         "One row per country"), OPTIONS, ERRORS, headers=VERSIONED)
CITIES = Operation(
    "Coverage per city of a country", body("application/json", {
        "type": "object", "required": ["country", "options", "cities"],
        "properties": {"country": _TEXT, "options": OPTIONS_DOC, "cities": CITY_ROWS}},
        "One row per city"), (COUNTRY_ONE, *OPTIONS), ERRORS, headers=VERSIONED)
HEXES = Operation(
    "H3 cells over a country's cities, empty ones included", body(GEOJSON, {
        "type": "object", "required": ["type", "features"],
        "properties": {"type": {"const": "FeatureCollection"}, "features": HEX_FEATURES,
                       "numberReturned": _COUNT, "country": _TEXT, "options": OPTIONS_DOC}},
        "Cell polygons with count, covered flag and nearest_m"), (COUNTRY_ONE, *OPTIONS),
    ERRORS, headers=VERSIONED)


def options_dict(o: CoverageOptions) -> dict:
    """The options an answer was computed for (after rounding), as its ``options``."""
    return {"min_population": o.min_population, "walk_m": o.walk_m, "res": o.res,
            "amenities": sorted(a.value for a in o.amenities)}


class Sized(Protocol):
    """What the cache holds: anything that says how many bytes it keeps."""

    @property
    def nbytes(self) -> int: ...


class ByteLRU:
    """Values by key, at most ``max_bytes`` of them (by their ``nbytes``), the least
    recently used dropped first; a value larger than the whole bound is not kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[Hashable, tuple[Sized, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Sized | None:
        """The value of ``key`` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def keep_only(self, first: Hashable) -> None:
        """Drop every entry but those whose key is a tuple starting with ``first``."""
        with self._lock:
            for key in [k for k in self._items
                        if not (isinstance(k, tuple) and k and k[0] == first)]:
                _, size = self._items.pop(key)
                self.nbytes -= size

    def put(self, key: Hashable, value: Sized) -> None:
        """Keep ``value`` under ``key``, dropping the least recently used to make room."""
        size = value.nbytes
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            if size > self.max_bytes:
                return
            while self.nbytes + size > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self.nbytes -= dropped
            self._items[key] = (value, size)
            self.nbytes += size


class CoverageCache:
    """Coverage answers, encoded once, per (data stamp, view, country, options).

    The options are normalised and rounded before they become a key
    (:func:`options_from`), so ``amenities=wifi,wifi``, ``walk_m=1e3`` and ``walk_m=990``
    share one entry with ``amenities=wifi``, ``walk_m=1000``. An answer found is its bytes
    as they were first sent. Beside the answers, the cache keeps each measured
    :class:`~geosearch.reports.reach.Reach` (per stamp, res and amenities), so that answers
    differing only in walk_m, min_population, the country or the view do not measure the
    spaces again, and the spaces' :class:`~geosearch.reports.spaces.SpaceArrays` (per
    stamp), so that a new res or amenity filter does not read them again; everything is
    counted against one bound of ``max_bytes``. A new stamp (a load, or a write over
    PostGIS) is measured again at its first request, and the entries of other stamps are
    dropped then.

    At most one computation runs per process at a time, and concurrent requests for the
    same key wait for it instead of repeating it. A request that cannot start within
    ``wait_s`` gets a 503 with Retry-After.
    """

    def __init__(self, backend: Backend, max_bytes: int = CACHE_BYTES,
                 wait_s: float = WAIT_S) -> None:
        self.backend = backend
        self.entries = ByteLRU(max_bytes)
        self.wait_s = wait_s
        self._compute = threading.Lock()
        self.computed = 0  # reaches measured: spaces read and looked up in a k-d tree

    def stamp(self) -> Stamp:
        """The key member naming the spaces served now: the dataset version and the seq
        of the last write (:meth:`~geosearch.backends.base.Backend.data_stamp`)."""
        return self.backend.data_stamp()

    def answer(self, view: str, country: str | None, options: CoverageOptions,
               build: Callable[[Coverage], dict], mimetype: str) -> Encoded:
        """The answer of ``view`` for ``country`` and ``options`` on the current dataset:
        from the cache, or ``build`` of a report of it, encoded as ``mimetype`` and kept."""
        found = self.entries.get((self.stamp(), view, country, options))
        cache_lookup("coverage", isinstance(found, Encoded))
        if isinstance(found, Encoded):
            return found
        if not self._compute.acquire(timeout=self.wait_s):
            raise ApiError(503, "Service Unavailable", "coverage computations are busy; try "
                           "again shortly", headers={"Retry-After": "5"})
        try:
            found = self.entries.get((self.stamp(), view, country, options))
            if isinstance(found, Encoded):  # made by the request this one waited for
                return found
            stamp, reach = self._reach(options)
            encoded = Encoded.json(build(Coverage(reach, options)), mimetype,
                                   ((VERSION_HEADER, stamp[0]),))
            self.entries.put((stamp, view, country, options), encoded)
            return encoded
        finally:
            self._compute.release()

    def _reach(self, options: CoverageOptions) -> tuple[Stamp, Reach]:
        """The reach of the current spaces for the options' res and amenities, and the
        stamp they are kept under. The spaces are read between two readings of the
        stamp: when the dataset version differs (a new dataset came in meanwhile), they
        are read again. Writes committed meanwhile do not matter: the spaces hold every
        write up to the first stamp's seq (a write commits its seq with its row), and a
        newer write is one that a later request sees in its own stamp."""
        for _ in range(3):
            stamp = self.stamp()
            key = (stamp, "reach", options.res, options.amenities)
            found = self.entries.get(key)
            if isinstance(found, Reach):
                return stamp, found
            spaces = self.entries.get((stamp, "spaces"))
            if not isinstance(spaces, SpaceArrays):
                spaces = SpaceArrays.of_backend(self.backend)
            version, _ = self.stamp()
            if version == stamp[0]:
                self.entries.put((stamp, "spaces"), spaces)
                reach = Reach(spaces, options.res, options.amenities)
                self.computed += 1
                self.entries.keep_only(stamp)
                self.entries.put(key, reach)
                return stamp, reach
        raise ApiError(503, "Service Unavailable", "the dataset is being replaced; try again "
                       "shortly", headers={"Retry-After": "5"})


def _countries(cov: Coverage) -> dict:
    """GET /coverage/countries: one row per country."""
    return {"options": options_dict(cov.options),
            "countries": cov.country_table().to_dict(orient="records")}


def _cities(cov: Coverage, country: str) -> dict:
    """GET /coverage/cities: one row per city of ``country``."""
    return {"country": country, "options": options_dict(cov.options),
            "cities": cov.city_table(country).to_dict(orient="records")}


def _hexes(cov: Coverage, country: str) -> dict:
    """GET /coverage/hexes: the H3 cells over the cities of ``country`` as GeoJSON."""
    cells = cov.country_cells(country)
    cities = cov.cities["name"].loc[cells["city_index"]].tolist()
    features = [{
        "type": "Feature", "id": h, "geometry": cell_geojson(h),
        "properties": {"h3": h, "city": city, "spaces": spaces, "covered": covered,
                       "nearest_m": round(nearest, 1)},
    } for h, city, spaces, covered, nearest in zip(
        cells["h3"].tolist(), cities, cells["spaces"].tolist(), cells["covered"].tolist(),
        cells["nearest_m"].tolist(), strict=True)]
    return {"type": "FeatureCollection", "features": features,
            "numberReturned": len(features), "country": country,
            "options": options_dict(cov.options)}


def _hexes_bounded(options: CoverageOptions, country: str) -> None:
    """A 400 naming res when the hexes of ``country`` would hold more than MAX_HEX_CELLS
    cells."""
    cells = len(cell_rows(options.res, options.min_population, country))
    if cells > MAX_HEX_CELLS:
        raise ApiError.bad_params([ParamError("res", (
            f"{country} has {cells:,} cells at res {options.res} over its cities of at "
            f"least {options.min_population:,} inhabitants; at most {MAX_HEX_CELLS:,} are "
            f"answered: ask a lower res or a larger min_population"))])


class CoverageViews:
    """The views of one mounted coverage API, answering from its cache."""

    def __init__(self, cache: CoverageCache) -> None:
        self.cache = cache

    def countries(self) -> Response:
        """GET /coverage/countries"""
        options = options_from(Params.read(query_args(), COUNTRIES.params).check())
        return self.cache.answer("countries", None, options, _countries,
                                 "application/json").response()

    def _of_country(self) -> tuple[CoverageOptions, str]:
        """The options and the country of a per-country request."""
        p = Params.read(query_args(), CITIES.params).check()
        return options_from(p), p[COUNTRY_ONE]

    def cities(self) -> Response:
        """GET /coverage/cities"""
        options, country = self._of_country()
        return self.cache.answer("cities", country, options,
                                 lambda cov: _cities(cov, country),
                                 "application/json").response()

    def hexes(self) -> Response:
        """GET /coverage/hexes"""
        options, country = self._of_country()
        _hexes_bounded(options, country)
        return self.cache.answer("hexes", country, options, lambda cov: _hexes(cov, country),
                                 GEOJSON).response()


def coverage_blueprint(backend: Backend, name: str = "coverage") -> Blueprint:
    """Coverage endpoints over ``backend``; answers are cached per dataset and options."""
    bp = Blueprint(name, __name__)
    cache = CoverageCache(backend)
    bp.record_once(lambda state: state.app.extensions.setdefault(f"{name}.cache", cache))
    views = CoverageViews(cache)
    add_route(bp, "/coverage/countries", "countries", views.countries, COUNTRIES)
    add_route(bp, "/coverage/cities", "cities", views.cities, CITIES)
    add_route(bp, "/coverage/hexes", "hexes", views.hexes, HEXES)
    register(bp, app_wide=False)
    return bp
