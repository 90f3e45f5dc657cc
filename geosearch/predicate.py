"""Boolean conditions on a space's scalar fields (``Filters.where``): the Basic CQL2
filters of the OGC items that the other filters cannot say (``<``, ``<>``, ``NOT``, ``OR``
across fields, ``IS NULL``), evaluated by both backends with SQL's three-valued logic.

A condition is a tree of tuples (hashable, so that a filter keys a cursor and a cache):

- ``("cmp", field, op, value)``: ``field op value``, ``op`` one of :data:`OPERATORS`;
- ``("null", field)``: the field has no value;
- ``("not", c)``, ``("and", c, ...)``, ``("or", c, ...)``; ``("const", True)``.

The fields are :data:`FIELDS`: ``country`` (the ISO code, text), ``city`` (the city as
compared by the ``city`` filter: trimmed and case-folded, text; the value is folded the
same way) and ``capacity`` (a number, or none). Text is ordered by code point. A
comparison with a field that has no value is unknown (neither true nor false), ``NOT`` of
unknown is unknown, and a space passes when its condition is true.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Where = tuple
FIELDS = {"country": "text", "city": "text", "capacity": "number"}
OPERATORS: Mapping[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge}
# The columns of the spaces' table each field is compared on (text by code point)
_SQL = {"country": 'country COLLATE "C"', "city": 'city_key COLLATE "C"',
        "capacity": "capacity::float8"}
# Kleene's logic on small integers: false < unknown < true; AND is the least, OR the
# greatest, NOT mirrors
FALSE, UNKNOWN, TRUE = 0, 1, 2


def to_sql(where: Where, params: dict[str, object]) -> str:
    """``where`` as an SQL condition on the spaces' table, its values added to
    ``params`` (named ``where_0``, ``where_1``...)."""
    kind = where[0]
    if kind == "const":
        return "TRUE" if where[1] else "FALSE"
    if kind == "null":
        return f"({_SQL[where[1]]} IS NULL)"
    if kind == "cmp":
        _, name, op, value = where
        key = f"where_{len(params)}"
        params[key] = value
        cast = "::float8" if FIELDS[name] == "number" else "::text"
        return f"({_SQL[name]} {op} %({key})s{cast})"
    if kind == "not":
        return f"(NOT {to_sql(where[1], params)})"
    return "(" + f" {kind.upper()} ".join(to_sql(c, params) for c in where[1:]) + ")"


def truth(where: Where, values: Callable[[str], np.ndarray], rows: int) -> np.ndarray:
    """The truth (:data:`FALSE`, :data:`UNKNOWN`, :data:`TRUE`) of ``where`` for each of
    ``rows`` spaces; ``values(field)`` gives a field's values of those rows (None or NaN:
    no value)."""
    kind = where[0]
    if kind == "const":
        return np.full(rows, TRUE if where[1] else FALSE, dtype=np.int8)
    if kind in ("null", "cmp"):
        column = values(where[1])
        missing = np.array([v is None or v != v for v in column], dtype=bool)
        if kind == "null":
            return np.where(missing, TRUE, FALSE).astype(np.int8)
        held = np.array([False if m else bool(OPERATORS[where[2]](v, where[3]))
                         for v, m in zip(column, missing, strict=True)], dtype=bool)
        return np.where(missing, UNKNOWN, np.where(held, TRUE, FALSE)).astype(np.int8)
    if kind == "not":
        return (TRUE - truth(where[1], values, rows)).astype(np.int8)
    parts = [truth(c, values, rows) for c in where[1:]]
    combine = np.minimum if kind == "and" else np.maximum
    out = parts[0]
    for part in parts[1:]:
        out = combine(out, part)
    return out


def passes(where: Where, values: Mapping[str, Any]) -> bool:
    """Whether one space whose fields are ``values`` passes ``where`` (the reference the
    backends are tested against)."""
    return bool(truth(where, lambda name: np.array([values[name]], dtype=object), 1)[0]
                == TRUE)
