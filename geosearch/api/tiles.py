"""Vector tiles of spaces: ``/tiles/{z}/{x}/{y}.mvt`` (and ``.json`` for marker maps).

A tile is bound to the data stamp (the dataset version and the change feed's seq) and
the filters by its ETag: a client that sends it back in ``If-None-Match`` gets 304 without
the tile being built (the stamp alone is read); after a write, the tile is built again.
``Cache-Control`` lets a browser keep a tile for :data:`MAX_AGE_S` before it asks
again.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from geosearch.api import params
from geosearch.api.cursor import fingerprint
from geosearch.api.geojson import GEOJSON, VERSION_HEADER
from geosearch.api.openapi import ERRORS, STAMPED, Operation, add_route, body
from geosearch.api.params import FILTERS, Param, Params, integer, query_args
from geosearch.backends import readscope
from geosearch.backends.base import Backend
from geosearch.model import MAX_TILE_ZOOM, POINT_ZOOM, TileQuery
from geosearch.tiles import EXTENT, LAYER, MVT_MEDIA_TYPE

MAX_AGE_S = 60
FORMATS = {"mvt": MVT_MEDIA_TYPE, "json": GEOJSON}
_CELL = integer(0, (1 << MAX_TILE_ZOOM) - 1)  # the bound at this zoom is checked after
Z: Param[int] = Param("z", integer(0, MAX_TILE_ZOOM), "Zoom level", where="path")
X: Param[int] = Param("x", _CELL, "Column, 0 .. 2^z - 1 from the west (XYZ scheme)",
                      where="path")
Y: Param[int] = Param("y", _CELL, "Row, 0 .. 2^z - 1 from the north (XYZ scheme)",
                      where="path")
TILE_PARAMS = (Z, X, Y, *FILTERS)
ABOUT = (f"The active spaces inside Web Mercator tile z/x/y that pass the filters, one "
         f"layer `{LAYER}`, extent {EXTENT}. From zoom {POINT_ZOOM} up every space is a "
         f"point with properties `id`, `name` and `amenities` (comma-separated). Below, "
         f"the tile is cut in an 8 x 8 grid: a cell with one space is that space, a cell "
         f"with more is one point at their mean position with property `count`. Every "
         f"space of the tile is counted once; spaces beyond ±85.0511° are in no tile. "
         f"The ETag is bound to the dataset version, the change seq and the filters; "
         f"`Cache-Control: public, max-age={MAX_AGE_S}`.")
TILE_ERRORS = {**ERRORS, "304": {"description": "Not modified: the ETag sent in "
                                                "If-None-Match is the tile's"}}
TILE_HEADERS = {**STAMPED, "ETag": True, "Cache-Control": True}
_CLUSTER = {"type": "object", "required": ["count"],
            "properties": {"count": {"type": "integer", "minimum": 2}}}
_POINT = {"type": "object", "required": ["id", "name", "amenities"],
          "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                         "amenities": {"type": "string"}}}
OPERATIONS = {
    "mvt": Operation("A vector tile of spaces (Mapbox Vector Tile 2.1)",
                     body(MVT_MEDIA_TYPE, {"type": "string", "format": "binary"},
                          "The tile (empty when no space is in it)"),
                     TILE_PARAMS, TILE_ERRORS, ABOUT, headers=TILE_HEADERS),
    "json": Operation("The same tile as GeoJSON (lon/lat), for maps that draw markers",
                      body(GEOJSON, {"type": "object", "required": ["type", "features"],
                                     "properties": {
                                         "type": {"const": "FeatureCollection"},
                                         "features": {"type": "array", "items": {
                                             "type": "object",
                                             "required": ["type", "geometry", "properties"],
                                             "properties": {"properties": {
                                                 "oneOf": [_CLUSTER, _POINT]}}}}}},
                           "The tile's features"),
                      TILE_PARAMS, TILE_ERRORS, ABOUT, headers=TILE_HEADERS),
}


def _query(z: str, x: str, y: str) -> TileQuery:
    """The tile and filters of the request; a 400 naming each bad one."""
    p = Params.read(query_args(), TILE_PARAMS, z=z, x=x, y=y)
    if not p.errors:
        side = (1 << p[Z]) - 1
        for param in (X, Y):
            if p[param] > side:
                p.fail(param.name, f"{p[param]} is out of range at zoom {p[Z]}; expected "
                                   f"an integer 0..{side}")
    p.check()
    return TileQuery(p[Z], p[X], p[Y], params.filters(p))


def _etag(query: TileQuery, version: str, seq: int, fmt: str) -> str:
    return fingerprint("tile", version, seq, fmt, query.z, query.x, query.y,
                       query.filters.key())


def _answered_seq(backend: Backend) -> int:
    """The change seq the tile just read reflects (as its read noted it), else the
    backend's."""
    scope = readscope.current()
    if scope is not None and scope.stamp is not None:
        return scope.stamp[1]
    _, seq = backend.data_stamp()
    return seq


def _cached(response: Response, etag: str, version: str) -> Response:
    response.set_etag(etag)
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_S}"
    response.headers[VERSION_HEADER] = version
    return response


def tile_view(backend: Backend, fmt: str):
    """The view of ``/tiles/<z>/<x>/<y>.<fmt>`` over ``backend``."""

    def tile(z: str, x: str, y: str) -> Response:
        """GET /tiles/{z}/{x}/{y}.mvt (or .json)"""
        query = _query(z, x, y)
        if request.if_none_match:
            version, seq = backend.data_stamp()
            etag = _etag(query, version, seq, fmt)
            if request.if_none_match.contains(etag):
                return _cached(Response(status=304), etag, version)
        if fmt == "mvt":
            data, version = backend.tile_mvt(query)
        else:
            features = backend.tile(query)
            data, version = features.geojson(), features.version or ""
        return _cached(Response(data, mimetype=FORMATS[fmt]),
                       _etag(query, version, _answered_seq(backend), fmt), version)

    return tile


def add_tile_routes(bp: Blueprint, backend: Backend) -> None:
    """Serve the tiles of ``backend`` on ``bp``: ``.mvt`` and ``.json``."""
    for fmt, operation in OPERATIONS.items():
        add_route(bp, f"/tiles/<z>/<x>/<y>.{fmt}", f"tile_{fmt}", tile_view(backend, fmt),
                  operation)
