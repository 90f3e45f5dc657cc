"""JSON documents as responses: :func:`json_response` for the OGC API's documents,
:class:`Encoded` for answers made once and kept as bytes (the coverage endpoints')."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson
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
    (NaN, an infinity) is written as null."""
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False)
    except ValueError:  # only a body with such a number is walked
        text = json.dumps(_finite(body), ensure_ascii=False)
    return Response(text, mimetype=mimetype)


@dataclass(frozen=True)
class Encoded:
    """A response made once and answered many times: its body's bytes, media type and
    headers. A Flask ``Response`` is made from it per request (:meth:`response`)."""

    body: bytes
    mimetype: str
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, body: dict, mimetype: str = "application/json",
             headers: tuple[tuple[str, str], ...] = ()) -> Encoded:
        """``body`` as compact UTF-8 JSON, members in their order; NaN and infinities
        are written as null (as :func:`json_response` does), numpy numbers as numbers."""
        return cls(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), mimetype, headers)

    @property
    def nbytes(self) -> int:
        """The memory it holds: the body, the headers and the media type."""
        return (len(self.body) + len(self.mimetype)
                + sum(len(k) + len(v) for k, v in self.headers))

    def response(self) -> Response:
        """A response carrying these bytes and headers."""
        return Response(self.body, mimetype=self.mimetype, headers=list(self.headers))
