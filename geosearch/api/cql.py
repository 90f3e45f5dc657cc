"""CQL2 text filters of the OGC items (Part 3), mapped onto the search filters.

The queryables are the properties the backends filter on. A filter is parsed by the
``cql2`` library (the reference grammar) and mapped, conjunct by conjunct, onto
:class:`~geosearch.model.Filters` and an area:

- Basic CQL2 on the scalar queryables ``country``, ``city`` and ``capacity``: the
  comparisons ``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=`` (a queryable with a value, on
  either side), ``IS NULL``, ``NOT``, ``AND``, ``OR``, ``TRUE`` and ``FALSE``, with SQL's
  three-valued logic (capacity may be unset). ``city`` is compared as the city filter
  compares it (trimmed, case-folded), ``country`` in upper case. A conjunct that a filter
  of its own says (``country = 'DE'``, ``country IN ('DE', 'AT')`` or ``=`` joined by
  ``OR``, ``city = 'Berlin'``, ``capacity >= 10`` or ``>``) becomes that filter; the others
  become the condition ``Filters.where`` (:mod:`geosearch.predicate`);
- ``A_CONTAINS(amenities, ('wifi', 'parking'))`` (all of them),
  ``A_OVERLAPS(amenities, ('wifi', 'parking'))`` (at least one);
- ``S_INTERSECTS(geometry, BBOX(...))`` or with a polygon;

the array and spatial predicates each at most once, joined to the rest by ``AND``. What
cannot be mapped is a 400 that says what is supported.

The parser is native code whose recursion overflows its stack (the worker dies) on deeply
nested text. So a filter is checked in three steps, each bounded:

1. the text, before the parser sees it, in one linear scan: at most
   :data:`MAX_FILTER_CHARS` characters, brackets nested at most :data:`MAX_FILTER_DEPTH`
   deep, at most :data:`MAX_FILTER_OPERATORS` operators (``AND``, ``OR``, ``NOT``,
   comparisons, arithmetic) and at most :data:`MAX_PREFIX_RUN` prefix operators (``NOT``,
   ``-``, ``+``) in a row;
2. the parser (``cql2``), which turns it into the cql2-json tree;
3. the tree against the supported forms: each comparison of a queryable with a value of
   its type and range (text lengths, codes, finite numbers, a valid area); its conjuncts
   walked without recursion, a condition within one recursively (as deep as step 1
   lets it be).

Whatever fails is a :class:`FilterError` saying what is valid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from shapely.geometry.base import BaseGeometry

from geosearch.api.geojson import GeometryError, parse_area
from geosearch.api.guard import CONTROL_CHARS
from geosearch.api.params import MAX_CITY_CHARS, bbox
from geosearch.features import city_key
from geosearch.geo import bbox_area
from geosearch.model import MAX_CAPACITY, Amenity, field_schema
from geosearch.predicate import FIELDS, OPERATORS

SUPPORTED = ("Basic CQL2 on country, city and capacity (=, <>, <, <=, >, >=, IS NULL, NOT, "
             "AND, OR; city compared case-insensitively, country in upper case), country "
             "IN (...), and A_CONTAINS or A_OVERLAPS on amenities and S_INTERSECTS(geometry, "
             "BBOX or POLYGON), each once and joined to the rest by AND")
# CQL2 text, and the name of its draft that older clients (GDAL before Part 3) send
LANGUAGES = ("cql2-text", "cql-text")
MAX_FILTER_CHARS = 4096
MAX_FILTER_DEPTH = 32  # brackets open at once
MAX_FILTER_OPERATORS = 100
MAX_PREFIX_RUN = 4


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


# The tokens of CQL2 text, as far as its bounds need them: operands (quoted text and
# identifiers, numbers), words (keywords, names), operator symbols and brackets.
_TOKEN = re.compile(r"""
    (?P<operand>'[^']*(?:''[^']*)*'?|"[^"]*"?|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[^\W\d]\w*)
  | (?P<symbol><>|<=|>=|[-+*/%^=<>])
  | (?P<open>[(\[{])
  | (?P<close>[)\]}])
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_BINARY_WORDS = frozenset({"AND", "OR", "LIKE", "BETWEEN", "IN", "IS", "DIV"})
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")


def check_text(text: str) -> None:
    """Raise FilterError when ``text`` is beyond the bounds the parser is given text
    within (see the module's doc), in one pass over its tokens. A sign or ``NOT`` is a
    prefix operator where no operand ends just before it; a sign that starts a number
    (``-0.5``) counts only in its run, so that coordinates do not use up the operators."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"{len(text)} characters; at most {MAX_FILTER_CHARS} are accepted")
    depth = operators = run = 0
    after_operand = False  # an operand just ended: an operator here is binary
    for token in _TOKEN.finditer(text):
        kind = token.lastgroup
        if kind == "space":
            continue
        if kind == "word":
            word = token.group().upper()
            kind = ("operator" if word in _BINARY_WORDS or (word == "NOT" and after_operand)
                    else "not" if word == "NOT" else "operand")
        elif kind == "symbol":
            kind = "operator" if after_operand else "sign"
        operators += kind in ("operator", "not")
        run = 0 if kind == "operand" else run + (kind in ("not", "sign"))
        depth += (kind == "open") - (kind == "close")
        after_operand = kind in ("operand", "close")
        if depth > MAX_FILTER_DEPTH:
            raise FilterError(f"brackets nested more than {MAX_FILTER_DEPTH} deep; at most "
                              f"{MAX_FILTER_DEPTH} levels are accepted")
        if operators > MAX_FILTER_OPERATORS:
            raise FilterError(f"more than {MAX_FILTER_OPERATORS} operators (AND, OR, NOT, "
                              f"comparisons, arithmetic); at most {MAX_FILTER_OPERATORS} "
                              "are accepted")
        if run > MAX_PREFIX_RUN:
            raise FilterError(f"more than {MAX_PREFIX_RUN} prefix operators (NOT, -, +) "
                              f"in a row; at most {MAX_PREFIX_RUN} are accepted")


def _op(node: Any) -> tuple[str | None, list]:
    """The operator and arguments of an operation node; (None, []) for anything else."""
    if (isinstance(node, dict) and isinstance(node.get("op"), str)
            and isinstance(node.get("args"), list)):
        return node["op"], node["args"]
    return None, []


def _comparison(node: Any) -> tuple[str | None, str | None, Any]:
    """(operator, queryable, value) of an operation on a property and a value; the
    queryable is None for any other node."""
    op, args = _op(node)
    if len(args) == 2 and isinstance(args[0], dict) and args[0].keys() == {"property"}:
        return op, args[0]["property"], args[1]
    return op, None, None


def _described(node: Any) -> str:
    """A node, named for an error message: its operator, or a literal cut short."""
    op, _ = _op(node)
    return op or (repr(node)[:40] if isinstance(node, str | int | float | None) else
                  "this expression")


def _texts(value: Any, what: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise FilterError(f"{what} takes text values such as 'DE'")
    return values


def _countries(value: Any) -> frozenset[str]:
    codes = [v.strip().upper() for v in _texts(value, "country")]
    bad = [c for c in codes if len(c) != 2 or not c.isascii() or not c.isalpha()]
    if bad:
        raise FilterError(f"{bad[0][:20]!r}: country takes ISO 3166-1 alpha-2 codes such "
                          "as 'DE'")
    return frozenset(codes)


def _city(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_CITY_CHARS or _CONTROL.search(value):
        raise FilterError(f"city takes one text value of at most {MAX_CITY_CHARS} "
                          "characters, such as 'Berlin'")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _capacity(value: Any, above: bool) -> int:
    """The least whole capacity that passes ``capacity > value`` (``above``) or
    ``capacity >= value``."""
    if not _is_number(value) or not math.isfinite(value):
        raise FilterError("capacity takes a finite number, such as capacity >= 10")
    low = math.floor(value) + 1 if above else math.ceil(value)
    if low > MAX_CAPACITY:
        raise FilterError(f"capacity is at most {MAX_CAPACITY}")
    return max(low, 0)


def _amenities(value: Any) -> frozenset[Amenity]:
    try:
        return frozenset(Amenity.parse(v) for v in _texts(value, "amenities"))
    except ValueError as exc:
        raise FilterError(str(exc)) from None


def _area(value: Any) -> BaseGeometry:
    """The area of ``BBOX(...)`` (2D or 3D: minimum corner, then maximum) or of a polygon."""
    if isinstance(value, dict) and value.keys() == {"bbox"}:
        box = value["bbox"]
        if (not isinstance(box, list) or len(box) not in (4, 6)
                or not all(_is_number(v) for v in box)):
            raise FilterError("BBOX takes 4 numbers: BBOX(minlon, minlat, maxlon, maxlat)")
        corners = box if len(box) == 4 else [box[0], box[1], box[3], box[4]]
        try:  # the bbox parameter's own rules: finite, in range, minlat < maxlat
            return bbox_area(*bbox(",".join(map(repr, corners))))
        except ValueError as exc:
            raise FilterError(f"BBOX: {exc}") from None
    try:
        return parse_area(value)
    except GeometryError as exc:
        raise FilterError(str(exc)) from None


# The supported comparisons: (queryable, operator) -> the filter (a keyword of
# geosearch.model.Filters, or "geometry" for the area) and how its value is read.
_COMPARISONS: dict[tuple[str, str], tuple[str, Callable[[Any], Any]]] = {
    ("country", "="): ("countries", _countries),
    ("country", "in"): ("countries", _countries),
    ("city", "="): ("city", _city),
    ("capacity", ">="): ("min_capacity", partial(_capacity, above=False)),
    ("capacity", ">"): ("min_capacity", partial(_capacity, above=True)),
    ("amenities", "a_contains"): ("all_amenities", _amenities),
    ("amenities", "a_overlaps"): ("any_amenities", _amenities),
    ("geometry", "s_intersects"): ("geometry", _area),
}


def _constraint(node: Any) -> tuple[str, Any] | None:
    """The filter and value of one conjunct that a filter of its own says: a supported
    comparison, or comparisons of country joined by OR; None for any other."""
    op, args = _op(node)
    if op == "or":
        joined = [_comparison(arg) for arg in args]
        if not joined or any(name != "country" or arg_op not in ("=", "in")
                             for arg_op, name, _ in joined):
            return None
        return "countries", frozenset().union(*(_countries(value) for _, _, value in joined))
    op, name, value = _comparison(node)
    if op is None or name is None or (name, op) not in _COMPARISONS:
        return None
    key, read = _COMPARISONS[name, op]
    return key, read(value)


# A comparison's operator with its sides swapped (10 > capacity is capacity < 10)
_SWAPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _literal(value: Any) -> str | float | None:
    """A scalar literal of a comparison (text or a finite number); None for a property."""
    if isinstance(value, dict) and value.keys() == {"property"}:
        return None
    if isinstance(value, str):
        if len(value) > MAX_CITY_CHARS or _CONTROL.search(value):
            raise FilterError(f"text values have at most {MAX_CITY_CHARS} characters")
        return value
    if _is_number(value) and math.isfinite(value):
        return float(value)
    raise FilterError(f"{_described(value)} is not a value Basic CQL2 compares here: "
                      "text such as 'DE' or a finite number")


def _field(node: Any) -> str:
    """The queryable a property node names, when a comparison can take it."""
    name = node["property"]
    if name in FIELDS:
        return str(name)
    if name in QUERYABLE or name == "geometry":
        raise FilterError(f"{name} is not compared with =, <>, <, <=, > or >=; "
                          "A_CONTAINS/A_OVERLAPS take amenities, S_INTERSECTS geometry")
    raise FilterError(f"{str(name)[:40]!r} is not a queryable; the queryables are "
                      f"{', '.join(QUERYABLE)} and geometry")


def _compared(op: str, args: list) -> tuple:
    """A comparison of a queryable with a value (either side), as a condition."""
    if len(args) != 2:
        raise FilterError(f"{op} compares two values")
    left, right = _literal(args[0]), _literal(args[1])
    if left is not None and right is not None:  # two literals: known now
        if isinstance(left, str) != isinstance(right, str):
            raise FilterError(f"{op} compares values of one type: text with text, numbers "
                              "with numbers")
        return ("const", bool(OPERATORS[op](left, right)))
    if left is None and right is None:
        raise FilterError("a queryable is compared with a value, not with another queryable")
    name = _field(args[0] if left is None else args[1])
    value = right if left is None else left
    op = op if left is None else _SWAPPED[op]
    if (FIELDS[name] == "number") != (not isinstance(value, str)):
        raise FilterError(f"{name} is compared with "
                          f"{'a number' if FIELDS[name] == 'number' else 'text'}")
    if name == "country":
        value = str(value).upper()
    elif name == "city":
        value = city_key(str(value))
    return ("cmp", name, op, value)


def _condition(tree: Any) -> tuple:
    """A Basic CQL2 condition (comparisons, IS NULL, NOT, AND, OR, TRUE, FALSE) on the
    scalar queryables as a :mod:`geosearch.predicate` tree; a FilterError for anything
    else. Its depth is bounded by the text's (:func:`check_text`)."""
    if isinstance(tree, bool):
        return ("const", tree)
    op, args = _op(tree)
    if op is not None and op in OPERATORS:
        return _compared(op, args)
    if op == "isNull" and len(args) == 1 and isinstance(args[0], dict) \
            and args[0].keys() == {"property"}:
        return ("null", _field(args[0]))
    if op == "not" and len(args) == 1:
        return ("not", _condition(args[0]))
    if op in ("and", "or") and args:
        return (op, *(_condition(arg) for arg in args))
    raise FilterError(f"{_described(tree)} is not supported here; supported: {SUPPORTED}")


def parse_filter(text: str, language: str | None = None) -> tuple[dict[str, Any],
                                                                   BaseGeometry | None]:
    """The filter keyword arguments (``countries``, ``city``, ``min_capacity``,
    ``all_amenities``, ``any_amenities``) and the area of a CQL2 text filter; each value
    valid for :class:`~geosearch.model.Filters`."""
    if language not in (None, "", *LANGUAGES):
        raise FilterError(f"filter-lang {language!r} is not supported; use {LANGUAGES[0]}")
    check_text(text)
    if text.lstrip().startswith("{"):  # the parser would read it: CQL2 text has no braces
        raise FilterError(f"this is cql2-json; filter takes {LANGUAGES[0]}")
    import cql2  # only when a filter is given: the serving path does not need it

    try:
        tree = cql2.Expr(text).to_json()
    except Exception as exc:  # the parser raises its own kinds: each is a 400
        where = " ".join(str(exc).split())[:160] or "unreadable"
        raise FilterError(f"not CQL2 text: {where}") from None
    values: dict[str, Any] = {}
    conditions: list[tuple] = []  # the conjuncts no filter of its own says
    pending = [tree]  # the conjuncts still to map, nested ANDs flattened
    while pending:
        node = pending.pop()
        op, args = _op(node)
        if op == "and":
            pending.extend(reversed(args))
            continue
        found = _constraint(node)
        if found is None or found[0] in values:
            conditions.append(_condition(node))
        else:
            values[found[0]] = found[1]
    if conditions:
        values["where"] = conditions[0] if len(conditions) == 1 else ("and", *conditions)
    return values, values.pop("geometry", None)
