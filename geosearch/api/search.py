"""The search blueprint: /spaces (radius, nearest, polygon, bbox, list, by id), /amenities.

Views parse the request into query objects, ask the backend, and render GeoJSON; they
hold no SQL and no geometry logic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from urllib.parse import quote, unquote_plus

import orjson
import shapely
from flask import Blueprint, Response, request

from geosearch.api import params
from geosearch.api.cursor import decode, encode, fingerprint
from geosearch.api.errors import ApiError, ParamError, register
from geosearch.api.geojson import (
    GEOJSON,
    VERSION_HEADER,
    GeometryError,
    collection,
    feature,
    parse_area,
)
from geosearch.api.params import shown
from geosearch.api.tiles import add_tile_routes
from geosearch.backends.base import Backend
from geosearch.geo import bbox_area
from geosearch.model import (
    Amenity,
    ListQuery,
    NearestQuery,
    Page,
    PolygonQuery,
    RadiusQuery,
)
from geosearch.settings import Settings

BODY_TYPES = ("application/geo+json", "application/json")
_DISTANCE_KEY = (float, str)
_ID_KEY = (str,)


def _geojson(body: dict | bytes, version: str | None = None) -> Response:
    """A GeoJSON response; ``version``: the dataset version that answered, as a header."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = Response(data, mimetype=GEOJSON)
    if version:
        response.headers[VERSION_HEADER] = version
    return response


_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def own_url(query_string: str | None = None) -> str:
    """This request's URL, with its own query string or ``query_string``.

    Built from the WSGI environ as the client addressed it (scheme, host, the mount
    prefix in ``SCRIPT_NAME`` and the path), so links stay right behind a prefix or a
    proxy that sets them; cheaper than rebuilding it through the URL map.
    """
    env = request.environ
    host = env.get("HTTP_HOST") or f"{env['SERVER_NAME']}:{env['SERVER_PORT']}"
    path = (env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")).encode("latin-1")
    query = env.get("QUERY_STRING", "") if query_string is None else query_string
    return (f"{env['wsgi.url_scheme']}://{host}{quote(path, safe=_PATH_SAFE)}"
            + (f"?{query}" if query else ""))


def next_url(cursor: str) -> str:
    """This request's URL with ``cursor`` replaced: the ``next`` link (the other
    parameters exactly as the client sent them)."""
    kept = [pair for pair in request.environ.get("QUERY_STRING", "").split("&")
            if pair and unquote_plus(pair.partition("=")[0]) != "cursor"]
    return own_url("&".join([*kept, f"cursor={cursor}"]))


class SearchViews:
    """The views of one mounted search API, bound to its backend."""

    def __init__(self, backend: Backend, max_body_bytes: int) -> None:
        self.backend = backend
        self.max_body_bytes = max_body_bytes

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _after(p: params.Params, query_fp: Callable[[], str],
               shape: tuple[type, ...]) -> tuple[tuple | None, str | None]:
        """The keyset of the request's cursor and the dataset version it belongs to;
        ``(None, None)`` on a first page. ``query_fp`` makes the query's fingerprint
        (only paging needs it). The version goes into the query, so that only a store
        serving it answers the page (410 when none does)."""
        cursor = p.raw("cursor")
        if not cursor:
            return None, None
        return decode(cursor, query_fp(), shape)

    @staticmethod
    def _page(page: Page, query_fp: Callable[[], str]) -> Response:
        cursor = link = None
        if page.next_after is not None:
            cursor = encode(page.next_after, page.version or "", query_fp())
            link = next_url(cursor)
        return _geojson(collection(page.hits, own_url(), link, cursor), page.version)

    # -- views --------------------------------------------------------------------------

    def radius(self) -> Response:
        """GET /spaces/radius"""
        p = params.Params(request.args)
        origin, radius_m = params.origin(p, required=True), params.radius(p)
        filters, limit = params.filters(p), params.limit(p)
        p.check()
        fp = partial(fingerprint, "radius", origin.lat, origin.lon, radius_m, filters.key())
        after, version = self._after(p, fp, _DISTANCE_KEY)
        return self._page(self.backend.radius(
            RadiusQuery(origin, radius_m, filters, limit, after, version)), fp)

    def nearest(self) -> Response:
        """GET /spaces/nearest"""
        p = params.Params(request.args)
        origin, k = params.origin(p, required=True), params.k(p)
        max_d, filters = params.max_distance(p), params.filters(p)
        p.check()
        hits = self.backend.nearest(NearestQuery(origin, k, max_d, filters))
        return _geojson(collection(hits, own_url()))

    def _area(self, area, p: params.Params, kind: str) -> Response:
        origin, filters, limit = (
            params.origin(p, required=False),
            params.filters(p),
            params.limit(p),
        )
        p.check()
        fp = partial(fingerprint, kind, shapely.to_wkb(area, hex=True), filters.key(),
                     None if origin is None else (origin.lat, origin.lon))
        after, version = self._after(p, fp, _ID_KEY if origin is None else _DISTANCE_KEY)
        return self._page(self.backend.polygon(
            PolygonQuery(area, filters, origin, limit, after, version)), fp)

    def polygon(self) -> Response:
        """POST /spaces/polygon"""
        p = params.Params(request.args)
        return self._area(self._body_area(), p, "polygon")

    def _body_area(self):
        mimetype = request.mimetype
        if mimetype and mimetype not in BODY_TYPES:
            raise ApiError(415, "Unsupported Media Type",
                           f"the body is {shown(mimetype)}; send {' or '.join(BODY_TYPES)}",
                           [ParamError("Content-Type", f"one of {', '.join(BODY_TYPES)}")])
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise ApiError(
                413,
                "Content Too Large",
                f"the body is {length} bytes; at most {self.max_body_bytes} are accepted",
                [ParamError("body", f"at most {self.max_body_bytes} bytes")],
            )
        data = request.stream.read(self.max_body_bytes + 1)
        if len(data) > self.max_body_bytes:
            raise ApiError(
                413,
                "Content Too Large",
                f"the body is over {self.max_body_bytes} bytes",
                [ParamError("body", f"at most {self.max_body_bytes} bytes")],
            )
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError.bad_params(
                [
                    ParamError(
                        "body",
                        "not valid JSON; send a GeoJSON Polygon or MultiPolygon geometry, "
                        "or a Feature holding one",
                    )
                ]
            ) from None
        try:
            return parse_area(doc)
        except GeometryError as exc:
            raise ApiError.bad_params([ParamError("body", str(exc))]) from None

    def bbox(self) -> Response:
        """GET /spaces/bbox"""
        p = params.Params(request.args)
        box = p.get("bbox", params.bbox, required=True)
        area = bbox_area(*box) if box else None
        if area is None:
            p.check()
        return self._area(area, p, "bbox")

    def list_spaces(self) -> Response:
        """GET /spaces"""
        p = params.Params(request.args)
        filters, limit = params.filters(p), params.limit(p)
        p.check()
        fp = partial(fingerprint, "list", filters.key())
        after, version = self._after(p, fp, _ID_KEY)
        return self._page(self.backend.list(ListQuery(filters, limit, after, version)), fp)

    def one(self, space_id: str) -> Response:
        """GET /spaces/<id>"""
        space = self.backend.get(space_id)
        if space is None:
            raise ApiError(404, "Not Found", f"no active space has the id {space_id!r}")
        return _geojson(feature(space))

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
    backend: Backend, name: str = "geosearch", max_body_bytes: int = Settings.max_body_bytes
) -> Blueprint:
    """A blueprint serving the /v1 search API over ``backend``.

    Mount it under any prefix: ``app.register_blueprint(search_blueprint(b),
    url_prefix="/geo/v1")``. Its client errors are problem+json; the host app's own
    handlers, config and routes are left alone.
    """
    bp = Blueprint(name, __name__)
    views = SearchViews(backend, max_body_bytes)
    bp.add_url_rule("/spaces/radius", "radius", views.radius, methods=["GET"])
    bp.add_url_rule("/spaces/nearest", "nearest", views.nearest, methods=["GET"])
    bp.add_url_rule("/spaces/polygon", "polygon", views.polygon, methods=["POST"])
    bp.add_url_rule("/spaces/bbox", "bbox", views.bbox, methods=["GET"])
    bp.add_url_rule("/spaces", "list", views.list_spaces, methods=["GET"])
    bp.add_url_rule("/spaces/<space_id>", "one", views.one, methods=["GET"])
    bp.add_url_rule("/amenities", "amenities", views.amenities, methods=["GET"])
    add_tile_routes(bp, backend)
    register(bp, app_wide=False)
    return bp
