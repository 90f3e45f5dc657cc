"""OGC API - Features (Part 1: Core, GeoJSON) over the same backend, mounted at /ogc.

One collection, ``spaces``. Items take ``bbox`` (``minlon > maxlon`` crosses the
antimeridian), ``limit`` (default 10; above 500 it is lowered to 500), ``cursor`` (from
the ``next`` link) and the property filters of /v1 (``amenities``, ``amenities_any``,
``country``, ``city``, ``min_capacity``, ``q``). Items are ordered by id.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache

import shapely
from flask import Blueprint, Response, request, url_for
from shapely.geometry.base import BaseGeometry

from geosearch.api import params
from geosearch.api.cql import FilterError, parse_filter, queryables
from geosearch.api.cursor import decode, encode, fingerprint
from geosearch.api.errors import ApiError, ParamError, register
from geosearch.api.geojson import GEOJSON, VERSION_HEADER, feature
from geosearch.api.geojson import collection as feature_collection
from geosearch.api.search import next_url, own_url
from geosearch.backends.base import Backend
from geosearch.geo import bbox_area
from geosearch.model import MAX_LIMIT, Filters, ListQuery, Page, PolygonQuery

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
DEFAULT_LIMIT = 10
COUNTS_KEPT = 256  # numberMatched of recent queries, per dataset version
MAX_CLIENT_LIMIT = 10**18  # any limit a client may ask for; MAX_LIMIT is what it gets
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


def _json(body: dict, mimetype: str = "application/json") -> Response:
    return Response(json.dumps(body, ensure_ascii=False), mimetype=mimetype)


def _link(rel: str, endpoint: str, kind: str = "application/json", title: str = "",
          **values) -> dict:
    link = {"rel": rel, "type": kind, "href": url_for(endpoint, _external=True, **values)}
    if title:
        link["title"] = title
    return link


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


def ogc_blueprint(backend: Backend, name: str = "ogc") -> Blueprint:
    """The OGC API - Features endpoints over ``backend`` (mount with ``url_prefix``)."""
    bp = Blueprint(name, __name__)
    count = lru_cache(maxsize=COUNTS_KEPT)(backend.count)

    def collection_doc() -> dict:
        return {
            "id": "spaces", "title": "Coworking spaces",
            "description": "Active coworking spaces of the marketplace",
            "itemType": "feature", "crs": [CRS84],
            "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]], "crs": CRS84}},
            "links": [
                _link("self", f"{name}.collection"),
                _link("items", f"{name}.items", GEOJSON, "The spaces"),
                *(_link(rel, f"{name}.queryables_doc", "application/schema+json",
                        "What the filter parameter can constrain")
                  for rel in ("http://www.opengis.net/def/rel/ogc/1.0/queryables",
                              "queryables")),
            ],
        }

    @bp.get("/")
    def landing():
        return _json({
            "title": "geosearch", "description": "Coworking spaces as OGC API - Features",
            "links": [
                _link("self", f"{name}.landing"),
                {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.1",
                 "href": url_for(f"{name}.api", _external=True)},
                _link("conformance", f"{name}.conformance"),
                _link("data", f"{name}.collections"),
            ]})

    @bp.get("/api")
    def api():
        from geosearch.api.openapi import ogc_document  # it documents this blueprint

        root = url_for(f"{name}.landing", _external=True).rstrip("/")
        return _json(ogc_document(root), "application/vnd.oai.openapi+json;version=3.0")

    @bp.get("/conformance")
    def conformance():
        return _json({"conformsTo": CONFORMANCE})

    @bp.get("/collections")
    def collections():
        return _json({"collections": [collection_doc()],
                      "links": [_link("self", f"{name}.collections")]})

    @bp.get("/collections/spaces")
    def collection():
        return _json(collection_doc())

    @bp.get("/collections/spaces/queryables")
    def queryables_doc():
        return _json(queryables(url_for(f"{name}.queryables_doc", _external=True)),
                     "application/schema+json")

    @bp.get("/collections/spaces/items")
    def items():
        p = params.Params(request.args)
        box = p.get("bbox", params.bbox)
        filters = params.filters(p)
        asked = p.get("limit", params.integer(1, MAX_CLIENT_LIMIT), DEFAULT_LIMIT)
        p.check()
        # OGC API - Features: a limit above the server's maximum is lowered to it, not refused
        limit = min(asked, MAX_LIMIT)
        area = None if box is None else bbox_area(*box)
        text = p.raw("filter")
        if text is not None:
            filters, area = _with_filter(filters, area, text, p.raw("filter-lang"))
        fp = fingerprint("ogc", None if area is None else shapely.to_wkb(area, hex=True),
                         filters.key())
        cursor = p.raw("cursor")
        after, version = decode(cursor, fp, (str,)) if cursor else (None, None)
        query = (ListQuery(filters, limit, after, version) if area is None
                 else PolygonQuery(area, filters, None, limit, after, version))
        page: Page = (backend.list(query) if isinstance(query, ListQuery)
                      else backend.polygon(query))
        # counted on the page's own dataset version (a swap in between: 410, never a
        # count of another dataset), once per query and version, not once per page
        matched = count(replace(query, limit=1, after=None, version=page.version))
        link = None
        if page.next_after is not None:  # OGC clients follow the link
            link = next_url(encode(page.next_after, page.version or "", fp))
        response = Response(feature_collection(page.hits, own_url(), link,
                                               links=[_link("collection", f"{name}.collection")],
                                               matched=matched), mimetype=GEOJSON)
        if page.version:
            response.headers[VERSION_HEADER] = page.version
        return response

    @bp.get("/collections/spaces/items/<space_id>")
    def item(space_id: str):
        space = backend.get(space_id)
        if space is None:
            raise ApiError(404, "Not Found", f"no active space has the id {space_id!r}")
        body = feature(space)
        body["links"] = [_link("self", f"{name}.item", GEOJSON, space_id=space_id),
                         _link("collection", f"{name}.collection")]
        return _json(body, GEOJSON)

    @bp.get("/collections/<collection_id>")
    @bp.get("/collections/<collection_id>/items")
    def unknown_collection(collection_id: str):
        raise ApiError(404, "Not Found", f"no collection {collection_id!r}; the only one is "
                       "'spaces'")

    register(bp, app_wide=False)
    return bp
