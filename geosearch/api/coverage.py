"""The coverage blueprint: /coverage/countries, /coverage/cities, /coverage/hexes."""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict

from flask import Blueprint, Response, request

from geosearch.api import params
from geosearch.api.errors import ApiError, register
from geosearch.api.geojson import GEOJSON
from geosearch.backends.base import Backend
from geosearch.geo import cell_geojson
from geosearch.reports.coverage import (
    MAX_POPULATION,
    MAX_RES,
    MIN_POPULATION,
    MIN_RES,
    Coverage,
    CoverageOptions,
)

CACHE_SIZE = 32
WAIT_S = 20.0


def _clean(value):
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _json(body: dict, mimetype: str = "application/json") -> Response:
    return Response(json.dumps(_clean(body), ensure_ascii=False), mimetype=mimetype)


def options_from(p: params.Params) -> CoverageOptions:
    """Coverage options from ``amenities``, ``walk_m``, ``min_population`` and ``res``."""
    defaults = CoverageOptions()
    return CoverageOptions(
        min_population=p.get("min_population", params.integer(MIN_POPULATION, MAX_POPULATION),
                             defaults.min_population),
        walk_m=p.get("walk_m", params.number(0, 50_000, low_open=True), defaults.walk_m),
        res=p.get("res", params.integer(MIN_RES, MAX_RES), defaults.res),
        amenities=p.get("amenities", params.amenity_set, frozenset()),
    )


def country_param(p: params.Params) -> str | None:
    """The required ``country`` of the city and hex endpoints: one alpha-2 code."""
    codes = p.get("country", params.country_set, required=True)
    if codes is not None and len(codes) != 1:
        p.fail("country", "exactly one ISO 3166-1 alpha-2 code, such as DE")
        return None
    return None if codes is None else next(iter(codes))


def options_dict(o: CoverageOptions) -> dict:
    return {"min_population": o.min_population, "walk_m": o.walk_m, "res": o.res,
            "amenities": sorted(a.value for a in o.amenities)}


class CoverageCache:
    """Coverage results per (dataset version, normalised options), computed once.

    Options are normalised before they become a key (amenities as a set, numbers as
    numbers), so ``amenities=wifi,wifi`` and ``amenities=wifi`` share one entry. At most
    one computation runs per process at a time (each is bounded: the cells of the chosen
    resolution over the report's cities, at most ~300,000 at res 8, about a second), and
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


def coverage_blueprint(backend: Backend, name: str = "coverage") -> Blueprint:
    """Coverage endpoints over ``backend``; results are cached per dataset and options."""
    bp = Blueprint(name, __name__)
    cache = CoverageCache(backend)
    bp.record_once(lambda state: state.app.extensions.setdefault(f"{name}.cache", cache))
    coverage = cache.get

    @bp.get("/coverage/countries")
    def countries():
        p = params.Params(request.args)
        options = options_from(p)
        p.check()
        table = coverage(options).country_table()
        return _json({"options": options_dict(options),
                      "countries": table.to_dict(orient="records")})

    def of_country() -> tuple[CoverageOptions, str, Coverage]:
        p = params.Params(request.args)
        options, country = options_from(p), country_param(p)
        p.check()
        return options, country, coverage(options)

    @bp.get("/coverage/cities")
    def cities():
        options, country, cov = of_country()
        table = cov.city_table(country)
        return _json({"country": country, "options": options_dict(options),
                      "cities": table.to_dict(orient="records")})

    @bp.get("/coverage/hexes")
    def hexes():
        options, country, cov = of_country()
        cells = cov.cells[cov.cells["country"] == country]
        names = cov.cities["name"]
        features = [{
            "type": "Feature", "id": c.h3,
            "geometry": cell_geojson(c.h3),
            "properties": {"h3": c.h3, "city": names.loc[c.city_index], "spaces": int(c.spaces),
                           "covered": bool(c.covered), "nearest_m": round(c.nearest_m, 1)},
        } for c in cells.itertuples()]
        return _json({"type": "FeatureCollection", "features": features,
                      "numberReturned": len(features), "country": country,
                      "options": options_dict(options)}, GEOJSON)

    register(bp, app_wide=False)
    return bp


