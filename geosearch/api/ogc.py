"""OGC API - Features (Part 1: Core, GeoJSON) over the same backend, mounted at /ogc.

One collection, ``spaces``. Items take ``bbox`` (``minlon > maxlon`` crosses the
antimeridian), ``limit`` (default 10; above 500 it is lowered to 500), ``cursor`` (from
the ``next`` link) and the property filters of /v1 (``amenities``, ``amenities_any``,
``country``, ``city``, ``min_capacity``, ``q``). Items are ordered by id.

Over a database (a :class:`~geosearch.writes.LiveStore`), Part 4 too: POST to the items
creates, PUT, PATCH and DELETE on an item replace, patch and close it, by the views and
rules of the /v1 writes (:mod:`geosearch.api.writes`: keys, ``If-Match``, 422, 409, 412,
428), where Part 4 asks for other answers (:class:`ItemWriteViews`). An item then has its
revision as its ``ETag``. Over a snapshot the write methods answer 405 and the
conformance document does not declare Part 4.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache, partial
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request, url_for
from shapely.geometry.base import BaseGeometry

from geosearch.api import consistency, params
from geosearch.api.cql import LANGUAGES, SUPPORTED, FilterError, parse_filter, queryables
from geosearch.api.cursor import query_fingerprint
from geosearch.api.errors import ApiError, ParamError
from geosearch.api.geojson import GEOJSON, feature
from geosearch.api.guard import CONTROL_CHARS, register
from geosearch.api.openapi import (
    OBJECT,
    PAGED_ERRORS,
    STAMPED,
    UNAVAILABLE,
    Operation,
    add_route,
    body,
    document,
    problem,
)
from geosearch.api.origin import absolute
from geosearch.api.paging import ID_KEY, after_of, page_response
from geosearch.api.params import (
    BBOX,
    CURSOR,
    FILTERS,
    TEXT,
    Param,
    Params,
    Parser,
    choice,
    integer,
    query_args,
)
from geosearch.api.responses import json_response
from geosearch.api.search import Revised, etag, space_or_404
from geosearch.api.writes import WriteViews, add_read_only_routes, add_write_routes
from geosearch.backends import readscope
from geosearch.backends.base import Backend
from geosearch.geo import bbox_area
from geosearch.model import MAX_LIMIT, Filters, ListQuery, PolygonQuery
from geosearch.writes import IfMatch, LiveStore, NotFound

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    # Part 3 and CQL2: clients send attribute filters to the server (geosearch.api.cql)
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
]
# Part 4 (OGC 20-002), declared by a server over a database: create, replace and delete;
# update by JSON Merge Patch; If-Match on the ETag (428 without one); features as the
# resources
WRITE_CONFORMANCE = [
    f"http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/{name}"
    for name in ("create-replace-delete", "update", "optimistic-locking-etags", "features")]
DEFAULT_LIMIT = 10
COUNTS_KEPT = 256  # numberMatched of recent queries, per dataset version
MAX_CLIENT_LIMIT = 10**18  # any limit a client may ask for; MAX_LIMIT is what it gets
OPENAPI_MEDIA = "application/vnd.oai.openapi+json;version=3.0"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
ITEMS_BBOX: Param[tuple[float, float, float, float] | None] = replace(
    BBOX, required=False, description=BBOX.description + "; optional")
ITEMS_LIMIT: Param[int] = Param(
    "limit", integer(1, MAX_CLIENT_LIMIT, f"a whole number of at least 1 (above {MAX_LIMIT} "
                                          f"it is lowered to {MAX_LIMIT})"),
    f"Page size; a limit above {MAX_LIMIT} is lowered "
    f"to {MAX_LIMIT} (OGC API - Features: a server caps, it does not refuse)", DEFAULT_LIMIT)
FILTER: Param[str | None] = Param("filter", TEXT, f"CQL2 text over the queryables; "
                                  f"supported: {SUPPORTED}")
FILTER_LANG: Param[str | None] = Param("filter-lang", choice(*LANGUAGES),
                                       "The language of filter (checked with or without one)")
ITEM_ID: Param[str] = Param(
    "id", Parser(str, {"type": "string", "pattern": f"^[^/{CONTROL_CHARS}]+$"}),
    "The space's id", where="path")
_JSON = body("application/json", OBJECT, "JSON")
_GEOJSON = body(GEOJSON, OBJECT, "GeoJSON")
LANDING = Operation("OGC API - Features landing page", _JSON)
API = Operation("The OpenAPI document of this OGC API alone",
                body(OPENAPI_MEDIA, OBJECT, "OpenAPI"))
CONFORMANCE_CLASSES = Operation("Conformance classes", _JSON)
COLLECTIONS = Operation("The collections (one: spaces)", _JSON)
COLLECTION = Operation("The spaces collection", _JSON)
QUERYABLES = Operation("What filter can constrain (JSON Schema)",
                       body("application/schema+json", OBJECT, "The queryables"))
ITEMS = Operation("Spaces as OGC API features, by id", _GEOJSON,
                  (ITEMS_BBOX, ITEMS_LIMIT, CURSOR, *FILTERS, FILTER, FILTER_LANG),
                  PAGED_ERRORS, headers=STAMPED)
ITEM = Operation("One space as an OGC API feature", _GEOJSON, (ITEM_ID,),
                 {"404": problem("No such collection or item"), **UNAVAILABLE},
                 headers={**STAMPED, "ETag": False})  # ETag: where spaces are written


def _url(endpoint: str, **values: Any) -> str:
    """The absolute URL of ``endpoint``, a view of the blueprint serving this request
    (on the service's own origin: :mod:`geosearch.api.origin`)."""
    return absolute(url_for(f".{endpoint}", **values))


def _link(rel: str, endpoint: str, kind: str = "application/json", title: str = "",
          **values: str) -> dict:
    link = {"rel": rel, "type": kind, "href": _url(endpoint, **values)}
    if title:
        link["title"] = title
    return link


def _collection_doc() -> dict:
    """The spaces collection, with its links."""
    return {
        "id": "spaces", "title": "Coworking spaces",
        "description": "Active coworking spaces of the marketplace",
        "itemType": "feature", "crs": [CRS84],
        "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]], "crs": CRS84}},
        "links": [
            _link("self", "collection"),
            _link("items", "items", GEOJSON, "The spaces"),
            *(_link(rel, "queryables_doc", "application/schema+json",
                    "What the filter parameter can constrain")
              for rel in ("http://www.opengis.net/def/rel/ogc/1.0/queryables", "queryables")),
        ],
    }


def landing() -> Response:
    """GET /"""
    return json_response({
        "title": "geosearch", "description": "Coworking spaces as OGC API - Features",
        "links": [
            _link("self", "landing"),
            {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.1",
             "href": _url("api")},
            _link("conformance", "conformance"),
            _link("data", "collections"),
        ]})


def api() -> Response:
    """GET /api: the routes of this blueprint, relative to its root, as OGC clients read
    them (GDAL looks for /collections/...)."""
    root = request.url_rule.rule.removesuffix("/api") if request.url_rule else ""
    doc = document(current_app, root, "geosearch OGC API - Features",
                   _url("landing").rstrip("/"))
    return json_response(doc, OPENAPI_MEDIA)


def conformance(classes: list[str]) -> Response:
    """GET /conformance: ``classes``, those of the server this blueprint serves."""
    return json_response({"conformsTo": classes})


def collections() -> Response:
    """GET /collections"""
    return json_response({"collections": [_collection_doc()],
                          "links": [_link("self", "collections")]})


def collection() -> Response:
    """GET /collections/spaces"""
    return json_response(_collection_doc())


def queryables_doc() -> Response:
    """GET /collections/spaces/queryables"""
    return json_response(queryables(_url("queryables_doc")), "application/schema+json")


def unknown_collection(collection_id: str) -> Response:
    """GET /collections/<collection_id> (and its items): 404, naming the one collection."""
    raise ApiError(404, "Not Found", f"no collection {collection_id!r}; the only one is "
                   "'spaces'")


def _with_filter(filters: Filters, area: BaseGeometry | None, text: str,
                 language: str | None) -> tuple[Filters, BaseGeometry | None]:
    """The filters and area of the request with its CQL2 ``filter`` added; a 400 when it
    cannot be mapped or constrains what a parameter already does."""
    try:
        values, where = parse_filter(text, language)
    except FilterError as exc:
        raise ApiError.bad_params([ParamError("filter", str(exc))]) from None
    taken = [k for k in values if getattr(filters, k)] + (
        ["bbox"] if where is not None and area is not None else [])
    if taken:
        raise ApiError.bad_params([ParamError("filter", f"{', '.join(taken)} is given both "
                                              "as a parameter and in the filter")])
    return replace(filters, **values), where if where is not None else area


def _selection(p: Params) -> tuple[Filters, BaseGeometry | None]:
    """The filters and the area (None: everywhere) of an items request: its parameters
    and its CQL2 filter."""
    filters, box = params.filters(p), p[ITEMS_BBOX]
    area = None if box is None else bbox_area(*box)
    text = p[FILTER]
    if text is not None:
        filters, area = _with_filter(filters, area, text, p[FILTER_LANG])
    return filters, area


class ItemViews:
    """The views of one mounted OGC API that read its backend: the items and an item
    (and, where spaces are written, an item's revision: ``revised``)."""

    def __init__(self, backend: Backend, revised: Revised | None = None) -> None:
        self.backend = backend
        self.revised = revised
        # numberMatched, per query, dataset version and change seq: counted once per
        # state of the data, not once per page
        self._count = lru_cache(maxsize=COUNTS_KEPT)(lambda query, _seq: backend.count(query))

    def items(self) -> Response:
        """GET /collections/spaces/items"""
        p = Params.read(query_args(), ITEMS.params).check()
        filters, area = _selection(p)
        # OGC API - Features: a limit above the server's maximum is lowered to it, not refused
        limit = min(p[ITEMS_LIMIT], MAX_LIMIT)
        fp = query_fingerprint("ogc", area, filters)
        after, version = after_of(p[CURSOR], fp, ID_KEY)
        query = (ListQuery(filters, limit, after, version) if area is None
                 else PolygonQuery(area, filters, None, limit, after, version))
        page = (self.backend.list(query) if isinstance(query, ListQuery)
                else self.backend.polygon(query))
        # counted on the page's own dataset version (a swap in between: 410, never a
        # count of another dataset), again once a write changed the data
        scope = readscope.current()
        seq = scope.stamp[1] if scope is not None and scope.stamp is not None else None
        matched = self._count(replace(query, limit=1, after=None, version=page.version), seq)
        return page_response(page, fp, [_link("collection", "collection")], matched)

    def item(self, id: str) -> Response:
        """GET /collections/spaces/items/<id>; with its revision as the ``ETag`` where
        spaces are written."""
        if self.revised is None:
            doc, tag = feature(space_or_404(self.backend, id)), None
        else:
            found = self.revised(id)
            if found is None:
                raise NotFound(id)
            doc, tag = orjson.loads(found[0]), etag(found[1])
        doc["links"] = [_link("self", "item", GEOJSON, id=id),
                        _link("collection", "collection")]
        response = json_response(doc, GEOJSON)
        if tag is not None:
            response.headers["ETag"] = tag
        return response


class ItemWriteViews(WriteViews):
    """The /v1 write views with Part 4's answers where they differ: a body without
    ``Content-Type`` is a 400 (/req/create-replace-delete/post-content-type), a
    ``Content-Crs`` other than CRS84 is a 400 (the body's coordinates are read as
    CRS84), and a write to an id no active space has is a 404 with or without
    ``If-Match`` (/req/create-replace-delete/put-rid-exception), not a 428."""

    def body(self, media_types: tuple[str, ...]) -> object:
        """The body (:meth:`WriteViews.body`), its media type and CRS checked first."""
        if not request.mimetype:
            raise ApiError.bad_params([ParamError(
                "Content-Type", f"required: one of {', '.join(media_types)}")])
        crs = request.headers.get("Content-Crs")
        if crs is not None and crs.strip().removeprefix("<").removesuffix(">") != CRS84:
            raise ApiError.bad_params([ParamError(
                "Content-Crs", f"<{CRS84}> (longitude, latitude), or no Content-Crs")])
        return super().body(media_types)

    def precondition(self, id: str) -> IfMatch:
        """:meth:`WriteViews.precondition`, once the space is known to exist when the
        request has no ``If-Match``."""
        if "If-Match" not in request.headers and self.live.get(id) is None:
            raise NotFound(id)
        return super().precondition(id)


def ogc_blueprint(backend: Backend, name: str = "ogc", live: LiveStore | None = None
                  ) -> Blueprint:
    """The OGC API - Features endpoints over ``backend`` (mount with ``url_prefix``);
    with ``live``, the writes of Part 4 on its database, else 405 on the write methods."""
    bp = Blueprint(name, __name__)
    views = ItemViews(backend, None if live is None else live.get)
    classes = CONFORMANCE if live is None else CONFORMANCE + WRITE_CONFORMANCE
    items, item = "/collections/spaces/items", "/collections/spaces/items/<id>"
    add_route(bp, "/", "landing", landing, LANDING)
    add_route(bp, "/api", "api", api, API)
    add_route(bp, "/conformance", "conformance", partial(conformance, classes),
              CONFORMANCE_CLASSES)
    add_route(bp, "/collections", "collections", collections, COLLECTIONS)
    add_route(bp, "/collections/spaces", "collection", collection, COLLECTION)
    add_route(bp, "/collections/spaces/queryables", "queryables_doc", queryables_doc,
              QUERYABLES)
    add_route(bp, items, "items", views.items, ITEMS)
    add_route(bp, item, "item", views.item, ITEM)
    if live is None:
        add_read_only_routes(bp, items, item)
    else:
        add_write_routes(bp, ItemWriteViews(live), items, item, ITEM_ID)
    consistency.install(bp, backend, reads=("items", "item"))
    for rule in ("/collections/<collection_id>", "/collections/<collection_id>/items"):
        add_route(bp, rule, "unknown_collection", unknown_collection, None)
    register(bp, app_wide=False)
    return bp
