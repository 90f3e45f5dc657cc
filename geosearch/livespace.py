"""A space written through the API: its body checked, then made by the ingest's own stages.

A body is a GeoJSON Feature (a Point and the writable properties) or the writable
properties alone (the space is then geocoded, as a feed row without coordinates is).
:func:`read_draft` checks its shape and each value's type and bounds; :func:`space_record`
runs the draft through the stages of a feed row (:func:`~geosearch.ingest.normalise.
normalise`, :func:`~geosearch.ingest.validate.validate_position`,
:func:`~geosearch.ingest.pipeline.locate`, the H3 cells), so that the rules are the
ingest's (its row then follows by the load's rules: :func:`geosearch.liverows.space_row`),
and refuses what the stages would repair: a feed row is repaired quietly in a batch, a
writer is there to fix the body. Every refusal is an :class:`Invalid` listing each bad
field as a JSON Pointer into the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geosearch.geo import latlng_cells
from geosearch.ingest.geocode import GazetteerGeocoder, Geocoder
from geosearch.ingest.normalise import normalise
from geosearch.ingest.pipeline import locate
from geosearch.ingest.records import Record, Rejected
from geosearch.ingest.validate import validate_position
from geosearch.model import MAX_CAPACITY, MAX_CITY_CHARS, Amenity, shown
from geosearch.reference import countries

# The properties a body may hold, and the longest text of each
TEXTS = {"name": 200, "address": 300, "city": MAX_CITY_CHARS, "postcode": 20}
WRITABLE = (*TEXTS, "country", "amenities", "capacity", "price_day", "currency")
# Made by the server from the rest: refused in a body
DERIVED = ("h3_r7", "h3_r8", "h3_r9", "geocode_precision")
SERVER_OWNED = ("status", "revision", "updated_at", "distance_m", "dataset_version")
MAX_ID_CHARS = 200
MAX_PRICE = 1e9
_VOCABULARY = {a.value for a in Amenity}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ID = re.compile(r"[^/\x00-\x1f\x7f-\x9f]+")
_RESERVED_IDS = ("radius", "nearest", "polygon", "bbox")  # the search endpoints' names
_FEATURE_MEMBERS = ("type", "id", "geometry", "properties")
# Where the stages' verdicts and repairs point: a property, or the body's coordinates
_COORDINATES = "@coordinates"
_REJECTED_AT = {"missing_id": "@id", "missing_name": "name", "missing_country": "country",
                "unknown_country": "country", "invalid_coordinates": _COORDINATES,
                "outside_country": _COORDINATES, "ungeocodable": "city",
                "geocode_failed": "city"}
_REPAIRED_AT = {"null_island": _COORDINATES, "swapped_latlon": _COORDINATES,
                "partial_coordinates": _COORDINATES, "decimal_comma": _COORDINATES,
                "country_name": "country", "unknown_amenity": "amenities",
                "amenity_spelling": "amenities", "invalid_capacity": "capacity",
                "negative_capacity": "capacity", "invalid_price": "price_day"}
# What the stages may fill in for a write: the position and the city it left out
_FILLED = ("geocoded", "missing_city")


class Invalid(Exception):  # noqa: N818 - a verdict on a body, as Rejected is on a row
    """A body the API refuses (422): ``errors`` are (JSON Pointer, what is valid)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{where}: {what}" for where, what in errors))
        self.errors = errors


def pointer(base: str, key: str) -> str:
    """``base`` and one more reference token (RFC 6901: ``~`` and ``/`` escaped), cut
    short when a client sent a long name."""
    token = key.replace("~", "~0").replace("/", "~1")
    return f"{base}/{token if len(token) <= 60 else token[:60] + '…'}"


@dataclass(frozen=True)
class Draft:
    """A body's space as sent: its id (None: the server makes one), its writable
    properties, its position (lon, lat) or None, and where the properties sit in the body
    (``/properties`` in a Feature, the root otherwise)."""

    id: str | None
    properties: Mapping[str, Any]
    position: tuple[float, float] | None
    base: str = "/properties"

    def at(self, target: str) -> str:
        """The JSON Pointer of a property, of ``@id`` / ``@coordinates``, or of the
        properties themselves ("")."""
        if not target:
            return self.base
        if target == "@id":
            return "/id"
        if target == _COORDINATES:
            return "/geometry/coordinates" if self.position is not None else self.base
        return pointer(self.base, target)


def check_id(value: object) -> str | None:
    """Why ``value`` cannot be a space's id, or None."""
    if not isinstance(value, str):
        return "an id is a string"
    if len(value) > MAX_ID_CHARS or not _ID.fullmatch(value) or value in _RESERVED_IDS:
        return (f"1 to {MAX_ID_CHARS} characters, no '/' and no control characters, and "
                f"none of {', '.join(_RESERVED_IDS)}")
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_text(name: str, value: object) -> str | None:
    if name == "postcode" and value is None:
        return None
    if not isinstance(value, str):
        return "a string" + (" or null" if name == "postcode" else "")
    if len(value) > TEXTS[name]:
        return f"at most {TEXTS[name]} characters"
    if _CONTROL.search(value):
        return "no control characters (NUL, tabs, line breaks...)"
    if name == "postcode" and not value.strip():
        return "a postcode, or null"
    return None


def _check_value(name: str, value: Any) -> str | None:
    """Why a property's value cannot be written, or None (its type and bounds only: the
    stages judge the rest)."""
    if name in TEXTS:
        return _check_text(name, value)
    checks: dict[str, tuple[bool, str]] = {
        "country": (isinstance(value, str) and bool(re.fullmatch(r"[A-Z]{2}", value)),
                    "an ISO 3166-1 alpha-2 code in capitals, such as DE"),
        "currency": (value is None or (isinstance(value, str)
                                       and bool(re.fullmatch(r"[A-Z]{3}", value))),
                     "an ISO 4217 code in capitals, such as EUR, or null"),
        "capacity": (value is None or (type(value) is int and 0 <= value <= MAX_CAPACITY),
                     f"an integer in 0..{MAX_CAPACITY}, or null"),
        "price_day": (value is None or (_is_number(value) and 0 <= value <= MAX_PRICE),
                      f"a number in 0..{MAX_PRICE:.0f}, or null"),
    }
    ok, valid = checks.get(name, (True, ""))
    return None if ok else valid


def _amenity_errors(value: object, where: str) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return [(where, "an array of amenity names")]
    errors, seen = [], set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or item not in _VOCABULARY:
            text = shown(item) if isinstance(item, str) else "not a string"
            errors.append((f"{where}/{i}", f"{text} is not an amenity; valid: "
                                          f"{', '.join(sorted(_VOCABULARY))}"))
        elif item in seen:
            errors.append((f"{where}/{i}", f"{item!r} is listed twice"))
        seen.add(item)
    return errors


def _property_errors(properties: Mapping, base: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for name, value in properties.items():
        where = pointer(base, name)
        if name in DERIVED:
            errors.append((where, "derived by the server from the other fields; leave it out"))
        elif name in SERVER_OWNED:
            errors.append((where, "kept by the server (a space is closed with DELETE); "
                                  "leave it out"))
        elif name not in WRITABLE:
            errors.append((where, f"not a field of a space; writable: {', '.join(WRITABLE)}"))
        elif name == "amenities":
            errors += _amenity_errors(value, where)
        elif (why := _check_value(name, value)) is not None:
            errors.append((where, why))
    for name in ("name", "country"):
        if name not in properties:
            errors.append((pointer(base, name), "required"))
    return errors


def _position(geometry: object, errors: list[tuple[str, str]]) -> tuple[float, float] | None:
    """The (lon, lat) of a Point geometry (None: no geometry, to be geocoded)."""
    if geometry is None:
        return None
    if not isinstance(geometry, dict) or geometry.get("type") != "Point" or set(geometry) != {
            "type", "coordinates"}:
        errors.append(("/geometry", "a GeoJSON Point ({\"type\": \"Point\", \"coordinates\": "
                                    "[lon, lat]}) or null"))
        return None
    coords = geometry["coordinates"]
    if (not isinstance(coords, list) or len(coords) != 2 or not all(map(_is_number, coords))
            or not (-180 <= coords[0] <= 180 and -90 <= coords[1] <= 90)):
        errors.append(("/geometry/coordinates", "[lon, lat]: two numbers, lon in "
                                                "-180..180, lat in -90..90"))
        return None
    return float(coords[0]), float(coords[1])


def read_draft(doc: object) -> Draft:
    """The space of a body (a Feature, or the properties alone); Invalid naming every bad
    member, property and value."""
    if not isinstance(doc, dict):
        raise Invalid([("", "a GeoJSON Feature, or an object of a space's properties")])
    errors: list[tuple[str, str]] = []
    if doc.get("type") == "Feature":
        errors += [(pointer("", k), f"not a member of a space's Feature; members: "
                                    f"{', '.join(_FEATURE_MEMBERS)}")
                   for k in doc if k not in _FEATURE_MEMBERS]
        properties = doc.get("properties")
        if not isinstance(properties, dict):
            errors.append(("/properties", "an object of the space's properties"))
            properties = {}
        position, base = _position(doc.get("geometry"), errors), "/properties"
    else:
        properties = {k: v for k, v in doc.items() if k != "id"}
        position, base = None, ""
    space_id = doc.get("id")
    if space_id is not None and (why := check_id(space_id)) is not None:
        errors.append(("/id", why))
    errors += _property_errors(properties, base)
    if errors:
        raise Invalid(errors)
    return Draft(space_id, properties, position, base)


def _record(draft: Draft, space_id: str) -> Record:
    """The draft as a feed row: text fields as a decoded feed has them, numbers kept as
    numbers (a typed feed's)."""
    props = draft.properties
    numbers: dict[str, float] = {}
    raw = {"id": space_id, "status": "active", "lat": "", "lon": "", "capacity": "",
           "price_day": "", "currency": props.get("currency") or "",
           "amenities": ";".join(props.get("amenities") or ()),
           **{name: props.get(name) or "" for name in (*TEXTS, "country")}}
    if draft.position is not None:
        numbers["lon"], numbers["lat"] = draft.position
    for name in ("capacity", "price_day"):
        if props.get(name) is not None:
            numbers[name] = props[name]
    return Record(row=0, raw=raw, numbers=numbers)


def _unchanged(draft: Draft, record: Record) -> list[tuple[str, str]]:
    """The texts the stages changed (spaces trimmed or collapsed): refused, saying how
    they would be stored."""
    errors = []
    for name in ("name", "address", "city"):
        given = draft.properties.get(name)
        if given and given != getattr(record, name):
            errors.append((draft.at(name), f"would be stored as {shown(getattr(record, name))}"
                                           ": no leading, trailing or repeated spaces"))
    return errors


def space_record(draft: Draft, space_id: str, geocoder: Geocoder,
                 gazetteer: GazetteerGeocoder, kept: tuple[float, float, str] | None = None
                 ) -> Record:
    """The space as a located feed row, its H3 cells made, as an ingest makes it (Invalid
    when a stage rejects the space or would repair it). ``kept``: the (lon, lat,
    geocode_precision) the space has now; a body that keeps the position keeps its
    precision (a geocoded point sent back is still a geocoded point)."""
    record = _record(draft, space_id)
    try:
        normalise(record)
        validate_position(record, countries())
        locate(record, geocoder, gazetteer)
    except Rejected as verdict:
        raise Invalid([(draft.at(_REJECTED_AT.get(verdict.code, "")), verdict.reason)]
                      ) from None
    errors = [(draft.at(_REPAIRED_AT.get(r.code, "")), f"{r.detail}: write it so")
              for r in record.repairs if r.code not in _FILLED]
    errors += _unchanged(draft, record)
    if errors:
        raise Invalid(errors)
    if kept is not None and draft.position == kept[:2]:
        record.geocode_precision = kept[2]
    record.cells = latlng_cells(*record.position())
    return record


def document(feature: Mapping) -> dict:
    """The writable document of a served Feature: what a merge patch applies to."""
    props = feature["properties"]
    return {"type": "Feature", "id": feature["id"], "geometry": feature["geometry"],
            "properties": {name: props.get(name) for name in WRITABLE}}


def merge_patch(target: object, patch: object) -> object:
    """RFC 7396 JSON Merge Patch: ``patch`` applied to ``target`` (neither is changed;
    recursion as deep as the patch, whose depth the body reading bounds).

    >>> merge_patch({"a": 1, "b": {"c": 2}}, {"b": {"c": None, "d": 3}, "e": [1]})
    {'a': 1, 'b': {'d': 3}, 'e': [1]}
    """
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged

