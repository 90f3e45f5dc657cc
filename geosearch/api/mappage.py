"""The map page at ``/``: static files, its settings, and the offline country outlines."""

from __future__ import annotations

import json
from functools import cache, partial
from importlib.resources import files
from pathlib import Path

import shapely
from flask import Blueprint, Response, jsonify, send_from_directory

from geosearch.api.geojson import GEOJSON
from geosearch.api.openapi import OBJECT, Operation, add_route, body
from geosearch.reference import countries

STATIC = Path(str(files("geosearch").joinpath("static")))  # package data, wherever installed
OUTLINE_TOLERANCE_DEG = 0.05
OSM_ATTRIBUTION = "© OpenStreetMap contributors"
PAGE = Operation("The map page", body("text/html", {"type": "string"}, "HTML"))
CONFIG = Operation("Settings of the map page", body(
    "application/json", OBJECT, "tile_url (null for the offline outlines) and tile_attribution"))
OUTLINES = Operation("Country outlines for the map's base layer", body(
    GEOJSON, OBJECT, "FeatureCollection"))


@cache
def outlines_geojson() -> str:
    """Country outlines, simplified for the map's base layer (no tiles needed)."""
    index = countries()
    features = []
    for code, geom in zip(index.codes, index.geometries, strict=True):
        simple = shapely.simplify(geom, OUTLINE_TOLERANCE_DEG, preserve_topology=True)
        features.append({"type": "Feature", "properties": {"country": code},
                         "geometry": shapely.geometry.mapping(shapely.set_precision(simple,
                                                                                    1e-3))})
    return json.dumps({"type": "FeatureCollection", "features": features},
                      separators=(",", ":"))


def page() -> Response:
    """GET /"""
    return send_from_directory(STATIC, "map.html")


def config(tile_url: str | None, attribution: str | None) -> Response:
    """GET /map/config.json: where the map takes its tiles from (None: the outlines), and
    the credit shown under them (OpenStreetMap's unless the settings name another)."""
    return jsonify(tile_url=tile_url, tile_attribution=(attribution or OSM_ATTRIBUTION)
                   if tile_url else None)


def outlines() -> Response:
    """GET /map/countries.geojson"""
    return Response(outlines_geojson(), mimetype=GEOJSON,
                    headers={"Cache-Control": "public, max-age=86400"})


def _tile_origin(tile_url: str) -> str:
    """The origin of a Leaflet tile URL template; its ``{s}`` subdomains as ``*``."""
    scheme, _, rest = tile_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://" + ("*." + host[4:] if host.startswith("{s}.") else host)


def content_policy(tile_url: str | None) -> str:
    """The page's Content-Security-Policy: its own scripts, styles and data only, images
    from itself and the tile server, never framed by another site.

    >>> content_policy("https://tile.example.org/{z}/{x}/{y}.png").split("; ")[3]
    "img-src 'self' data: https://tile.example.org"
    """
    tiles = f" {_tile_origin(tile_url)}" if tile_url else ""
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'",
        f"img-src 'self' data:{tiles}", "connect-src 'self'", "base-uri 'none'",
        "form-action 'none'", "frame-ancestors 'none'"])


def _protect(policy: str, response: Response) -> Response:
    """The page's security headers, on the page and its files."""
    response.headers["Content-Security-Policy"] = policy
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"  # frame-ancestors, for older browsers
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def map_blueprint(tile_url: str | None, tile_attribution: str | None = None) -> Blueprint:
    """``/`` (the page), ``/static/*``, ``/map/config.json``, ``/map/countries.geojson``."""
    bp = Blueprint("map", __name__, static_folder=str(STATIC), static_url_path="/static")
    bp.after_request(partial(_protect, content_policy(tile_url)))
    add_route(bp, "/", "page", page, PAGE)
    add_route(bp, "/map/config.json", "config", partial(config, tile_url, tile_attribution),
              CONFIG)
    add_route(bp, "/map/countries.geojson", "outlines", outlines, OUTLINES)
    return bp
