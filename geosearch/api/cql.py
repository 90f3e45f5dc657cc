"""CQL2 text filters of the OGC items (Part 3), mapped onto the search filters.

The queryables are the properties the backends filter on. A filter is parsed by the
``cql2`` library (the reference grammar) and mapped, conjunct by conjunct, onto
:class:`~geosearch.model.Filters` and an area; what cannot be mapped is a 400 that says
what is supported:

- ``country = 'DE'``, ``country IN ('DE', 'AT')`` (or ``=`` joined by ``OR``);
- ``city = 'Berlin'``;
- ``capacity >= 10`` (or ``>``);
- ``A_CONTAINS(amenities, ('wifi', 'parking'))`` (all of them),
  ``A_OVERLAPS(amenities, ('wifi', 'parking'))`` (at least one);
- ``S_INTERSECTS(geometry, BBOX(...))`` or with a polygon;

each at most once, joined by ``AND``.
"""

from __future__ import annotations

import math
from typing import Any

from shapely.geometry.base import BaseGeometry

from geosearch.api.geojson import GeometryError, parse_area
from geosearch.geo import bbox_area
from geosearch.model import MAX_CAPACITY, Amenity, field_schema

SUPPORTED = ("country = or IN, city =, capacity >= or >, A_CONTAINS or A_OVERLAPS on "
             "amenities, S_INTERSECTS(geometry, BBOX or POLYGON), each once, joined by AND")
# CQL2 text, and the name of its draft that older clients (GDAL before Part 3) send
LANGUAGES = ("cql2-text", "cql-text")


QUERYABLE = ("country", "city", "capacity", "amenities")


def _queryable(name: str) -> dict:
    """A queryable as the Space field defines it (a filter never matches a missing value,
    so the type is the value's own)."""
    schema = field_schema(name)
    kind = schema["type"]
    return {**schema, "type": kind[0] if isinstance(kind, list) else kind}


class FilterError(ValueError):
    """A filter that cannot be read or mapped; the message says what is supported."""


def queryables(self_url: str) -> dict:
    """The queryables document (JSON Schema, OGC API - Features Part 3)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": self_url,
        "type": "object", "title": "spaces",
        "description": f"CQL2 text in the filter parameter; supported: {SUPPORTED}",
        "properties": {
            "geometry": {"format": "geometry-point", "x-ogc-role": "primary-geometry"},
            **{name: _queryable(name) for name in QUERYABLE},
        },
        "additionalProperties": False,
    }


def _property(arg: Any) -> str | None:
    return arg.get("property") if isinstance(arg, dict) else None


def _strings(value: Any, what: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise FilterError(f"{what} takes text values such as 'DE'")
    return values


def _amenities(value: Any) -> frozenset[Amenity]:
    try:
        return frozenset(Amenity.parse(v) for v in _strings(value, "amenities"))
    except ValueError as exc:
        raise FilterError(str(exc)) from None


class _Mapping:
    """The filters and area of one CQL2 expression (cql2-json form), built node by node."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.area: BaseGeometry | None = None

    def set(self, name: str, value: Any) -> None:
        if name in self.values:
            raise FilterError(f"{name} is constrained twice; supported: {SUPPORTED}")
        self.values[name] = value

    def node(self, node: Any) -> None:
        op = node.get("op") if isinstance(node, dict) else None
        args = node.get("args", []) if isinstance(node, dict) else []
        if op == "and":
            for arg in args:
                self.node(arg)
            return
        name = _property(args[0]) if args else None
        if op == "or" and args:
            self.set("countries", frozenset().union(*(self._countries(a) for a in args)))
        elif name == "country" and op in ("=", "in"):
            self.set("countries", self._countries(node))
        elif name == "city" and op == "=":
            self.set("city", _strings(args[1], "city")[0])
        elif name == "capacity" and op in (">=", ">") and isinstance(args[1], int | float):
            low = math.floor(args[1]) + 1 if op == ">" else math.ceil(args[1])
            self.set("min_capacity", min(max(int(low), 0), MAX_CAPACITY + 1))
        elif name == "amenities" and op in ("a_contains", "a_overlaps"):
            key = "all_amenities" if op == "a_contains" else "any_amenities"
            self.set(key, _amenities(args[1]))
        elif name == "geometry" and op == "s_intersects" and self.area is None:
            self.area = self._area(args[1])
        else:
            raise FilterError(f"{op or node!r} is not supported here; supported: {SUPPORTED}")

    @staticmethod
    def _countries(node: Any) -> frozenset[str]:
        op, args = node.get("op"), node.get("args", [])
        if op not in ("=", "in") or _property(args[0]) != "country":
            raise FilterError(f"OR joins only values of country; supported: {SUPPORTED}")
        return frozenset(v.strip().upper() for v in _strings(args[1], "country"))

    @staticmethod
    def _area(value: Any) -> BaseGeometry:
        if isinstance(value, dict) and "bbox" in value:
            box = value["bbox"]
            area = bbox_area(*box[:2], *box[-2:]) if len(box) in (4, 6) else None
            if area is None:
                raise FilterError("BBOX(minlon, minlat, maxlon, maxlat) with minlat < maxlat")
            return area
        try:
            return parse_area(value)
        except GeometryError as exc:
            raise FilterError(str(exc)) from None


def parse_filter(text: str, language: str | None = None) -> tuple[dict[str, Any],
                                                                   BaseGeometry | None]:
    """The filter keyword arguments (``countries``, ``city``, ``min_capacity``,
    ``all_amenities``, ``any_amenities``) and the area of a CQL2 text filter."""
    if language not in (None, "", *LANGUAGES):
        raise FilterError(f"filter-lang {language!r} is not supported; use {LANGUAGES[0]}")
    import cql2  # only when a filter is given: the serving path does not need it

    try:
        expression = cql2.Expr(text).to_json()
    except Exception as exc:  # the parser raises its own kinds: each is a 400
        where = " ".join(str(exc).split())[:160] or "unreadable"
        raise FilterError(f"not CQL2 text: {where}") from None
    mapping = _Mapping()
    mapping.node(expression)
    if mapping.values.get("min_capacity", 0) > MAX_CAPACITY:
        raise FilterError(f"capacity is at most {MAX_CAPACITY}")
    return mapping.values, mapping.area
