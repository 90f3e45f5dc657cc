"""The search blueprint: /spaces (radius, nearest, polygon, bbox, list, by id), /amenities.

Views parse the request into query objects, ask the backend, and render GeoJSON; they
hold no SQL and no geometry logic.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from flask import Blueprint, Response, request
from flask.blueprints import BlueprintSetupState
from shapely.geometry.base import BaseGeometry
from werkzeug.routing import BaseConverter

from geosearch.api import consistency, params
from geosearch.api.cursor import query_fingerprint
from geosearch.api.errors import ApiError, ParamError
from geosearch.api.geojson import (
    GEOJSON,
    GeometryError,
    collection,
    feature,
    read_area,
)
from geosearch.api.guard import CONTROL_CHARS, register
from geosearch.api.openapi import (
    ERRORS,
    PAGED_ERRORS,
    SPACES,
    STAMPED,
    UNAVAILABLE,
    Operation,
    add_route,
    body,
    problem,
    ref,
)
from geosearch.api.paging import (
    DISTANCE_KEY,
    ID_KEY,
    after_of,
    geojson_response,
    own_url,
    page_response,
)
from geosearch.api.params import (
    BBOX,
    CURSOR,
    FILTERS,
    LAT,
    LIMIT,
    LON,
    MAX_DISTANCE,
    OPTIONAL_ORIGIN,
    PAGING,
    RADIUS_M,
    K,
    Param,
    Params,
    Parser,
    query_args,
)
from geosearch.api.tiles import add_tile_routes
from geosearch.backends.base import Backend
from geosearch.geo import bbox_area
from geosearch.model import (
    MAX_VERTICES,
    Amenity,
    ListQuery,
    NearestQuery,
    Point,
    PolygonQuery,
    RadiusQuery,
    Space,
    shown,
)
from geosearch.settings import Settings

BODY_TYPES = (GEOJSON, "application/json")


def request_body(max_bytes: int, media_types: tuple[str, ...]) -> bytes:
    """The request's body, of one of ``media_types`` (415) and at most ``max_bytes``
    (413), read no further than one byte past the limit."""
    mimetype = request.mimetype
    if mimetype and mimetype not in media_types:
        raise ApiError(415, "Unsupported Media Type",
                       f"the body is {shown(mimetype)}; send {' or '.join(media_types)}",
                       [ParamError("Content-Type", f"one of {', '.join(media_types)}")])
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(413, "Content Too Large",
                       f"the body is {length} bytes; at most {max_bytes} are accepted",
                       [ParamError("body", f"at most {max_bytes} bytes")])
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(413, "Content Too Large", f"the body is over {max_bytes} bytes",
                       [ParamError("body", f"at most {max_bytes} bytes")])
    return data


def space_or_404(backend: Backend, space_id: str) -> Space:
    """The active space with this id; 404 when there is none."""
    space = backend.get(space_id)
    if space is None:
        raise ApiError(404, "Not Found", f"no active space has the id {space_id!r}")
    return space


# The names of the search endpoints under /spaces/: never a space's id, so that a method
# those routes do not serve is a 405 naming theirs (GET /spaces/polygon), not a 404
RESERVED_IDS = ("radius", "nearest", "polygon", "bbox")
_NOT_RESERVED = f"(?!(?:{'|'.join(RESERVED_IDS)})$)"
SPACE_ID: Param[str] = Param(
    "id", Parser(str, {"type": "string",
                       "pattern": f"^{_NOT_RESERVED}[^/{CONTROL_CHARS}]+$"}),
    "The space's id (the search endpoints' names excepted)", where="path")
# the rule of one space's routes (read, replace, patch, close): see space_id_converter
SPACE_RULE = "/spaces/<space_id:id>"


class SpaceIdConverter(BaseConverter):
    """A path segment that is a space's id: any segment but the search endpoints' names."""

    regex = f"{_NOT_RESERVED}[^/]+"


def space_id_converter(bp: Blueprint) -> None:
    """Have the app ``bp`` is registered on read ``<space_id:...>`` in rules (before
    ``bp``'s own rules are added)."""
    def record(state: BlueprintSetupState) -> None:
        state.app.url_map.converters["space_id"] = SpaceIdConverter

    bp.record_once(record)
RADIUS = Operation(
    "Spaces within a radius, nearest first", SPACES,
    (LAT, LON, RADIUS_M, *FILTERS, *PAGING), PAGED_ERRORS, "Ordered by distance_m, then id.",
    headers=STAMPED)
NEAREST = Operation(
    "The k nearest spaces that pass the filters", SPACES,
    (LAT, LON, K, MAX_DISTANCE, *FILTERS), ERRORS,
    "Ordered by distance_m, then id; the filters apply before k is counted.",
    headers=STAMPED)
BBOX_SEARCH = Operation("Spaces in a bounding box", SPACES,
                        (BBOX, *FILTERS, *PAGING, *OPTIONAL_ORIGIN), PAGED_ERRORS,
                        "By id, or by distance_m from the origin when one is given.",
                        headers=STAMPED)
LIST = Operation("Every space that passes the filters, by id", SPACES, (*FILTERS, *PAGING),
                 PAGED_ERRORS, headers=STAMPED)
ONE = Operation("One space", body(GEOJSON, ref("Space"), "The space"), (SPACE_ID,),
                {"404": problem("No active space has this id"), **UNAVAILABLE},
                headers={**STAMPED, "ETag": False})  # ETag: where spaces are written
AMENITIES = Operation(
    "The amenity vocabulary with counts of active spaces",
    body("application/json", {
        "type": "object", "required": ["amenities"],
        "properties": {"amenities": {"type": "array", "items": {
            "type": "object", "required": ["name", "label", "count"],
            "properties": {"name": {"enum": [a.value for a in Amenity]},
                           "label": {"type": "string"}, "count": {"type": "integer"}}}}}},
        "The vocabulary"), errors=UNAVAILABLE, headers=STAMPED)


def polygon_operation(max_body_bytes: int) -> Operation:
    """POST /spaces/polygon, with the body limits this API was built with."""
    area = {
        "description": "A GeoJSON Polygon or MultiPolygon (lon/lat, straight edges, holes "
                       "honoured; split at ±180° to cross the antimeridian), or a Feature "
                       f"holding one; at most {MAX_VERTICES:,} vertices, body at most "
                       f"{max_body_bytes:,} bytes",
        "type": "object", "required": ["type"],
        "properties": {"type": {"enum": ["Polygon", "MultiPolygon", "Feature"]},
                       "coordinates": {"type": "array"}, "geometry": {"type": "object"}},
    }
    return Operation(
        "Spaces covered by a polygon (boundary included)", SPACES,
        (*FILTERS, *PAGING, *OPTIONAL_ORIGIN),
        {**PAGED_ERRORS, "413": problem(f"The body is over {max_body_bytes:,} bytes"),
         "415": problem("The body is not JSON (Content-Type)")},
        "By id, or by distance_m from the origin when one is given.",
        {"required": True, "content": {media: {"schema": area} for media in BODY_TYPES}},
        headers=STAMPED)


# A space's Feature (JSON) and revision by id, from the store that takes writes; None
# when no active space has the id
Revised = Callable[[str], tuple[bytes, int] | None]


def etag(revision: int) -> str:
    """The ``ETag`` of a space at ``revision`` (a strong entity tag)."""
    return f'"{revision}"'


class SearchViews:
    """The views of one mounted search API, bound to its backend (and, when it takes
    writes, to the spaces' revisions: ``revised``)."""

    def __init__(self, backend: Backend, max_body_bytes: int,
                 revised: Revised | None = None) -> None:
        self.backend = backend
        self.max_body_bytes = max_body_bytes
        self.polygon_op = polygon_operation(max_body_bytes)
        self.revised = revised

    # -- views --------------------------------------------------------------------------

    def radius(self) -> Response:
        """GET /spaces/radius"""
        p = Params.read(query_args(), RADIUS.params).check()
        origin, radius_m, filters = Point(p[LAT], p[LON]), p[RADIUS_M], params.filters(p)
        fp = query_fingerprint("radius", origin.lat, origin.lon, radius_m, filters)
        after, version = after_of(p[CURSOR], fp, DISTANCE_KEY)
        return page_response(self.backend.radius(
            RadiusQuery(origin, radius_m, filters, p[LIMIT], after, version)), fp)

    def nearest(self) -> Response:
        """GET /spaces/nearest"""
        p = Params.read(query_args(), NEAREST.params).check()
        hits = self.backend.nearest(NearestQuery(Point(p[LAT], p[LON]), p[K], p[MAX_DISTANCE],
                                                 params.filters(p)))
        return geojson_response(collection(hits, own_url()))

    def _area(self, p: Params, kind: str, area_of: Callable[[], BaseGeometry]) -> Response:
        """A polygon or bbox page: the request's origin, filters and paging, then the area
        (``area_of``, once the parameters are known to be valid)."""
        origin = params.optional_origin(p)
        p.check()
        area, filters = area_of(), params.filters(p)
        fp = query_fingerprint(kind, area, filters,
                               None if origin is None else (origin.lat, origin.lon))
        after, version = after_of(p[CURSOR], fp, ID_KEY if origin is None else DISTANCE_KEY)
        return page_response(self.backend.polygon(
            PolygonQuery(area, filters, origin, p[LIMIT], after, version)), fp)

    def polygon(self) -> Response:
        """POST /spaces/polygon"""
        area = self._body_area()  # the body's own errors (413, 415) come first
        return self._area(Params.read(query_args(), self.polygon_op.params), "polygon",
                          lambda: area)

    def _body_area(self) -> BaseGeometry:
        """The area in the request body; 413/415/400 naming what is wrong."""
        data = request_body(self.max_body_bytes, BODY_TYPES)
        try:
            return read_area(data)
        except GeometryError as exc:
            raise ApiError.bad_params([ParamError("body", str(exc))]) from None

    def bbox(self) -> Response:
        """GET /spaces/bbox"""
        p = Params.read(query_args(), BBOX_SEARCH.params)
        return self._area(p, "bbox", lambda: bbox_area(*p[BBOX]))

    def list_spaces(self) -> Response:
        """GET /spaces"""
        p = Params.read(query_args(), LIST.params).check()
        filters = params.filters(p)
        fp = query_fingerprint("list", filters)
        after, version = after_of(p[CURSOR], fp, ID_KEY)
        return page_response(self.backend.list(ListQuery(filters, p[LIMIT], after, version)), fp)

    def one(self, id: str) -> Response:
        """GET /spaces/<id>; with its revision as the ``ETag`` where spaces are written."""
        if self.revised is None:
            return geojson_response(feature(space_or_404(self.backend, id)))
        found = self.revised(id)
        if found is None:
            raise ApiError(404, "Not Found", f"no active space has the id {id!r}")
        body, revision = found
        response = geojson_response(body)
        response.headers["ETag"] = etag(revision)
        return response

    def amenities(self) -> Response:
        """GET /amenities"""
        counts = self.backend.amenity_counts()
        body = {
            "amenities": [
                {"name": a.value, "label": a.label, "count": counts.get(a.value, 0)}
                for a in Amenity
            ]
        }
        return Response(orjson.dumps(body), mimetype="application/json")


def search_blueprint(
    backend: Backend, name: str = "geosearch", max_body_bytes: int = Settings.max_body_bytes,
    revised: Revised | None = None
) -> Blueprint:
    """A blueprint serving the /v1 search API over ``backend``.

    Mount it under any prefix: ``app.register_blueprint(search_blueprint(b),
    url_prefix="/geo/v1")``. Its client errors are problem+json; the host app's own
    handlers, config and routes are left alone; its routes are documented in the host's
    ``/openapi.json`` (:func:`geosearch.api.openapi.openapi_blueprint`) under that prefix.
    ``revised``: where spaces are written, a space and its revision by id (its ``ETag``).
    Every answer says what answered it (``X-Dataset-Version``, ``X-Change-Seq``) and
    honours a consistency token (:mod:`geosearch.api.consistency`).
    """
    bp = Blueprint(name, __name__)
    views = SearchViews(backend, max_body_bytes, revised)
    space_id_converter(bp)
    add_route(bp, "/spaces/radius", "radius", views.radius, RADIUS)
    add_route(bp, "/spaces/nearest", "nearest", views.nearest, NEAREST)
    add_route(bp, "/spaces/polygon", "polygon", views.polygon, views.polygon_op, ("POST",))
    add_route(bp, "/spaces/bbox", "bbox", views.bbox, BBOX_SEARCH)
    add_route(bp, "/spaces", "list", views.list_spaces, LIST)
    add_route(bp, SPACE_RULE, "one", views.one, ONE)
    add_route(bp, "/amenities", "amenities", views.amenities, AMENITIES)
    add_tile_routes(bp, backend)
    consistency.install(bp, backend)
    register(bp, app_wide=False)
    return bp
