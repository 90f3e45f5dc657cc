"""GeoJSON in and out: result features, and the polygons that clients send."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from geosearch.features import CLOSE, Hits, space_head
from geosearch.model import MAX_VERTICES, Hit, Space
from geosearch.observe.context import note_results

GEOJSON = "application/geo+json"
# The dataset version that answered, on every page and tile (cursors and ETags hold it)
VERSION_HEADER = "X-Dataset-Version"
# The change feed's seq of the state that answered, beside it on every search answer
# (geosearch.api.consistency)
CHANGE_SEQ_HEADER = "X-Change-Seq"
# A body's area: at most this many rings in all (outer rings and holes of every polygon;
# a drawn area has a few, a simplified country of islands some hundreds) and JSON nested
# at most this deep (a Feature's coordinates are 6 deep, its properties may nest a few).
MAX_RINGS = 500
MAX_JSON_DEPTH = 16
# A position, ring and polygon each is an array: room for every one of a polygon at its
# limits, and for a Feature's properties.
MAX_JSON_CONTAINERS = MAX_VERTICES + 2 * MAX_RINGS + 1000
_CONTAINERS = (list, dict)  # what orjson makes of JSON arrays and objects
_EXPECTED = "expected a GeoJSON Polygon or MultiPolygon geometry, or a Feature holding one"


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
    note_results(len(hits))  # the results metric of the request's search
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
    """A client geometry that cannot be used; the message says where (a JSON Pointer into
    the document) and why."""


class JsonError(ValueError):
    """A request body that is not JSON within the bounds; the message says why."""


def read_json(data: bytes, max_depth: int = MAX_JSON_DEPTH,
              max_containers: int = MAX_JSON_CONTAINERS) -> object:
    """A request body as strict JSON (UTF-8; no NaN or Infinity, no number beyond a
    double's range, no lone surrogate) of at most ``max_containers`` arrays and objects
    nested at most ``max_depth`` deep. Raises JsonError saying what is wrong.

    The containers are counted by the brackets of the text (in strings too), before any
    is built: a megabyte of empty arrays costs far more to build than to count.
    """
    if data.count(b"[") + data.count(b"{") > max_containers:
        raise JsonError(f"more than {max_containers} JSON arrays and objects")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JsonError(f"not valid JSON ({exc.msg} at byte {exc.pos})") from None
    if _deeper_than(doc, max_depth):
        raise JsonError(f"JSON nested more than {max_depth} deep (at most {max_depth} "
                        "levels are accepted)")
    return doc


def read_area(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> BaseGeometry:
    """The area of a request body: :func:`read_json` (at most
    :data:`MAX_JSON_CONTAINERS` arrays and objects, ``max_depth`` deep), then
    :func:`parse_area`. Raises GeometryError saying what is wrong."""
    try:
        doc = read_json(data, max_depth)
    except JsonError as exc:
        raise GeometryError(f"{exc}; {_EXPECTED}") from None
    return parse_area(doc)


def _deeper_than(doc: object, depth: int) -> bool:
    """Whether ``doc`` nests arrays or objects more than ``depth`` deep (level by level,
    without recursion; only containers are carried to the next level)."""
    level: list = [doc] if type(doc) in _CONTAINERS else []
    for _ in range(depth):
        inner: list = []
        for node in level:
            inner.extend(c for c in (node.values() if type(node) is dict else node)
                         if type(c) in _CONTAINERS)
        level = inner
    return bool(level)


def _shown_number(value: float) -> str:
    """A coordinate for an error message (an integer too long to print is not shown)."""
    return repr(value) if isinstance(value, float) or value.bit_length() <= 64 else "…"


def _position(value: object, where: str) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) < 2 or len(value) > 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise GeometryError(f"{where}: a position is an array of 2 numbers [lon, lat]")
    lon, lat = value[0], value[1]
    # compared as they are: NaN fails, and an integer of any size is never made a float
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise GeometryError(f"{where}: [{_shown_number(lon)}, {_shown_number(lat)}] is out "
                            "of range (lon -180..180, lat -90..90)")
    return float(lon), float(lat)


def _ring(value: object, where: str) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise GeometryError(f"{where}: a linear ring is an array of positions")
    ring = [_position(p, f"{where}/{i}") for i, p in enumerate(value)]
    if len(ring) < 4:
        raise GeometryError(f"{where}: a linear ring needs at least 4 positions")
    if ring[0] != ring[-1]:
        raise GeometryError(f"{where}: the ring does not close (its first and last "
                            "positions must be equal)")
    return ring


def _polygon(value: object, where: str) -> Polygon:
    if not isinstance(value, list) or not value:
        raise GeometryError(f"{where}: a Polygon is a non-empty array of linear rings")
    rings = [_ring(r, f"{where}/{i}") for i, r in enumerate(value)]
    return Polygon(rings[0], rings[1:])


def parse_area(doc: object, max_vertices: int = MAX_VERTICES,
               max_rings: int = MAX_RINGS) -> BaseGeometry:
    """A valid shapely (Multi)Polygon from a GeoJSON geometry or a Feature holding one.

    Raises GeometryError naming where (a JSON Pointer) and what is wrong: type, ring
    closure, ranges, ring count (at most ``max_rings``, outer rings and holes of every
    polygon), vertex count (at most ``max_vertices``), or self-intersection. Both counts
    are checked before any geometry is built: validity costs more than linear time in
    the rings.
    """
    where = ""
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        doc, where = doc.get("geometry"), "/geometry"
    if not isinstance(doc, dict) or doc.get("type") not in ("Polygon", "MultiPolygon"):
        raise GeometryError(f"{where}: {_EXPECTED}" if where else _EXPECTED)
    coords, where = doc.get("coordinates"), f"{where}/coordinates"
    polygons = [coords] if doc["type"] == "Polygon" else coords
    if isinstance(polygons, list):
        rings = sum(len(p) for p in polygons if isinstance(p, list))
        if rings > max_rings:
            raise GeometryError(f"{where}: {rings} rings; at most {max_rings} are accepted "
                                "(outer rings and holes of every polygon, in all)")
    count = _count_positions(coords)
    if count > max_vertices:
        raise GeometryError(f"{where}: {count} vertices; at most {max_vertices} are accepted")
    if doc["type"] == "Polygon":
        geom: BaseGeometry = _polygon(coords, where)
    else:
        if not isinstance(coords, list) or not coords:
            raise GeometryError(f"{where}: a MultiPolygon is a non-empty array of polygons")
        geom = MultiPolygon([_polygon(p, f"{where}/{i}") for i, p in enumerate(coords)])
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
