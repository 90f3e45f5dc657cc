"""CORS for browser clients on other origins (``GEOSEARCH_CORS_ORIGINS``, off by default).

An allowed ``Origin`` gets ``Access-Control-Allow-Origin`` on every response (errors
included, so that a page can read its problem+json), with the headers a client reads
(``ETag``, ``Location``, ``X-Dataset-Version``, ``X-Change-Seq``, ``X-Consistency-Token``,
``Retry-After``) exposed; a preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) is answered 204 with the methods of
the reads and of the writes, and the request headers the API reads. Another origin gets no
CORS header: its browser keeps the response from it.

The request headers allowed are a fixed list, :data:`HEADERS`, not an echo of the
preflight's ``Access-Control-Request-Headers``:

- it says what the API reads: a key (``Authorization``), a write's precondition
  (``If-Match``), a body's media type (``Content-Type``: JSON is not a type a browser
  sends without asking), the OGC API's ``Content-Crs`` and a read's
  ``X-Consistency-Token``. A header outside it would be
  ignored by the server; the browser refuses to send it instead, so that a page finds
  out at once;
- ``Authorization`` must be named: a wildcard does not cover it;
- every preflight gets the same answer, so nothing a client sent is written back into a
  response header, and a cache between them may keep one answer per origin.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

from geosearch.api.consistency import TOKEN_HEADER
from geosearch.api.geojson import CHANGE_SEQ_HEADER, VERSION_HEADER

MAX_AGE_S = 600
METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
HEADERS = f"Authorization, Content-Type, If-Match, Content-Crs, {TOKEN_HEADER}"
EXPOSED = (f"ETag, Location, {VERSION_HEADER}, {CHANGE_SEQ_HEADER}, {TOKEN_HEADER}, "
           "Retry-After, Content-Length")


class Cors:
    """The CORS policy of an app: ``origins`` allowed (``*`` for any)."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(o.rstrip("/") for o in origins)

    def allowed(self, origin: str | None) -> bool:
        """Whether a page from ``origin`` may read the responses."""
        return origin is not None and ("*" in self.origins or origin in self.origins)

    def attach(self, app: Flask) -> None:
        """Answer preflights and mark the responses of ``app``."""
        app.before_request(self._preflight)
        app.after_request(self._mark)

    def mark(self, response: Response, origin: str | None) -> Response:
        """``response`` with the CORS headers for a page from ``origin``: none when the
        origin is not allowed."""
        if self.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = (
                "*" if "*" in self.origins else origin)
            response.headers["Access-Control-Expose-Headers"] = EXPOSED
            if "*" not in self.origins:
                response.vary.add("Origin")
        return response

    def _preflight(self) -> Response | None:
        if (request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
                and self.allowed(request.headers.get("Origin"))):
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = METHODS
            response.headers["Access-Control-Allow-Headers"] = HEADERS
            response.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
            return response
        return None

    def _mark(self, response: Response) -> Response:
        return self.mark(response, request.headers.get("Origin"))
