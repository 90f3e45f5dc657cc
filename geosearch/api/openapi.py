"""The OpenAPI 3.1 document, generated from the app's own routes.

Each view is registered with an :class:`Operation` (its summary, its declared parameters
from :mod:`geosearch.api.params`, its responses) by :func:`add_route`, the one way the
API's blueprints register their routes. :func:`document` walks the URL map of
the app that serves it, so the paths carry whatever prefix the blueprints were mounted
under, and the parameters are the ones the views read, with the bounds they enforce.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from geosearch.api.geojson import GEOJSON
from geosearch.api.params import Param
from geosearch.model import FEATURE_PROPERTIES, field_schema

OBJECT = {"type": "object"}
_RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def ref(name: str) -> dict:
    """A reference to one of :data:`SCHEMAS`."""
    return {"$ref": f"#/components/schemas/{name}"}


def _header(description: str, pattern: str | None = None) -> dict:
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return {"description": description, "schema": schema}


_DIGITS = "^[0-9]+$"
# The response headers the API sends, by name (where each is sent: Operation.headers)
HEADERS = {
    "X-Request-ID": _header("The id of the request's log lines (also in a problem's "
                            "request_id)"),
    "X-Dataset-Version": _header("The dataset version that answered"),
    "X-Change-Seq": _header("The change feed's seq the answer holds every write up to "
                            "(0 over a snapshot)", _DIGITS),
    "ETag": _header("The entity tag: a space's revision (where spaces are written), a "
                    "tile's dataset version and filters"),
    "Cache-Control": _header("How long a client may keep the answer"),
    "Retry-After": _header("Seconds to wait before trying again", _DIGITS),
    "X-Consistency-Token": _header("The write's seq: send it back on a read to see the "
                                   "write"),
    "Location": _header("The URL of the space created"),
}
# What every search answer says about the data that answered it
STAMPED = {"X-Dataset-Version": True, "X-Change-Seq": True}


def with_headers(response: Mapping[str, Any], headers: Mapping[str, bool]) -> dict:
    """``response`` declaring ``headers`` (name: whether every such answer has it) and
    ``X-Request-ID`` (every answer has it)."""
    declared = {"X-Request-ID": True, **headers}
    return {**response, "headers": {name: {**HEADERS[name], "required": required}
                                    for name, required in declared.items()}}


def problem(description: str, headers: Mapping[str, bool] | None = None) -> dict:
    """A problem+json response (with ``headers``: :func:`with_headers`)."""
    return with_headers({"description": description,
                         "content": {"application/problem+json": {"schema": ref("Problem")}}},
                        headers or {})


def body(media: str, schema: Mapping[str, Any], description: str) -> dict:
    """A response (or request body) of one media type."""
    return {"description": description, "content": {media: {"schema": schema}}}


ERRORS = {"400": problem("Invalid parameters, each named with what is valid"),
          "503": problem("The store is unavailable or holds no dataset",
                         {"Retry-After": True})}
PAGED_ERRORS = {**ERRORS, "410": problem("The cursor was issued for an older dataset")}
UNAVAILABLE = {"503": ERRORS["503"]}
# Any request can be refused before its parameters are read: control characters or bad
# UTF-8 (400), an over-long request line (414), oversized headers (431), too many requests
# (429).
CLIENT_ERROR = problem("A client error: the problem names the parameter and what is valid "
                       "(Retry-After on a 429)", {"Retry-After": False})
SPACES = body(GEOJSON, ref("SpaceCollection"), "A page of spaces as a GeoJSON "
              "FeatureCollection")


def _space_schema() -> dict:
    """A space as a GeoJSON Feature: properties from the Space fields' own schemas."""
    properties = {name: field_schema(name) for name in FEATURE_PROPERTIES}
    properties["distance_m"] = {"type": "number", "minimum": 0,
                                "description": "WGS84 geodesic metres from the origin"}
    required = [n for n in FEATURE_PROPERTIES if "null" not in properties[n]["type"]]
    return {
        "type": "object", "required": ["type", "id", "geometry", "properties"],
        "properties": {
            "type": {"const": "Feature"}, "id": field_schema("id"),
            "geometry": {"type": "object", "required": ["type", "coordinates"], "properties": {
                "type": {"const": "Point"},
                "coordinates": {"type": "array", "items": {"type": "number"}, "minItems": 2,
                                "maxItems": 2}}},
            "properties": {"type": "object", "required": required, "properties": properties},
        },
    }


SCHEMAS = {
    "Problem": {
        "type": "object", "required": ["type", "title", "status", "detail", "errors"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "request_id": {"type": "string", "description": "The id of the request's log "
                           "lines (X-Request-ID): quote it when reporting a problem"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["param", "message"],
                "properties": {"param": {"type": "string"}, "message": {"type": "string"}}}},
        },
    },
    "Space": _space_schema(),
    "SpaceCollection": {
        "type": "object", "required": ["type", "features", "numberReturned", "links"],
        "properties": {
            "type": {"const": "FeatureCollection"},
            "features": {"type": "array", "items": ref("Space")},
            "numberReturned": {"type": "integer", "minimum": 0},
            "numberMatched": {"type": "integer", "minimum": 0},
            "next": {"type": "string", "description": "Cursor of the next page"},
            "links": {"type": "array", "items": {"type": "object", "required": ["rel", "href"],
                                                 "properties": {"rel": {"type": "string"},
                                                                "href": {"type": "string"},
                                                                "type": {"type": "string"}}}},
        },
    },
}


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says about one view: ``params`` are the declarations the
    view reads its request with; ``ok`` the 200 response; ``errors`` the other documented
    statuses (every operation may also answer a 4XX problem)."""

    summary: str
    ok: Mapping[str, Any]
    params: tuple[Param, ...] = ()
    errors: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    request_body: Mapping[str, Any] | None = None
    status: str = "200"  # of ``ok`` (a create's 201, a delete's 204)
    # the headers of ``ok`` (of HEADERS) but X-Request-ID: name -> whether it is always sent
    headers: Mapping[str, bool] = field(default_factory=dict)

    def openapi(self) -> dict:
        """The OpenAPI Operation Object."""
        op: dict[str, Any] = {
            "summary": self.summary, "parameters": [p.openapi() for p in self.params],
            "responses": {self.status: with_headers(self.ok, self.headers), **self.errors,
                          "4XX": CLIENT_ERROR}}
        if self.description:
            op["description"] = self.description
        if self.request_body is not None:
            op["requestBody"] = self.request_body
        return op


def add_route(bp: Blueprint, rule: str, endpoint: str, view: Callable[..., Any],
              operation: Operation | None, methods: tuple[str, ...] = ("GET",)) -> None:
    """Serve ``view`` (a function or a bound method) at ``rule`` on ``bp``, documented by
    ``operation`` in the OpenAPI document (None: a route the document leaves out)."""
    if operation is not None:
        # a partial can carry the operation (a bound method cannot), and calls the view
        # without a Python frame of its own
        documented = partial(view)
        documented.operation = operation  # type: ignore[attr-defined]
        view = documented
    bp.add_url_rule(rule, endpoint, view, methods=list(methods))


def openapi_path(rule: str) -> str:
    """A Werkzeug rule as an OpenAPI path template.

    >>> openapi_path("/v1/tiles/<int:z>/<x>/<y>.mvt")
    '/v1/tiles/{z}/{x}/{y}.mvt'
    """
    return _RULE_ARGUMENT.sub(r"{\1}", rule)


def operations(app: Flask, root: str = "") -> dict[str, dict[str, Operation]]:
    """Every documented route of ``app`` under the path ``root``: path (relative to
    ``root``) -> method -> operation. A route whose path parameters differ from its
    operation's raises ValueError (a view and its declaration out of step)."""
    found: dict[str, dict[str, Operation]] = {}
    for rule in app.url_map.iter_rules():
        op = getattr(app.view_functions[rule.endpoint], "operation", None)
        if op is None or not rule.rule.startswith(root):
            continue
        declared = {p.name for p in op.params if p.where == "path"}
        if declared != set(rule.arguments):
            raise ValueError(f"{rule.rule}: path parameters {sorted(rule.arguments)}, "
                             f"declared {sorted(declared)}")
        path = openapi_path(rule.rule.removeprefix(root)) or "/"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.setdefault(path, {})[method.lower()] = op
    return found


def document(app: Flask, root: str = "", title: str = "geosearch",
             server_url: str | None = None) -> dict:
    """The OpenAPI 3.1 document of ``app``'s documented routes under ``root`` (all of
    them by default), paths relative to ``root``; ``server_url`` where they are served."""
    paths = {path: {method: op.openapi() for method, op in methods.items()}
             for path, methods in sorted(operations(app, root).items())}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0",
                 "description": "Find coworking spaces: radius, nearest, polygon and bbox "
                                "search with amenity and text filters, vector tiles, "
                                "coverage reports, OGC API - Features."},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def openapi_json() -> Response:
    """GET /openapi.json: the document of the app that serves it, made once (the routes
    are fixed once serving)."""
    key = f"openapi:{request.script_root}"
    if key not in current_app.extensions:
        current_app.extensions[key] = document(current_app,
                                               server_url=request.script_root or None)
    return jsonify(current_app.extensions[key])


def openapi_blueprint() -> Blueprint:
    """Serves ``/openapi.json``: the document of the app it is registered on."""
    bp = Blueprint("openapi", __name__)
    add_route(bp, "/openapi.json", "openapi_json", openapi_json,
              Operation("This document", body("application/json", OBJECT, "OpenAPI 3.1")))
    return bp
