"""Opaque keyset cursors, bound to the query and to the dataset version they came from."""

from __future__ import annotations

import base64
import hashlib
import json

import orjson

from geosearch.api.errors import ApiError, ParamError


def fingerprint(*parts: object) -> str:
    """A short digest of a query's defining parts (everything but the page size)."""
    return hashlib.sha256(orjson.dumps(parts, default=str)).hexdigest()[:16]


def encode(after: tuple, version: str, query_fp: str) -> str:
    """The cursor that continues after ``after`` for this query on this dataset."""
    raw = orjson.dumps({"v": version, "q": query_fp, "a": list(after)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, query_fp: str, shape: tuple[type, ...]) -> tuple[tuple, str]:
    """The keyset of a cursor and the dataset version it was issued for; 400 when
    malformed or for another query. The version goes into the query: only a store that
    serves it answers (410 when none does)."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = tuple(raw["a"])
        if len(after) != len(shape) or not all(
                isinstance(v, t) and not isinstance(v, bool)
                for v, t in zip(after, shape, strict=True)):
            raise ValueError
        stamp, query = str(raw["v"]), str(raw["q"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ApiError.bad_params([ParamError(
            "cursor", "not a cursor this service issued; pass the 'next' value unchanged")
        ]) from None
    if query != query_fp:
        raise ApiError.bad_params([ParamError(
            "cursor", "this cursor belongs to a different query; repeat the query's "
                      "parameters unchanged (only limit may change)")])
    return after, stamp
