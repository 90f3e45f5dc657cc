"""The coverage blueprint: /coverage/countries, /coverage/cities, /coverage/hexes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace

from flask import Blueprint, Response

from geosearch.api.errors import ApiError
from geosearch.api.geojson import GEOJSON
from geosearch.api.guard import register
from geosearch.api.openapi import ERRORS, OBJECT, ROWS, Operation, add_route, body
from geosearch.api.params import (
    AMENITIES,
    COUNTRY_SET,
    Param,
    Params,
    Parser,
    integer,
    number,
    query_args,
)
from geosearch.api.responses import json_response
from geosearch.backends.base import Backend
from geosearch.geo import cell_geojson
from geosearch.reports.coverage import (
    MAX_POPULATION,
    MAX_RES,
    MAX_WALK_M,
    MIN_POPULATION,
    MIN_RES,
    Coverage,
    CoverageOptions,
)

CACHE_SIZE = 32
WAIT_S = 20.0


_DEFAULTS = CoverageOptions()
MIN_POPULATION_PARAM: Param[int] = Param(
    "min_population", integer(MIN_POPULATION, MAX_POPULATION),
    "Cities of at least this many inhabitants", _DEFAULTS.min_population)
WALK_M: Param[float] = Param("walk_m", number(0, MAX_WALK_M, low_open=True),
                             "A cell is covered by a space this near its centre",
                             _DEFAULTS.walk_m)
RES: Param[int] = Param("res", integer(MIN_RES, MAX_RES), "H3 resolution of the cells",
                        _DEFAULTS.res)
WITH_AMENITIES = replace(AMENITIES, description="Count only spaces with all of these "
                                                "amenities")
COUNTRY_ONE: Param[str] = Param(
    "country", Parser(lambda text: _one(COUNTRY_SET.read(text)),
                      {"type": "string", "pattern": "^[A-Za-z]{2}$"}),
    "One ISO 3166-1 alpha-2 code", required=True)
OPTIONS = (WITH_AMENITIES, WALK_M, MIN_POPULATION_PARAM, RES)


def _one(codes: frozenset[str]) -> str:
    if len(codes) != 1:
        raise ValueError("exactly one ISO 3166-1 alpha-2 code, such as DE")
    return next(iter(codes))


def options_from(p: Params) -> CoverageOptions:
    """Coverage options from the request's :data:`OPTIONS`."""
    return CoverageOptions(min_population=p[MIN_POPULATION_PARAM], walk_m=p[WALK_M],
                           res=p[RES], amenities=p[WITH_AMENITIES])


COUNTRIES = Operation(
    "Coverage per country: spaces, cities with and without, population covered",
    body("application/json", {"type": "object", "required": ["options", "countries"],
                              "properties": {"options": OBJECT, "countries": ROWS}},
         "One row per country"), OPTIONS, ERRORS)
CITIES = Operation(
    "Coverage per city of a country", body("application/json", {
        "type": "object", "required": ["country", "options", "cities"],
        "properties": {"country": {"type": "string"}, "options": OBJECT, "cities": ROWS}},
        "One row per city"), (COUNTRY_ONE, *OPTIONS), ERRORS)
HEXES = Operation(
    "H3 cells over a country's cities, empty ones included", body(GEOJSON, {
        "type": "object", "required": ["type", "features"],
        "properties": {"type": {"const": "FeatureCollection"}, "features": ROWS}},
        "Cell polygons with count, covered flag and nearest_m"), (COUNTRY_ONE, *OPTIONS),
    ERRORS)


def options_dict(o: CoverageOptions) -> dict:
    return {"min_population": o.min_population, "walk_m": o.walk_m, "res": o.res,
            "amenities": sorted(a.value for a in o.amenities)}


class CoverageCache:
    """Coverage results per (dataset version, normalised options), computed once.

    Options are normalised before they become a key (amenities as a set, numbers as
    numbers), so ``amenities=wifi,wifi`` and ``amenities=wifi`` share one entry. At most
    one computation runs per process at a time (each is bounded: the cells of the chosen
    resolution over the report's cities, at most ~300,000 at res 8), and
    concurrent requests for the same key wait for the one computation instead of repeating
    it. A request that cannot start within ``wait_s`` gets a 503 with Retry-After.
    """

    def __init__(self, backend: Backend, size: int = CACHE_SIZE, wait_s: float = WAIT_S) -> None:
        self.backend = backend
        self.size = size
        self.wait_s = wait_s
        self._results: OrderedDict[tuple, Coverage] = OrderedDict()
        self._guard = threading.Lock()
        self._compute = threading.Lock()
        self.computed = 0

    def get(self, options: CoverageOptions) -> Coverage:
        """The coverage for ``options`` on the current dataset."""
        key = (self.backend.dataset_version(), options)
        with self._guard:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        if not self._compute.acquire(timeout=self.wait_s):
            raise ApiError(503, "Service Unavailable", "coverage computations are busy; try "
                           "again shortly", headers={"Retry-After": "5"})
        try:
            with self._guard:  # computed by the request this one waited for
                if key in self._results:
                    return self._results[key]
            result = Coverage(self.backend.active_frame(), options)
            result.city_stats  # noqa: B018 - the heavy part, done once under the lock
            self.computed += 1
            with self._guard:
                self._results[key] = result
                while len(self._results) > self.size:
                    self._results.popitem(last=False)
            return result
        finally:
            self._compute.release()


def _cells(cov: Coverage, country: str) -> list[dict]:
    """The H3 cells over the cities of ``country`` as GeoJSON features."""
    cells = cov.cells[cov.cells["country"] == country]
    names = cov.cities["name"]
    return [{
        "type": "Feature", "id": c.h3,
        "geometry": cell_geojson(c.h3),
        "properties": {"h3": c.h3, "city": names.loc[c.city_index], "spaces": int(c.spaces),
                       "covered": bool(c.covered), "nearest_m": round(c.nearest_m, 1)},
    } for c in cells.itertuples()]


class CoverageViews:
    """The views of one mounted coverage API, answering from its cache."""

    def __init__(self, cache: CoverageCache) -> None:
        self.coverage = cache.get

    def countries(self) -> Response:
        """GET /coverage/countries"""
        options = options_from(Params.read(query_args(), COUNTRIES.params).check())
        table = self.coverage(options).country_table()
        return json_response({"options": options_dict(options),
                              "countries": table.to_dict(orient="records")})

    def _of_country(self) -> tuple[CoverageOptions, str, Coverage]:
        """The options and the country of a per-country request, and their coverage."""
        p = Params.read(query_args(), CITIES.params).check()
        options = options_from(p)
        return options, p[COUNTRY_ONE], self.coverage(options)

    def cities(self) -> Response:
        """GET /coverage/cities"""
        options, country, cov = self._of_country()
        table = cov.city_table(country)
        return json_response({"country": country, "options": options_dict(options),
                              "cities": table.to_dict(orient="records")})

    def hexes(self) -> Response:
        """GET /coverage/hexes"""
        options, country, cov = self._of_country()
        features = _cells(cov, country)
        return json_response({"type": "FeatureCollection", "features": features,
                              "numberReturned": len(features), "country": country,
                              "options": options_dict(options)}, GEOJSON)


def coverage_blueprint(backend: Backend, name: str = "coverage") -> Blueprint:
    """Coverage endpoints over ``backend``; results are cached per dataset and options."""
    bp = Blueprint(name, __name__)
    cache = CoverageCache(backend)
    bp.record_once(lambda state: state.app.extensions.setdefault(f"{name}.cache", cache))
    views = CoverageViews(cache)
    add_route(bp, "/coverage/countries", "countries", views.countries, COUNTRIES)
    add_route(bp, "/coverage/cities", "cities", views.cities, CITIES)
    add_route(bp, "/coverage/hexes", "hexes", views.hexes, HEXES)
    register(bp, app_wide=False)
    return bp


