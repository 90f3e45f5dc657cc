"""Parse request parameters at the edge into typed query objects.

One small function per parameter; each failure becomes a ``ParamError`` naming the
parameter and what would be valid, and all of a request's errors are reported together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TypeVar

from werkzeug.datastructures import MultiDict

from geosearch.api.errors import ApiError, ParamError
from geosearch.model import (
    DEFAULT_K,
    DEFAULT_LIMIT,
    MAX_CAPACITY,
    MAX_K,
    MAX_LIMIT,
    MAX_RADIUS_M,
    Amenity,
    Filters,
    Point,
)
from geosearch.text import query_terms

T = TypeVar("T")
MAX_CITY_CHARS = 200
MAX_DISTANCE_M = 20_040_000.0  # half the equator: every point on Earth is nearer


class Params:
    """The query string of one request, read parameter by parameter; errors accumulate."""

    def __init__(self, args: MultiDict) -> None:
        self.args = args
        self.errors: list[ParamError] = []

    def raw(self, name: str) -> str | None:
        """The parameter's value (repeated values joined by commas), or None if absent."""
        values = list(self.args.getlist(name))
        return ",".join(values) if values else None

    def get(self, name: str, parse: Callable[[str], T], default: T | None = None,
            required: bool = False) -> T | None:
        """Parse one parameter; record an error and return ``default`` on failure."""
        value = self.raw(name)
        if value is None:
            if required:
                self.errors.append(ParamError(name, "required"))
            return default
        return self.parse(name, value, parse, default)

    def parse(self, name: str, value: str, parse: Callable[[str], T],
              default: T | None = None) -> T | None:
        """Parse ``value`` as parameter ``name`` (also for values from elsewhere than the
        query string, such as a path segment); record an error and return ``default`` on
        failure."""
        try:
            return parse(value)
        except ValueError as exc:
            self.errors.append(ParamError(name, str(exc)))
            return default

    def fail(self, name: str, message: str) -> None:
        """Record an error found across parameters."""
        self.errors.append(ParamError(name, message))

    def check(self) -> None:
        """Raise a 400 listing every error found so far."""
        if self.errors:
            raise ApiError.bad_params(self.errors)


_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message, cut short when long."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def number(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """A parser for a finite decimal number in [low, high] (or (low, high]).

    Only plain ASCII decimals are numbers (not ``nan``, ``1_000`` or other scripts' digits).
    """
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        if not _DECIMAL.fullmatch(text.strip()):
            raise ValueError(f"{shown(text)} is not a number; expected a number in {interval}")
        value = float(text)
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise ValueError(f"{shown(text)} is out of range; expected a number in {interval}")
        return value

    return parse


def integer(low: int, high: int) -> Callable[[str], int]:
    """A parser for a whole number in [low, high] (every integer of the API is bounded)."""
    span = f"{low}..{high}"

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise ValueError(f"{shown(text)} is not an integer; expected an integer {span}")
        # Beyond 20 digits no bound of the API can hold it (and int() of thousands of
        # digits is refused by Python itself).
        value = int(text) if len(text.strip()) <= 20 else None
        if value is None or not low <= value <= high:
            raise ValueError(f"{shown(text)} is out of range; expected an integer {span}")
        return value

    return parse


def amenity_set(text: str) -> frozenset[Amenity]:
    """Comma-separated amenity names; the error lists the valid ones."""
    names = [t for t in (s.strip() for s in text.split(",")) if t]
    bad = [n for n in names if n.lower() not in Amenity._value2member_map_]
    if bad:
        valid = ", ".join(a.value for a in Amenity)
        raise ValueError(f"unknown amenity {', '.join(map(shown, bad[:5]))}; valid: {valid}")
    return frozenset(Amenity(n.lower()) for n in names)


def country_set(text: str) -> frozenset[str]:
    """Comma-separated ISO 3166-1 alpha-2 codes (any case)."""
    codes = [t.strip().upper() for t in text.split(",") if t.strip()]
    bad = [c for c in codes if len(c) != 2 or not c.isascii() or not c.isalpha()]
    if bad:
        raise ValueError(f"{', '.join(map(shown, bad[:5]))}: expected ISO 3166-1 alpha-2 codes "
                         "such as DE or GB, separated by commas")
    return frozenset(codes)


def city_name(text: str) -> str | None:
    """A city name, as the spaces' own records have it (empty: no city filter)."""
    if len(text) > MAX_CITY_CHARS:
        raise ValueError(f"at most {MAX_CITY_CHARS} characters")
    return text.strip() or None


LAT = number(-90, 90)
LON = number(-180, 180)


def filters(params: Params) -> Filters:
    """The filters shared by every search endpoint."""
    return Filters(
        all_amenities=params.get("amenities", amenity_set, frozenset()),
        any_amenities=params.get("amenities_any", amenity_set, frozenset()),
        countries=params.get("country", country_set, frozenset()),
        city=params.get("city", city_name),
        min_capacity=params.get("min_capacity", integer(0, MAX_CAPACITY)),
        text=params.get("q", query_terms, ()),
    )


def origin(params: Params, required: bool) -> Point | None:
    """``lat`` and ``lon``: both required, or (optional origin) both or neither."""
    lat = params.get("lat", LAT, required=required)
    lon = params.get("lon", LON, required=required)
    if not required and (lat is None) != (lon is None) and not params.errors:
        params.fail("lat" if lat is None else "lon", "lat and lon go together: give both")
    return None if lat is None or lon is None else Point(lat, lon)


def limit(params: Params) -> int:
    """Page size, 1..500 (default 50)."""
    return params.get("limit", integer(1, MAX_LIMIT), DEFAULT_LIMIT)


def radius(params: Params) -> float | None:
    """``radius_m``: 0 < r <= 100,000."""
    return params.get("radius_m", number(0, MAX_RADIUS_M, low_open=True), required=True)


def k(params: Params) -> int:
    """``k``: 1..100 (default 10)."""
    return params.get("k", integer(1, MAX_K), DEFAULT_K)


def max_distance(params: Params) -> float | None:
    """``max_distance_m``: >= 0."""
    return params.get("max_distance_m", number(0, MAX_DISTANCE_M))


def bbox(text: str) -> tuple[float, float, float, float]:
    """``minlon,minlat,maxlon,maxlat``; minlon > maxlon crosses the antimeridian."""
    parts = [p.strip() for p in text.split(",")]
    shape = "expected minlon,minlat,maxlon,maxlat with lon in [-180, 180], lat in [-90, 90]"
    if len(parts) != 4:
        raise ValueError(f"{len(parts)} values given; {shape}")
    if not all(_DECIMAL.fullmatch(p) for p in parts):
        raise ValueError(f"not four numbers; {shape}")
    minlon, minlat, maxlon, maxlat = (float(p) for p in parts)
    if not all(math.isfinite(v) for v in (minlon, minlat, maxlon, maxlat)):
        raise ValueError(f"not finite; {shape}")
    if not (-180 <= minlon <= 180 and -180 <= maxlon <= 180 and -90 <= minlat <= 90
            and -90 <= maxlat <= 90):
        raise ValueError(f"out of range; {shape}")
    if minlat >= maxlat:
        raise ValueError("minlat must be less than maxlat")
    if minlon == maxlon:
        raise ValueError("minlon must differ from maxlon (minlon > maxlon crosses ±180°)")
    return minlon, minlat, maxlon, maxlat
