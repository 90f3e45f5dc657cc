"""Vector tiles of spaces: ``/tiles/{z}/{x}/{y}.mvt`` (and ``.json`` for marker maps).

A tile is bound to the dataset version and the filters by its ETag: a client that sends
it back in ``If-None-Match`` gets 304 without the tile being built (the version alone is
read). ``Cache-Control`` lets a browser keep a tile for :data:`MAX_AGE_S` before it asks
again.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from geosearch.api import params
from geosearch.api.cursor import fingerprint
from geosearch.api.errors import ApiError
from geosearch.api.geojson import GEOJSON, VERSION_HEADER
from geosearch.backends.base import Backend
from geosearch.model import MAX_TILE_ZOOM, TileQuery
from geosearch.tiles import MVT_MEDIA_TYPE

MAX_AGE_S = 60
FORMATS = {"mvt": MVT_MEDIA_TYPE, "json": GEOJSON}


def _query(z: str, x: str, y: str) -> TileQuery:
    """The tile and filters of the request; a 400 naming each bad one."""
    p = params.Params(request.args)
    zoom = p.parse("z", z, params.integer(0, MAX_TILE_ZOOM))
    side = (1 << zoom) - 1 if zoom is not None else (1 << MAX_TILE_ZOOM) - 1
    column = p.parse("x", x, params.integer(0, side))
    row = p.parse("y", y, params.integer(0, side))
    filters = params.filters(p)
    p.check()
    return TileQuery(zoom, column, row, filters)


def _etag(query: TileQuery, version: str, fmt: str) -> str:
    return fingerprint("tile", version, fmt, query.z, query.x, query.y, query.filters.key())


def _cached(response: Response, etag: str, version: str) -> Response:
    response.set_etag(etag)
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE_S}"
    response.headers[VERSION_HEADER] = version
    return response


def tile_view(backend: Backend):
    """The view of ``/tiles/<z>/<x>/<y>.<fmt>`` over ``backend``."""

    def tile(z: str, x: str, y: str, fmt: str) -> Response:
        """GET /tiles/{z}/{x}/{y}.mvt (or .json)"""
        if fmt not in FORMATS:
            raise ApiError(404, "Not Found",
                           f"no tile format {params.shown(fmt)}; use .mvt or .json")
        query = _query(z, x, y)
        if request.if_none_match:
            version = backend.dataset_version()
            etag = _etag(query, version, fmt)
            if request.if_none_match.contains(etag):
                return _cached(Response(status=304), etag, version)
        if fmt == "mvt":
            data, version = backend.tile_mvt(query)
        else:
            features = backend.tile(query)
            data, version = features.geojson(), features.version or ""
        return _cached(Response(data, mimetype=FORMATS[fmt]), _etag(query, version, fmt),
                       version)

    return tile


def add_tile_routes(bp: Blueprint, backend: Backend) -> None:
    """Serve the tiles of ``backend`` on ``bp``."""
    bp.add_url_rule("/tiles/<z>/<x>/<y>.<fmt>", "tile", tile_view(backend), methods=["GET"])
