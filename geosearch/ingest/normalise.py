"""Normalise text fields into typed values: country codes, numbers, amenities, status."""

from __future__ import annotations

import math
import re

from geosearch.ingest.records import Record, Rejected
from geosearch.model import Amenity
from geosearch.reference import country_code, fold

# Spellings seen in feeds for names of the vocabulary, after folding.
AMENITY_SYNONYMS = {
    "wi fi": "wifi", "wi-fi": "wifi", "wlan": "wifi", "internet": "wifi",
    "meeting room": "meeting_rooms", "meeting rooms": "meeting_rooms",
    "conference room": "meeting_rooms", "24/7": "access_24_7", "24/7 access": "access_24_7",
    "24 7 access": "access_24_7", "24h access": "access_24_7", "phone booth": "phone_booths",
    "phone booths": "phone_booths", "bike parking": "bike_storage",
    "wheelchair": "wheelchair_accessible",
    "event space": "event_space", "mail": "mail_handling", "printer": "printing",
    "shower": "showers", "locker": "lockers", "pets allowed": "pet_friendly",
}
_VOCABULARY = {a.value for a in Amenity}
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
STATUSES = ("active", "inactive")


def parse_decimal(text: str) -> tuple[float | None, bool]:
    """A decimal number that may use a decimal comma: ``(value, comma_used)``.

    Empty text gives ``(None, False)``; text that is not a number raises ValueError.

    E-notation is a number too (``-3e-06``: how many writers print values near zero).

    >>> parse_decimal("52,5200")
    (52.52, True)
    >>> parse_decimal("-3e-06")
    (-3e-06, False)
    """
    text = text.strip().replace(" ", "")
    if not text:
        return None, False
    if not _NUMBER.match(text):
        raise ValueError(f"{text!r} is not a decimal number")
    comma = "," in text
    value = float(text.replace(",", "."))
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value, comma


def _number(record: Record, key: str) -> tuple[float | None, bool]:
    """A numeric field: the number a typed feed gave, else the text parsed."""
    if key in record.numbers:
        value = record.numbers[key]
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return value, False
    return parse_decimal(record.raw[key])


def amenity_token(token: str) -> str | None:
    """The vocabulary name for a feed token, or None when it is not in the vocabulary.

    >>> amenity_token("Wi-Fi"), amenity_token("Meeting Rooms"), amenity_token("sauna")
    ('wifi', 'meeting_rooms', None)
    """
    raw = token.strip().casefold()
    if raw in _VOCABULARY:
        return raw
    snake = re.sub(r"[\s\-]+", "_", raw)
    if snake in _VOCABULARY:
        return snake
    return AMENITY_SYNONYMS.get(fold(token)) or AMENITY_SYNONYMS.get(raw)


def _normalise_amenities(record: Record) -> None:
    found: set[str] = set()
    for token in filter(None, (t.strip() for t in re.split(r"[;|]", record.raw["amenities"]))):
        name = amenity_token(token)
        if name is None:
            record.repair("unknown_amenity", f"dropped {token!r} (not in the vocabulary)")
            continue
        if name != token:
            record.repair("amenity_spelling", f"{token!r} -> {name!r}")
        found.add(name)
    order = [a.value for a in Amenity]
    record.amenities = tuple(sorted(found, key=order.index))


def _normalise_country(record: Record) -> None:
    given = record.raw["country"]
    if not given:
        raise Rejected("missing_country", "country is empty")
    code = country_code(given)
    if code is None:
        raise Rejected("unknown_country", f"country {given!r} is neither an ISO 3166-1 "
                       "alpha-2 code nor a known country name")
    if code != given:
        record.repair("country_name", f"{given!r} -> {code}")
    record.country = code


def _normalise_coordinates(record: Record) -> None:
    try:
        lat, lat_comma = _number(record, "lat")
        lon, lon_comma = _number(record, "lon")
    except ValueError as exc:
        raise Rejected("invalid_coordinates", f"lat/lon: {exc}") from None
    if lat_comma or lon_comma:
        record.repair("decimal_comma", f"lat {record.raw['lat']!r}, lon {record.raw['lon']!r}")
    if (lat is None) != (lon is None):
        record.repair("partial_coordinates", "only one of lat/lon given: geocoding instead")
        lat = lon = None
    record.lat, record.lon = lat, lon


def _normalise_numbers(record: Record) -> None:
    try:
        capacity, _ = _number(record, "capacity")
    except ValueError:
        record.repair("invalid_capacity", f"capacity {record.raw['capacity']!r} dropped")
        capacity = None
    if capacity is not None and (capacity < 0 or capacity != int(capacity)):
        code = "negative_capacity" if capacity < 0 else "invalid_capacity"
        record.repair(code, f"capacity {record.raw['capacity']!r} dropped (unknown)")
        capacity = None
    record.capacity = None if capacity is None else int(capacity)
    try:
        price, _ = _number(record, "price_day")
    except ValueError:
        price = None
        record.repair("invalid_price", f"price_day {record.raw['price_day']!r} dropped")
    if price is not None and price < 0:
        record.repair("invalid_price", f"price_day {price} dropped (negative)")
        price = None
    record.price_day = price
    currency = record.raw["currency"].strip().upper()
    record.currency = currency if re.fullmatch(r"[A-Z]{3}", currency) else None


def normalise(record: Record) -> None:
    """Fill the typed fields of ``record`` from its text; raise Rejected when impossible."""
    raw = record.raw
    record.id = raw["id"]
    if not record.id:
        raise Rejected("missing_id", "id is empty")
    record.name = " ".join(raw["name"].split())
    if not record.name:
        raise Rejected("missing_name", "name is empty: a listing needs a name")
    record.address = " ".join(raw["address"].split())
    record.city = " ".join(raw["city"].split())
    record.postcode = raw["postcode"] or None
    status = raw["status"].strip().lower() or "active"
    if status not in STATUSES:
        raise Rejected("invalid_status", f"status {raw['status']!r}; valid: active, inactive")
    record.status = status
    _normalise_country(record)
    _normalise_coordinates(record)
    _normalise_amenities(record)
    _normalise_numbers(record)
