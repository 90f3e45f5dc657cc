"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

from flask import Blueprint, jsonify

from geosearch.api.cql import LANGUAGES, SUPPORTED
from geosearch.api.ogc import MAX_CLIENT_LIMIT
from geosearch.api.tiles import MAX_AGE_S
from geosearch.model import (
    DEFAULT_K,
    DEFAULT_LIMIT,
    MAX_CAPACITY,
    MAX_K,
    MAX_LIMIT,
    MAX_RADIUS_M,
    MAX_TILE_ZOOM,
    POINT_ZOOM,
    Amenity,
)
from geosearch.reports.coverage import MAX_POPULATION, MIN_POPULATION
from geosearch.text import MAX_Q_CHARS, MAX_Q_TERMS
from geosearch.tiles import EXTENT, LAYER, MVT_MEDIA_TYPE

AMENITY_NAMES = [a.value for a in Amenity]
_AMENITY = "|".join(AMENITY_NAMES)
AMENITY_LIST = {"type": "string", "pattern": f"^({_AMENITY})?(,({_AMENITY}))*$"}
COUNTRY_LIST = {"type": "string", "pattern": "^([A-Za-z]{2})?(,[A-Za-z]{2})*$"}
_NUMBER = {"type": "number"}
_NULLABLE_STR = {"type": ["string", "null"]}


def _param(name: str, schema: dict, description: str, required: bool = False,
           where: str = "query") -> dict:
    return {"name": name, "in": where, "required": required, "description": description,
            "schema": schema}


def _ref(name: str, kind: str = "parameters") -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _problem(description: str) -> dict:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem", "schemas")}}}


def _body(media: str, schema: dict, description: str) -> dict:
    return {"description": description, "content": {media: {"schema": schema}}}


LAT = {"type": "number", "minimum": -90, "maximum": 90}
LON = {"type": "number", "minimum": -180, "maximum": 180}
PARAMETERS = {
    "lat": _param("lat", LAT, "Latitude of the origin, WGS84 degrees", True),
    "lon": _param("lon", LON, "Longitude of the origin, WGS84 degrees", True),
    "origin_lat": _param("lat", LAT, "Optional origin (with lon): order by distance from it"),
    "origin_lon": _param("lon", LON, "Optional origin (with lat)"),
    "amenities": _param("amenities", AMENITY_LIST,
                        "Comma-separated amenities; the space has all of them. Valid: "
                        + ", ".join(AMENITY_NAMES)),
    "amenities_any": _param("amenities_any", AMENITY_LIST,
                            "Comma-separated amenities; the space has at least one of them"),
    "country": _param("country", COUNTRY_LIST,
                      "Comma-separated ISO 3166-1 alpha-2 codes; any of them"),
    "city": _param("city", {"type": "string", "maxLength": 200},
                   "City as the space's record has it, case-insensitive"),
    "min_capacity": _param("min_capacity", {"type": "integer", "minimum": 0,
                                            "maximum": MAX_CAPACITY},
                           "At least this many desks"),
    "q": _param("q", {"type": "string", "maxLength": MAX_Q_CHARS},
                "Text: every word of it is the start of a word of the space's name, address "
                "or city, accents and case ignored (NFKD, combining marks removed, case "
                f"folded; words are runs of letters and digits); at most {MAX_Q_TERMS} "
                f"words and {MAX_Q_CHARS} characters"),
    "limit": _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                              "default": DEFAULT_LIMIT}, "Page size"),
    "cursor": _param("cursor", {"type": "string"},
                     "The `next` value of the previous page, passed back unchanged"),
}
FILTERS = [_ref(n) for n in ("amenities", "amenities_any", "country", "city", "min_capacity",
                             "q")]
PAGING = [_ref("limit"), _ref("cursor")]
ERRORS = {"400": _problem("Invalid parameters, each named with what is valid"),
          "503": _problem("The store is unavailable or holds no dataset")}
# Any request can be refused before its parameters are read: control characters or bad
# UTF-8 (400), an over-long request line (414), oversized headers (431), too many requests
# (429).
CLIENT_ERROR = _problem("A client error: the problem names the parameter and what is valid")
PAGED_ERRORS = {**ERRORS, "410": _problem("The cursor was issued for an older dataset")}
SPACES = _body("application/geo+json", _ref("SpaceCollection", "schemas"),
               "A page of spaces as a GeoJSON FeatureCollection")

SCHEMAS = {
    "Problem": {
        "type": "object", "required": ["type", "title", "status", "detail", "errors"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["param", "message"],
                "properties": {"param": {"type": "string"}, "message": {"type": "string"}}}},
        },
    },
    "Space": {
        "type": "object", "required": ["type", "id", "geometry", "properties"],
        "properties": {
            "type": {"const": "Feature"}, "id": {"type": "string"},
            "geometry": {"type": "object", "required": ["type", "coordinates"], "properties": {
                "type": {"const": "Point"},
                "coordinates": {"type": "array", "items": _NUMBER, "minItems": 2,
                                "maxItems": 2}}},
            "properties": {"type": "object", "required": [
                "name", "address", "city", "country", "amenities", "h3_r9",
                "geocode_precision"], "properties": {
                "name": {"type": "string"}, "address": {"type": "string"},
                "city": {"type": "string"}, "postcode": _NULLABLE_STR,
                "country": {"type": "string"},
                "amenities": {"type": "array", "items": {"enum": AMENITY_NAMES}},
                "capacity": {"type": ["integer", "null"]},
                "price_day": {"type": ["number", "null"]}, "currency": _NULLABLE_STR,
                "h3_r7": {"type": "string"}, "h3_r8": {"type": "string"},
                "h3_r9": {"type": "string"},
                "geocode_precision": {"enum": ["input", "street", "city"]},
                "distance_m": {"type": "number", "minimum": 0,
                               "description": "WGS84 geodesic metres from the origin"}}},
        },
    },
    "SpaceCollection": {
        "type": "object", "required": ["type", "features", "numberReturned", "links"],
        "properties": {
            "type": {"const": "FeatureCollection"},
            "features": {"type": "array", "items": _ref("Space", "schemas")},
            "numberReturned": {"type": "integer", "minimum": 0},
            "next": {"type": "string", "description": "Cursor of the next page"},
            "links": {"type": "array", "items": {"type": "object", "required": ["rel", "href"],
                                                 "properties": {"rel": {"type": "string"},
                                                                "href": {"type": "string"},
                                                                "type": {"type": "string"}}}},
        },
    },
    "Area": {
        "description": "A GeoJSON Polygon or MultiPolygon (lon/lat, straight edges, holes "
                       "honoured; split at ±180° to cross the antimeridian), or a Feature "
                       "holding one; at most 10,000 vertices, body at most 1 MiB",
        "type": "object", "required": ["type"],
        "properties": {"type": {"enum": ["Polygon", "MultiPolygon", "Feature"]},
                       "coordinates": {"type": "array"}, "geometry": {"type": "object"}},
    },
}


def _get(summary: str, parameters: list, ok: dict, errors: dict, description: str = "") -> dict:
    op = {"summary": summary, "parameters": parameters,
          "responses": {"200": ok, **errors, "4XX": CLIENT_ERROR}}
    if description:
        op["description"] = description
    return {"get": op}


def _paths() -> dict:
    origin = [_ref("lat"), _ref("lon")]
    optional_origin = [_ref("origin_lat"), _ref("origin_lon")]
    return {
        "/v1/spaces/radius": _get(
            "Spaces within a radius, nearest first",
            [*origin, _param("radius_m", {"type": "number", "exclusiveMinimum": 0,
                                          "maximum": MAX_RADIUS_M},
                             "Radius in metres (geodesic)", True), *FILTERS, *PAGING],
            SPACES, PAGED_ERRORS, "Ordered by distance_m, then id."),
        "/v1/spaces/nearest": _get(
            "The k nearest spaces that pass the filters",
            [*origin, _param("k", {"type": "integer", "minimum": 1, "maximum": MAX_K,
                                   "default": DEFAULT_K}, "How many"),
             _param("max_distance_m", {"type": "number", "minimum": 0},
                    "Only spaces at most this far"), *FILTERS],
            SPACES, ERRORS),
        "/v1/spaces/polygon": {"post": {
            "summary": "Spaces covered by a polygon (boundary included)",
            "parameters": [*FILTERS, *PAGING, *optional_origin],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("Area", "schemas")},
                "application/geo+json": {"schema": _ref("Area", "schemas")}}},
            "responses": {"200": SPACES, **PAGED_ERRORS,
                          "413": _problem("The body is over 1 MiB"),
                          "415": _problem("The body is not JSON (Content-Type)"),
                          "4XX": CLIENT_ERROR}}},
        "/v1/spaces/bbox": _get(
            "Spaces in a bounding box",
            [_param("bbox", {"type": "string"}, "minlon,minlat,maxlon,maxlat; minlon > maxlon "
                    "crosses the antimeridian", True), *FILTERS, *PAGING, *optional_origin],
            SPACES, PAGED_ERRORS),
        "/v1/spaces": _get("Every space that passes the filters, by id", [*FILTERS, *PAGING],
                           SPACES, PAGED_ERRORS),
        "/v1/spaces/{id}": _get(
            "One space", [_param("id", {"type": "string",
                                        "pattern": "^(?!(radius|nearest|polygon|bbox)$)[^/]+$"},
                                 "The space's id (the search endpoints' names excepted)",
                                 True, "path")],
            _body("application/geo+json", _ref("Space", "schemas"), "The space"),
            {"404": _problem("No active space has this id"), "503": ERRORS["503"]}),
        "/v1/amenities": _get("The amenity vocabulary with counts of active spaces", [],
                              _body("application/json", {
                                  "type": "object", "required": ["amenities"],
                                  "properties": {"amenities": {"type": "array", "items": {
                                      "type": "object", "required": ["name", "label", "count"],
                                      "properties": {"name": {"enum": AMENITY_NAMES},
                                                     "label": {"type": "string"},
                                                     "count": {"type": "integer"}}}}}},
                                  "The vocabulary"), {"503": ERRORS["503"]}),
        **_tile_paths(),
        "/healthz": _get("The process is up", [], _body(
            "application/json", {"type": "object"}, "Up"), {}),
        "/readyz": _get("A dataset is loaded and the store answers", [], _body(
            "application/json", {"type": "object", "required": ["dataset_version"],
                                 "properties": {"dataset_version": {"type": "string"}}},
            "Ready"), {"503": _problem("Not ready")}),
    }


def _tile_paths() -> dict:
    """The vector tiles, as MVT and as GeoJSON (the same features)."""
    cell = {"type": "integer", "minimum": 0}
    where = [_param("z", {"type": "integer", "minimum": 0, "maximum": MAX_TILE_ZOOM},
                    "Zoom level", True, "path"),
             _param("x", cell, "Column, 0 .. 2^z - 1 from the west (XYZ scheme)", True, "path"),
             _param("y", cell, "Row, 0 .. 2^z - 1 from the north (XYZ scheme)", True, "path"),
             *FILTERS]
    tile_errors = {**ERRORS, "304": {"description": "Not modified: the ETag sent in "
                                                    "If-None-Match is the tile's"}}
    about = (f"The active spaces inside Web Mercator tile z/x/y that pass the filters, one "
             f"layer `{LAYER}`, extent {EXTENT}. From zoom {POINT_ZOOM} up every space is a "
             f"point with properties `id`, `name` and `amenities` (comma-separated). Below, "
             f"the tile is cut in an 8 x 8 grid: a cell with one space is that space, a cell "
             f"with more is one point at their mean position with property `count`. Every "
             f"space of the tile is counted once; spaces beyond ±85.0511° are in no tile. "
             f"The ETag is bound to the dataset version and the filters; "
             f"`Cache-Control: public, max-age={MAX_AGE_S}`.")
    cluster = {"type": "object", "required": ["count"],
               "properties": {"count": {"type": "integer", "minimum": 2}}}
    space = {"type": "object", "required": ["id", "name", "amenities"],
             "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                            "amenities": {"type": "string"}}}
    features = {"type": "object", "required": ["type", "features"], "properties": {
        "type": {"const": "FeatureCollection"},
        "features": {"type": "array", "items": {
            "type": "object", "required": ["type", "geometry", "properties"],
            "properties": {"properties": {"oneOf": [cluster, space]}}}}}}
    return {
        "/v1/tiles/{z}/{x}/{y}.mvt": _get(
            "A vector tile of spaces (Mapbox Vector Tile 2.1)", where,
            _body(MVT_MEDIA_TYPE, {"type": "string", "format": "binary"},
                  "The tile (empty when no space is in it)"), tile_errors, about),
        "/v1/tiles/{z}/{x}/{y}.json": _get(
            "The same tile as GeoJSON (lon/lat), for maps that draw markers", where,
            _body("application/geo+json", features, "The tile's features"), tile_errors,
            about),
    }


COVERAGE_PARAMS = [
    _param("amenities", AMENITY_LIST, "Count only spaces with all of these amenities"),
    _param("walk_m", {"type": "number", "exclusiveMinimum": 0, "maximum": 50_000,
                      "default": 1000}, "A cell is covered by a space this near its centre"),
    _param("min_population", {"type": "integer", "minimum": MIN_POPULATION,
                               "maximum": MAX_POPULATION, "default": 100_000},
           "Cities of at least this many inhabitants"),
    _param("res", {"type": "integer", "minimum": 6, "maximum": 8, "default": 8},
           "H3 resolution of the cells"),
]
COUNTRY = _param("country", {"type": "string", "pattern": "^[A-Za-z]{2}$"},
                 "One ISO 3166-1 alpha-2 code", True)
_OBJ = {"type": "object"}
_ROWS = {"type": "array", "items": _OBJ}


def _coverage_paths() -> dict:
    return {
        "/v1/coverage/countries": _get(
            "Coverage per country: spaces, cities with and without, population covered",
            COVERAGE_PARAMS, _body("application/json", {
                "type": "object", "required": ["options", "countries"],
                "properties": {"options": _OBJ, "countries": _ROWS}}, "One row per country"),
            ERRORS),
        "/v1/coverage/cities": _get(
            "Coverage per city of a country", [COUNTRY, *COVERAGE_PARAMS],
            _body("application/json", {
                "type": "object", "required": ["country", "options", "cities"],
                "properties": {"country": {"type": "string"}, "options": _OBJ,
                               "cities": _ROWS}}, "One row per city"), ERRORS),
        "/v1/coverage/hexes": _get(
            "H3 cells over a country's cities, empty ones included", [COUNTRY, *COVERAGE_PARAMS],
            _body("application/geo+json", {
                "type": "object", "required": ["type", "features"],
                "properties": {"type": {"const": "FeatureCollection"}, "features": _ROWS}},
                "Cell polygons with count, covered flag and nearest_m"), ERRORS),
    }


def _ogc_paths() -> dict:
    geojson = _body("application/geo+json", _OBJ, "GeoJSON")
    json_ok = _body("application/json", _OBJ, "JSON")
    not_found = {"404": _problem("No such collection or item")}
    return {
        "/ogc/": _get("OGC API - Features landing page", [], json_ok, {}),
        "/ogc/conformance": _get("Conformance classes", [], json_ok, {}),
        "/ogc/collections": _get("The collections (one: spaces)", [], json_ok, {}),
        "/ogc/collections/spaces": _get("The spaces collection", [], json_ok, {}),
        "/ogc/collections/spaces/items": _get(
            "Spaces as OGC API features, by id",
            [_param("bbox", {"type": "string"}, "minlon,minlat,maxlon,maxlat"),
             _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_CLIENT_LIMIT,
                              "default": 10},
                    f"Page size; a limit above {MAX_LIMIT} is lowered to {MAX_LIMIT} (OGC API "
                    "- Features: a server caps, it does not refuse)"), _ref("cursor"), *FILTERS,
             _param("filter", {"type": "string"}, f"CQL2 text over the queryables; "
                    f"supported: {SUPPORTED}"),
             _param("filter-lang", {"enum": list(LANGUAGES)}, "The language of filter")],
            geojson, PAGED_ERRORS),
        "/ogc/collections/spaces/queryables": _get(
            "What filter can constrain (JSON Schema)", [],
            _body("application/schema+json", _OBJ, "The queryables"), {}),
        "/ogc/collections/spaces/items/{id}": _get(
            "One space as an OGC API feature",
            [_param("id", {"type": "string", "pattern": "^[^/]+$"}, "The space's id", True,
                    "path")], geojson, {**not_found, "503": ERRORS["503"]}),
    }


def _page_paths() -> dict:
    return {
        "/": _get("The map page", [], _body("text/html", {"type": "string"}, "HTML"), {}),
        "/map/config.json": _get("Settings of the map page", [], _body(
            "application/json", _OBJ, "tile_url, or null for the offline outlines"), {}),
        "/map/countries.geojson": _get("Country outlines for the map's base layer", [], _body(
            "application/geo+json", _OBJ, "FeatureCollection"), {}),
        "/openapi.json": _get("This document", [], _body("application/json", _OBJ,
                                                         "OpenAPI 3.1"), {}),
    }


def document() -> dict:
    """The whole OpenAPI 3.1 document: search, reference, coverage, OGC API, pages."""
    paths = {**_paths(), **_coverage_paths(), **_ogc_paths(), **_page_paths()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "geosearch", "version": "1.0.0",
                 "description": "Find coworking spaces: radius, nearest, polygon and bbox "
                                "search with amenity filters; coverage reports."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "parameters": PARAMETERS},
    }


def ogc_document(server_url: str) -> dict:
    """The OpenAPI document of the OGC API alone, relative to its own root
    (``server_url``), as OGC clients read it (GDAL looks for ``/collections/...``)."""
    paths = {path.removeprefix("/ogc") or "/": item for path, item in _ogc_paths().items()}
    return {**document(), "paths": paths, "servers": [{"url": server_url}],
            "info": {"title": "geosearch OGC API - Features", "version": "1.0.0"}}


def openapi_blueprint() -> Blueprint:
    """Serves ``/openapi.json``."""
    bp = Blueprint("openapi", __name__)

    @bp.get("/openapi.json")
    def openapi_json():
        return jsonify(document())

    return bp
