"""CORS for browser clients on other origins (``GEOSEARCH_CORS_ORIGINS``, off by default).

An allowed ``Origin`` gets ``Access-Control-Allow-Origin`` on every response (errors
included, so that a page can read its problem+json), with the headers a client reads
(``ETag``, ``X-Dataset-Version``, ``Retry-After``) exposed; a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) is answered 204 with the methods and request headers
allowed. Another origin gets no CORS header: its browser keeps the response from it.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

from geosearch.api.geojson import VERSION_HEADER

MAX_AGE_S = 600
METHODS = "GET, POST, OPTIONS"
EXPOSED = f"ETag, {VERSION_HEADER}, Retry-After, Content-Length"


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

    def _preflight(self) -> Response | None:
        if (request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
                and self.allowed(request.headers.get("Origin"))):
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = METHODS
            asked = request.headers.get("Access-Control-Request-Headers")
            if asked:
                response.headers["Access-Control-Allow-Headers"] = asked
            response.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
            return response
        return None

    def _mark(self, response: Response) -> Response:
        origin = request.headers.get("Origin")
        if self.allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = (
                "*" if "*" in self.origins else origin)
            response.headers["Access-Control-Expose-Headers"] = EXPOSED
            if "*" not in self.origins:
                response.vary.add("Origin")
        return response
