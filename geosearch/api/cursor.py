"""Opaque keyset cursors, bound to the query and to the dataset version they came from.

A cursor is base64url of ``{"v": version, "q": query fingerprint, "a": keyset}``. One
that comes back is read against that exact shape before anything of it is used: at most
:data:`MAX_CURSOR_CHARS` characters of the base64url alphabet, strict JSON (orjson: no
NaN or Infinity, no lone surrogate), exactly those three members, the fingerprint 16 hex
digits, the version and the keyset's texts free of control characters (PostgreSQL refuses
NUL), its numbers finite (its whole numbers, seqs of the change feed, within 0 ..
2**53 - 1), each of the keyset's values of the type its page order says.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Callable

import orjson
import shapely
from shapely.geometry.base import BaseGeometry

from geosearch.api.errors import ApiError, ParamError
from geosearch.api.guard import CONTROL_CHARS
from geosearch.changes import MAX_SEQ
from geosearch.model import Filters

# Longer than the cursor of any real keyset (one of an id of 3,000 ASCII characters fits);
# checked before the text is decoded at all.
MAX_CURSOR_CHARS = 4096
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")


def fingerprint(*parts: object) -> str:
    """A short digest of a query's defining parts (everything but the page size)."""
    return hashlib.sha256(orjson.dumps(parts, default=str)).hexdigest()[:16]


def _part(value: object) -> object:
    """A part of a query as its fingerprint takes it."""
    if isinstance(value, Filters):
        return value.key()
    if isinstance(value, BaseGeometry):
        return shapely.to_wkb(value, hex=True)
    return value


def query_fingerprint(*parts: object) -> Callable[[], str]:
    """The :func:`fingerprint` of a query's defining ``parts``, made when called: only
    paging needs it (to check a cursor, or to issue the next one), and most requests do
    neither. Filters count by their ``key()`` and an area by its WKB, taken only then."""
    return lambda: fingerprint(*map(_part, parts))


def encode(after: tuple, version: str, query_fp: str) -> str:
    """The cursor that continues after ``after`` for this query on this dataset."""
    raw = orjson.dumps({"v": version, "q": query_fp, "a": list(after)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _text(value: object) -> bool:
    return isinstance(value, str) and not _CONTROL.search(value)


def _value(value: object, kind: type) -> bool:
    """Whether a keyset value is of the type its position takes (a bool is no number)."""
    if kind is str:
        return _text(value)
    if kind is float:
        return isinstance(value, float) and math.isfinite(value)
    if kind is int:
        return type(value) is int and 0 <= value <= MAX_SEQ
    return type(value) is kind


def _read(cursor: str, shape: tuple[type, ...]) -> tuple[tuple, str, str] | None:
    """The keyset, version and query fingerprint of a cursor of exactly the issued shape
    with a keyset of ``shape``; None for anything else."""
    if len(cursor) > MAX_CURSOR_CHARS or not _BASE64URL.fullmatch(cursor):
        return None
    text = cursor.rstrip("=")
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:  # base64 (binascii.Error) or JSON (orjson.JSONDecodeError)
        return None
    if not isinstance(doc, dict) or doc.keys() != {"v", "q", "a"}:
        return None
    after, version, query = doc["a"], doc["v"], doc["q"]
    if not (isinstance(after, list) and len(after) == len(shape) and _text(version)
            and isinstance(query, str) and _FINGERPRINT.fullmatch(query)
            and all(_value(v, kind) for v, kind in zip(after, shape, strict=True))):
        return None
    return tuple(after), version, query


def decode(cursor: str, query_fp: str, shape: tuple[type, ...]) -> tuple[tuple, str]:
    """The keyset of a cursor and the dataset version it was issued for; 400 when
    malformed or for another query. The version goes into the query: only a store that
    serves it answers (410 when none does)."""
    read = _read(cursor, shape)
    if read is None:
        raise ApiError.bad_params([ParamError(
            "cursor", "not a cursor this service issued; pass the 'next' value unchanged")])
    after, stamp, query = read
    if query != query_fp:
        raise ApiError.bad_params([ParamError(
            "cursor", "this cursor belongs to a different query; repeat the query's "
                      "parameters unchanged (only limit may change)")])
    return after, stamp
