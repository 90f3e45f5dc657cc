"""JSON documents as responses: the OGC API's documents and the coverage tables."""

from __future__ import annotations

import json
import math
from typing import Any

from flask import Response


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (anywhere inside it) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def json_response(body: dict, mimetype: str = "application/json") -> Response:
    """``body`` as JSON (UTF-8, members in their order); a number that JSON cannot hold
    (NaN, an infinity: a coverage table's share of nothing) is written as null."""
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False)
    except ValueError:  # only a body with such a number is walked
        text = json.dumps(_finite(body), ensure_ascii=False)
    return Response(text, mimetype=mimetype)
