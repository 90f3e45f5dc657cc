"""GeoJSON in and out: result features, and the polygons that clients send."""

from __future__ import annotations

import math
from collections.abc import Sequence

import orjson
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from geosearch.features import CLOSE, Hits, space_head
from geosearch.model import MAX_VERTICES, Hit, Space

GEOJSON = "application/geo+json"
# The dataset version that answered, on every page and tile (cursors and ETags hold it)
VERSION_HEADER = "X-Dataset-Version"


def feature(space: Space) -> dict:
    """A space as a GeoJSON Feature (the same members, in the same order, as in search
    results: :func:`geosearch.features.space_head`)."""
    return orjson.loads(space_head(space) + CLOSE)


def collection(hits: Sequence[Hit], self_url: str, next_url: str | None = None,
               next_cursor: str | None = None, links: Sequence[dict] = (),
               matched: int | None = None) -> bytes:
    """A FeatureCollection page as bytes: ``numberReturned`` (and ``numberMatched``, the
    matches of every page, when given), the ``next`` cursor when given, and links (self,
    then ``links``, then next when ``next_url`` is given). The features are spliced from
    their heads (:mod:`geosearch.features`)."""
    hits = Hits.of(hits)
    all_links = [{"rel": "self", "type": GEOJSON, "href": self_url}, *links]
    tail: dict = {"numberReturned": len(hits)}
    if matched is not None:
        tail["numberMatched"] = matched
    if next_cursor is not None:
        tail["next"] = next_cursor
    if next_url is not None:
        all_links.append({"rel": "next", "type": GEOJSON, "href": next_url})
    tail["links"] = all_links
    return (b'{"type":"FeatureCollection","features":[' + hits.features() + b"],"
            + orjson.dumps(tail)[1:])


class GeometryError(ValueError):
    """A client geometry that cannot be used; the message says why."""


def _position(value: object, where: str) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) < 2 or len(value) > 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise GeometryError(f"{where}: a position is an array of 2 numbers [lon, lat]")
    lon, lat = float(value[0]), float(value[1])
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180
            and -90 <= lat <= 90):
        raise GeometryError(f"{where}: [{value[0]}, {value[1]}] is out of range "
                            "(lon -180..180, lat -90..90)")
    return lon, lat


def _ring(value: object, where: str) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise GeometryError(f"{where}: a linear ring is an array of positions")
    ring = [_position(p, f"{where}[{i}]") for i, p in enumerate(value)]
    if len(ring) < 4:
        raise GeometryError(f"{where}: a linear ring needs at least 4 positions")
    if ring[0] != ring[-1]:
        raise GeometryError(f"{where}: the ring does not close (its first and last "
                            "positions must be equal)")
    return ring


def _polygon(value: object, where: str) -> Polygon:
    if not isinstance(value, list) or not value:
        raise GeometryError(f"{where}: a Polygon is a non-empty array of linear rings")
    rings = [_ring(r, f"{where}[{i}]") for i, r in enumerate(value)]
    return Polygon(rings[0], rings[1:])


def parse_area(doc: object, max_vertices: int = MAX_VERTICES) -> BaseGeometry:
    """A valid shapely (Multi)Polygon from a GeoJSON geometry or a Feature holding one.

    Raises GeometryError naming what is wrong: type, ring closure, ranges, vertex count
    (at most ``max_vertices``), or self-intersection.
    """
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc = doc.get("geometry")
    if not isinstance(doc, dict) or doc.get("type") not in ("Polygon", "MultiPolygon"):
        raise GeometryError("expected a GeoJSON Polygon or MultiPolygon geometry, or a "
                            "Feature holding one")
    coords = doc.get("coordinates")
    count = _count_positions(coords)
    if count > max_vertices:
        raise GeometryError(f"{count} vertices; at most {max_vertices} are accepted")
    if doc["type"] == "Polygon":
        geom: BaseGeometry = _polygon(coords, "coordinates")
    else:
        if not isinstance(coords, list) or not coords:
            raise GeometryError("coordinates: a MultiPolygon is a non-empty array of polygons")
        geom = MultiPolygon([_polygon(p, f"coordinates[{i}]") for i, p in enumerate(coords)])
    if not geom.is_valid:
        raise GeometryError(f"not a valid {doc['type']}: {explain_validity(geom)} "
                            "(rings must not cross themselves or each other)")
    if geom.area == 0:
        raise GeometryError("the polygon has no area")
    shapely.prepare(geom)
    return geom


def _count_positions(value: object, depth: int = 0) -> int:
    if not isinstance(value, list) or depth > 3:
        return 0
    if value and not isinstance(value[0], list):
        return 1
    return sum(_count_positions(v, depth + 1) for v in value)
