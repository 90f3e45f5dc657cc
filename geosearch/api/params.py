"""Request parameters, each declared once: name, parser, bounds, description.

A :class:`Param` is what a view reads and what the OpenAPI document says about it: the
parser carries the JSON Schema of the text it accepts (bounds from the model's constants),
so the document and the views cannot disagree. A view reads its operation's parameters
with :class:`Params`: every failure becomes a ``ParamError`` naming the parameter and what
would be valid, and all of a request's errors are reported together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Generic, Literal, TypeVar

from flask import request

from geosearch.api.errors import ApiError, ParamError
from geosearch.api.guard import CONTROL_CHARS, UNENCODED_QUERY
from geosearch.model import (
    DEFAULT_K,
    DEFAULT_LIMIT,
    MAX_CAPACITY,
    MAX_CITY_CHARS,
    MAX_DISTANCE_M,
    MAX_K,
    MAX_LIMIT,
    MAX_RADIUS_M,
    Amenity,
    Filters,
    Point,
    shown,
)
from geosearch.text import MAX_Q_CHARS, MAX_Q_TERMS, query_terms

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class Parser(Generic[T_co]):
    """How a parameter's text is read (``read`` raises ValueError saying what is valid)
    and the JSON Schema of the text it accepts."""

    read: Callable[[str], T_co]
    schema: Mapping[str, Any]


@dataclass(frozen=True)
class Param(Generic[T_co]):
    """One query or path parameter of the API, declared once for the views and the
    OpenAPI document. ``default`` is the value when the parameter is absent."""

    name: str
    parser: Parser[T_co]
    description: str
    default: T_co | None = None
    required: bool = False
    where: Literal["query", "path"] = "query"

    def openapi(self) -> dict:
        """The OpenAPI Parameter Object."""
        schema = dict(self.parser.schema)
        if isinstance(self.default, int | float | str) and not isinstance(self.default, bool):
            schema["default"] = self.default
        return {"name": self.name, "in": self.where,
                "required": self.required or self.where == "path",
                "description": self.description, "schema": schema}


def query_args() -> Mapping[str, list[str]]:
    """This request's query parameters, name -> values in order, as Werkzeug decodes them
    (``request.args``); a query string with nothing encoded in it is split directly."""
    query = request.environ.get("QUERY_STRING", "")
    if not UNENCODED_QUERY.fullmatch(query):
        return request.args.to_dict(flat=False)
    args: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            args.setdefault(name, []).append(value)
    return args


@dataclass
class Params:
    """The parameters of one request, read by declaration; errors accumulate until
    :meth:`check`, after which ``params[PARAM]`` is the parsed value (or its default)."""

    args: Mapping[str, list[str]]
    errors: list[ParamError] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)

    @classmethod
    def read(cls, args: Mapping[str, list[str]], params: Iterable[Param], **path: str
             ) -> Params:
        """Read ``params`` from the query's ``args`` (name -> values: :func:`query_args`;
        path parameters from ``path``)."""
        self = cls(args)
        for param in params:
            name = param.name
            if param.where == "path":
                self.take(param, path[name])
            elif name in args:
                self.take(param, self.raw(name))
            elif param.required:
                self.take(param, None)
            else:  # most parameters of a request are absent, and take their default
                self.values[name] = param.default
        return self

    def raw(self, name: str) -> str | None:
        """The parameter's text (repeated values joined by commas), or None if absent."""
        values = self.args.get(name)
        return None if not values else values[0] if len(values) == 1 else ",".join(values)

    def take(self, param: Param, text: str | None) -> None:
        """Parse ``text`` as ``param``; record an error when it fails or is missing."""
        if text is None:
            if param.required:
                self.errors.append(ParamError(param.name, "required"))
            self.values[param.name] = param.default
            return
        try:
            self.values[param.name] = param.parser.read(text)
        except ValueError as exc:
            self.errors.append(ParamError(param.name, str(exc)))
            self.values[param.name] = param.default

    def __getitem__(self, param: Param[T]) -> T:
        return self.values[param.name]  # type: ignore[return-value] # ``param``'s parser

    def fail(self, name: str, message: str) -> None:
        """Record an error found across parameters."""
        self.errors.append(ParamError(name, message))

    def check(self) -> Params:
        """Raise a 400 listing every error found so far."""
        if self.errors:
            raise ApiError.bad_params(self.errors)
        return self


# A decimal, spelt so that one text can match it in one way only: a match that fails
# (a long run of digits, then a letter) fails in time linear in the text, not quadratic.
_DIGITS = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_DECIMAL = re.compile(f"[+-]?{_DIGITS}", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_BBOX = re.compile(",".join([rf"\s*([+-]?{_DIGITS})\s*"] * 4), re.ASCII)


def number(low: float, high: float, low_open: bool = False) -> Parser[float]:
    """A finite decimal number in [low, high] (or (low, high]).

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

    lower = {"exclusiveMinimum": low} if low_open else {"minimum": low}
    return Parser(parse, {"type": "number", **lower, "maximum": high})


def integer(low: int, high: int, expected: str | None = None) -> Parser[int]:
    """A whole number in [low, high] (every integer of the API is bounded); ``expected``
    says what is valid in an error, when ``low..high`` would not (a bound no client
    needs to read)."""
    span = expected or f"an integer {low}..{high}"

    def parse(text: str) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise ValueError(f"{shown(text)} is not an integer; expected {span}")
        # Beyond 20 digits no bound of the API can hold it (and int() of thousands of
        # digits is refused by Python itself).
        value = int(text) if len(text.strip()) <= 20 else None
        if value is None or not low <= value <= high:
            raise ValueError(f"{shown(text)} is out of range; expected {span}")
        return value

    return Parser(parse, {"type": "integer", "minimum": low, "maximum": high})


def choice(*values: str) -> Parser[str]:
    """One of ``values``, spelt exactly."""
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"{shown(text)} is not supported; expected one of "
                             f"{', '.join(values)}")
        return text

    return Parser(parse, {"type": "string", "enum": list(values)})


@lru_cache(maxsize=1024)
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


def bbox(text: str) -> tuple[float, float, float, float]:
    """``minlon,minlat,maxlon,maxlat``; minlon > maxlon crosses the antimeridian."""
    shape = "expected minlon,minlat,maxlon,maxlat with lon in [-180, 180], lat in [-90, 90]"
    plain = _BBOX.fullmatch(text)  # four ASCII decimals: read at once (the usual case)
    parts = plain.groups() if plain else [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"{len(parts)} values given; {shape}")
    if plain is None and not all(_DECIMAL.fullmatch(p) for p in parts):
        raise ValueError(f"not four numbers; {shape}")
    minlon, minlat, maxlon, maxlat = map(float, parts)
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


def any_case(word: str) -> str:
    """A pattern (ECMA-262, as JSON Schema reads it: no flags) matching ``word`` in any
    case.

    >>> any_case("wifi")
    '[wW][iI][fF][iI]'
    """
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c)
                   for c in word)


# amenity names in any case, separated by commas, blanks around them and empty names
# skipped (as Amenity.parse_set reads them)
_AMENITY = f"( *({'|'.join(any_case(a.value) for a in Amenity)})? *)"
# a request's few names come from a small vocabulary: each text is parsed once
AMENITY_SET = Parser(lru_cache(maxsize=1024)(Amenity.parse_set),
                     {"type": "string", "pattern": f"^{_AMENITY}(,{_AMENITY})*$"})
COUNTRY_SET = Parser(country_set, {"type": "string", "pattern": "^([A-Za-z]{2})?(,[A-Za-z]{2})*$"})
# Free text: anything but the control characters every request is refused for
TEXT_PATTERN = f"^[^{CONTROL_CHARS}]*$"
TEXT = Parser(str, {"type": "string", "pattern": TEXT_PATTERN})

# -- the parameters shared by the endpoints ---------------------------------------------

LAT: Param[float] = Param("lat", number(-90, 90), "Latitude of the origin, WGS84 degrees",
                          required=True)
LON: Param[float] = Param("lon", number(-180, 180), "Longitude of the origin, WGS84 degrees",
                          required=True)
ORIGIN_LAT: Param[float | None] = Param(
    "lat", LAT.parser, "Optional origin (with lon): order by distance from it")
ORIGIN_LON: Param[float | None] = Param("lon", LON.parser, "Optional origin (with lat)")
RADIUS_M: Param[float] = Param("radius_m", number(0, MAX_RADIUS_M, low_open=True),
                               "Radius in metres (geodesic)", required=True)
K: Param[int] = Param("k", integer(1, MAX_K), "How many", DEFAULT_K)
MAX_DISTANCE: Param[float | None] = Param("max_distance_m", number(0, MAX_DISTANCE_M),
                                          "Only spaces at most this far (metres)")
AMENITIES: Param[frozenset[Amenity]] = Param(
    "amenities", AMENITY_SET, "Comma-separated amenities, any case; the space has all of them. "
    "Valid: "
    + ", ".join(a.value for a in Amenity), frozenset())
AMENITIES_ANY: Param[frozenset[Amenity]] = Param(
    "amenities_any", AMENITY_SET,
    "Comma-separated amenities, any case; the space has at least one of them", frozenset())
COUNTRY: Param[frozenset[str]] = Param(
    "country", COUNTRY_SET, "Comma-separated ISO 3166-1 alpha-2 codes, any case; any of them",
    frozenset())
CITY: Param[str | None] = Param(
    "city", Parser(city_name, {"type": "string", "maxLength": MAX_CITY_CHARS,
                                   "pattern": TEXT_PATTERN}),
    "City as the space's record has it, case-insensitive")
MIN_CAPACITY: Param[int | None] = Param("min_capacity", integer(0, MAX_CAPACITY),
                                        "At least this many desks")
Q: Param[tuple[str, ...]] = Param(
    "q", Parser(query_terms, {"type": "string", "maxLength": MAX_Q_CHARS,
                                    "pattern": TEXT_PATTERN}),
    "Text: every word of it is the start of a word of the space's name, address or city, "
    "accents and case ignored (NFKD, combining marks removed, case folded; words are runs "
    f"of letters and digits); at most {MAX_Q_TERMS} words and {MAX_Q_CHARS} characters", ())
LIMIT: Param[int] = Param("limit", integer(1, MAX_LIMIT), "Page size", DEFAULT_LIMIT)
CURSOR: Param[str | None] = Param(
    "cursor", TEXT, "The `next` value of the previous page, passed back unchanged")
BBOX_SCHEMA = {"type": "string"}  # four numbers whose order (minlat < maxlat) no schema says
BBOX: Param[tuple[float, float, float, float]] = Param(
    "bbox", Parser(bbox, BBOX_SCHEMA), "minlon,minlat,maxlon,maxlat; minlon > maxlon crosses "
    "the antimeridian", required=True)

FILTERS = (AMENITIES, AMENITIES_ANY, COUNTRY, CITY, MIN_CAPACITY, Q)
PAGING = (LIMIT, CURSOR)
OPTIONAL_ORIGIN = (ORIGIN_LAT, ORIGIN_LON)


def filters(p: Params) -> Filters:
    """The filters shared by every search endpoint (read with :data:`FILTERS`)."""
    return Filters(all_amenities=p[AMENITIES], any_amenities=p[AMENITIES_ANY],
                   countries=p[COUNTRY], city=p[CITY], min_capacity=p[MIN_CAPACITY],
                   text=p[Q])


def optional_origin(p: Params) -> Point | None:
    """The origin of :data:`OPTIONAL_ORIGIN`: both or neither (one alone is an error,
    recorded; call before :meth:`Params.check`)."""
    lat, lon = p[ORIGIN_LAT], p[ORIGIN_LON]
    if (lat is None) != (lon is None) and not p.errors:
        p.fail("lat" if lat is None else "lon", "lat and lon go together: give both")
    return None if lat is None or lon is None else Point(lat, lon)
