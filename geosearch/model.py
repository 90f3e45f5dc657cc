"""The domain of geosearch: spaces, the amenity vocabulary and the query objects.

Query objects are frozen and validated on construction, so that whatever reaches a
backend is already well formed. They are the only thing that crosses from the HTTP
layer (or a library caller) to a backend.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING

from geosearch.text import MAX_Q_TERMS, words

if TYPE_CHECKING:  # a type only: the client imports the model without shapely
    from shapely.geometry.base import BaseGeometry

MAX_RADIUS_M = 100_000.0
MAX_DISTANCE_M = 20_040_000.0  # half the equator: every point on Earth is nearer
MAX_CITY_CHARS = 200
MAX_K = 100
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
DEFAULT_K = 10
MAX_VERTICES = 10_000
# Larger than any workspace: a bound keeps the filter inside 64-bit integers everywhere.
MAX_CAPACITY = 1_000_000
# Vector tiles: zoom levels served, and the zoom from which every space is its own point.
MAX_TILE_ZOOM = 22
POINT_ZOOM = 12


class Amenity(StrEnum):
    """The amenity vocabulary (v1). The value is the wire name."""

    WIFI = "wifi"
    COFFEE = "coffee"
    MEETING_ROOMS = "meeting_rooms"
    PRINTING = "printing"
    KITCHEN = "kitchen"
    WHEELCHAIR_ACCESSIBLE = "wheelchair_accessible"
    RECEPTION = "reception"
    MAIL_HANDLING = "mail_handling"
    PHONE_BOOTHS = "phone_booths"
    LOCKERS = "lockers"
    EVENT_SPACE = "event_space"
    ACCESS_24_7 = "access_24_7"
    BIKE_STORAGE = "bike_storage"
    PARKING = "parking"
    SHOWERS = "showers"
    OUTDOOR_SPACE = "outdoor_space"
    PET_FRIENDLY = "pet_friendly"
    CHILDCARE = "childcare"

    @property
    def label(self) -> str:
        """A human label, e.g. ``"Meeting rooms"`` or ``"24/7 access"``."""
        return _LABELS.get(self, self.value.replace("_", " ").capitalize())

    @property
    def bit(self) -> int:
        """The amenity's bit in a space's amenity mask (stable: vocabulary order)."""
        return _BITS[self.value]

    @classmethod
    def parse(cls, name: str) -> Amenity:
        """Return the amenity called ``name`` (any case, spaces around it ignored); the
        error lists every valid name.

        >>> Amenity.parse("wifi").label
        'Wi-Fi'
        """
        amenity = _BY_NAME.get(name.strip().lower())
        if amenity is None:
            raise _unknown([name])
        return amenity

    @classmethod
    def parse_set(cls, text: str) -> frozenset[Amenity]:
        """The amenities named in ``text``, separated by commas (empty names skipped): how
        the HTTP parameters and the command line take them. The error names the unknown
        ones and lists every valid name.

        >>> sorted(Amenity.parse_set("WiFi, coffee,,wifi"))
        [<Amenity.COFFEE: 'coffee'>, <Amenity.WIFI: 'wifi'>]
        """
        names = [t for t in (s.strip() for s in text.split(",")) if t]
        bad = [n for n in names if n.lower() not in _BY_NAME]
        if bad:
            raise _unknown(bad)
        return frozenset(_BY_NAME[n.lower()] for n in names)


_LABELS = {
    Amenity.WIFI: "Wi-Fi",
    Amenity.ACCESS_24_7: "24/7 access",
}


_BITS = {a.value: 1 << i for i, a in enumerate(Amenity)}
_BY_NAME = {a.value: a for a in Amenity}


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message, cut short when long.

    >>> shown("x" * 50, 3)
    "'xxx…'"
    """
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _unknown(names: Sequence[str]) -> ValueError:
    """The error for unknown amenity names: the first few of them, and every valid name."""
    return ValueError(f"unknown amenity {', '.join(map(shown, names[:5]))}; valid: "
                      f"{', '.join(_BY_NAME)}")


def amenity_mask(amenities: Iterable[Amenity | str]) -> int:
    """The bitmask of a set of amenities, given as members or as vocabulary names.

    >>> amenity_mask(["wifi", Amenity.COFFEE]) == Amenity.WIFI.bit | Amenity.COFFEE.bit
    True
    """
    mask = 0
    for a in amenities:
        mask |= _BITS[a]
    return mask


GEOCODE_PRECISIONS = ("input", "street", "city")


def _about(text: str, **schema: object) -> dict:
    """A Space field's description and, where its type says too little, JSON Schema."""
    return {"description": text, "schema": schema}


@dataclass(frozen=True, slots=True)
class Space:
    """One coworking space as geosearch serves it.

    The one definition of a space's fields: the loader's columns, the feature properties
    both backends write (every field but ``id``, ``lat``, ``lon`` and ``status``, in this
    order), the client's reading of a feature and the OpenAPI schema all come from here
    (:data:`SPACE_FIELDS`, :data:`FEATURE_PROPERTIES`, :func:`field_schema`).
    """

    id: str = field(metadata=_about("Stable identifier from the feed"))
    name: str = field(metadata=_about("Name of the space"))
    address: str = field(metadata=_about("Street address"))
    city: str = field(metadata=_about("City, as the space's record has it"))
    postcode: str | None = field(metadata=_about("Postal code"))
    country: str = field(metadata=_about("ISO 3166-1 alpha-2 code", pattern="^[A-Z]{2}$"))
    lat: float = field(metadata=_about("WGS84 latitude", minimum=-90, maximum=90))
    lon: float = field(metadata=_about("WGS84 longitude", minimum=-180, maximum=180))
    amenities: tuple[str, ...] = field(metadata=_about(
        "Amenities, vocabulary names", items={"enum": [a.value for a in Amenity]}))
    capacity: int | None = field(metadata=_about("Desks", minimum=0))
    price_day: float | None = field(metadata=_about("Day pass price", minimum=0))
    currency: str | None = field(metadata=_about("ISO 4217 code of price_day",
                                                             pattern="^[A-Z]{3}$"))
    status: str = field(metadata=_about("Only active spaces are served"))
    h3_r7: str = field(metadata=_about("H3 cell of the position, resolution 7"))
    h3_r8: str = field(metadata=_about("H3 cell of the position, resolution 8"))
    h3_r9: str = field(metadata=_about("H3 cell of the position, resolution 9"))
    geocode_precision: str = field(metadata=_about(
        "Where the position came from: the feed, a street or a city centre",
        enum=list(GEOCODE_PRECISIONS)))


SPACE_FIELDS = tuple(f.name for f in fields(Space))
# The properties of a result feature, in the order they are written.
FEATURE_PROPERTIES = tuple(n for n in SPACE_FIELDS if n not in ("id", "lat", "lon", "status"))
_JSON_TYPES = {"str": "string", "int": "integer", "float": "number",
               "tuple[str, ...]": "array"}


def field_schema(name: str) -> dict:
    """The JSON Schema of the Space field ``name``, from its type and metadata.

    >>> field_schema("capacity")["type"]
    ['integer', 'null']
    """
    (f,) = (f for f in fields(Space) if f.name == name)
    kind, _, optional = str(f.type).partition(" | ")
    json_type = _JSON_TYPES[kind]
    return {"type": [json_type, "null"] if optional else json_type,
            "description": f.metadata["description"], **f.metadata["schema"]}


@dataclass(frozen=True, slots=True)
class Hit:
    """A space found by a query, with its geodesic distance from the query's origin."""

    space: Space
    distance_m: float | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    """Attribute filters shared by every search.

    ``all_amenities``: the space has each of these; ``any_amenities``: at least one;
    ``countries``: ISO alpha-2 codes, any of them; ``city``: case-insensitive equality with
    the space's own city (at most :data:`MAX_CITY_CHARS` characters); ``min_capacity``: at
    least this many desks; ``text``: the terms of a text query
    (:func:`geosearch.text.query_terms`), each a prefix of a word of the space's name,
    address or city; ``where``: a condition on the country, city and capacity
    (:mod:`geosearch.predicate`: what the OGC items' CQL2 filter says beyond the others).
    """

    all_amenities: frozenset[Amenity] = frozenset()
    any_amenities: frozenset[Amenity] = frozenset()
    countries: frozenset[str] = frozenset()
    city: str | None = None
    min_capacity: int | None = None
    text: tuple[str, ...] = ()
    where: tuple | None = None

    def __post_init__(self) -> None:
        if self.text and (len(self.text) > MAX_Q_TERMS
                          or any(words(t) != [t] for t in self.text)):
            raise ValueError(f"text must be at most {MAX_Q_TERMS} folded words: "
                             "use geosearch.text.query_terms(q)")
        for c in self.countries:
            if len(c) != 2 or not c.isalpha() or not c.isupper():
                raise ValueError(f"country {c!r} is not an upper-case ISO 3166-1 alpha-2 code")
        if self.min_capacity is not None and not 0 <= self.min_capacity <= MAX_CAPACITY:
            raise ValueError(f"min_capacity must be an integer in 0..{MAX_CAPACITY}")
        if self.city is not None and len(self.city) > MAX_CITY_CHARS:
            raise ValueError(f"city must be at most {MAX_CITY_CHARS} characters")

    @property
    def is_empty(self) -> bool:
        """No filter at all: every space passes."""
        return not (self.all_amenities or self.any_amenities or self.countries
                    or self.city is not None or self.min_capacity is not None or self.text
                    or self.where is not None)

    @property
    def city_key(self) -> str | None:
        """The city as compared: case-folded and trimmed."""
        return None if self.city is None else self.city.strip().casefold()

    def key(self) -> tuple:
        """A canonical, hashable form (used to bind a cursor to its query)."""
        return (
            sorted(a.value for a in self.all_amenities),
            sorted(a.value for a in self.any_amenities),
            sorted(self.countries),
            self.city_key,
            self.min_capacity,
            sorted(self.text),
            self.where,
        )


def _check_lat_lon(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError("lat must be a number in [-90, 90]")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ValueError("lon must be a number in [-180, 180]")


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer in 1..{MAX_LIMIT}")


@dataclass(frozen=True, slots=True)
class Point:
    """A WGS84 position."""

    lat: float
    lon: float

    def __post_init__(self) -> None:
        _check_lat_lon(self.lat, self.lon)


@dataclass(frozen=True, slots=True)
class RadiusQuery:
    """Active spaces with ``distance_m <= radius_m`` from ``origin``, nearest first.

    ``after`` continues a previous page (a page's ``next_after``: the distance and id of
    its last hit and the change feed's seq the walk is read at); ``version`` (on every
    paged query) asks for the page from that dataset version only: a backend that cannot
    serve it raises :class:`~geosearch.backends.base.StaleVersion`.
    """

    origin: Point
    radius_m: float
    filters: Filters = field(default_factory=Filters)
    limit: int = DEFAULT_LIMIT
    after: tuple[float, str, int] | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.radius_m) and 0 < self.radius_m <= MAX_RADIUS_M):
            raise ValueError(f"radius_m must be a number with 0 < radius_m <= {MAX_RADIUS_M:g}")
        _check_limit(self.limit)


@dataclass(frozen=True, slots=True)
class NearestQuery:
    """The ``k`` active spaces nearest to ``origin`` that pass the filters, none farther
    than ``max_distance_m`` when it is given (at most :data:`MAX_DISTANCE_M`)."""

    origin: Point
    k: int = DEFAULT_K
    max_distance_m: float | None = None
    filters: Filters = field(default_factory=Filters)

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_K:
            raise ValueError(f"k must be an integer in 1..{MAX_K}")
        if self.max_distance_m is not None and not (
            math.isfinite(self.max_distance_m) and 0 <= self.max_distance_m <= MAX_DISTANCE_M
        ):
            raise ValueError(f"max_distance_m must be a number in [0, {MAX_DISTANCE_M:.0f}]")


@dataclass(frozen=True, slots=True)
class PolygonQuery:
    """Active spaces covered by ``area`` (boundary included, planar lon/lat edges).

    Ordered by id, or by distance from ``origin`` when one is given. ``area`` is a
    valid shapely Polygon or MultiPolygon in lon/lat; use :func:`geosearch.geo.bbox_area`
    for a bbox (it splits one that crosses the antimeridian).
    """

    area: BaseGeometry
    filters: Filters = field(default_factory=Filters)
    origin: Point | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[float, str, int] | tuple[str] | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if self.area.geom_type not in ("Polygon", "MultiPolygon"):
            raise ValueError("area must be a Polygon or a MultiPolygon")
        _check_limit(self.limit)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """Every active space that passes the filters, by id."""

    filters: Filters = field(default_factory=Filters)
    limit: int = DEFAULT_LIMIT
    after: tuple[str] | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        _check_limit(self.limit)


@dataclass(frozen=True, slots=True)
class TileQuery:
    """The active spaces that pass the filters inside Web Mercator tile ``z/x/y`` (XYZ
    scheme: ``y`` counts down from the north), as points from :data:`POINT_ZOOM` up and
    as clusters below it (:mod:`geosearch.tiles`)."""

    z: int
    x: int
    y: int
    filters: Filters = field(default_factory=Filters)

    def __post_init__(self) -> None:
        if not 0 <= self.z <= MAX_TILE_ZOOM:
            raise ValueError(f"z must be an integer in 0..{MAX_TILE_ZOOM}")
        for name, value in (("x", self.x), ("y", self.y)):
            if not 0 <= value < 1 << self.z:
                raise ValueError(f"{name} must be an integer in 0..{(1 << self.z) - 1} "
                                 f"at zoom {self.z}")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of hits.

    ``next_after`` is the keyset to continue from when there is more; ``version`` is the
    dataset version the page was read from. A walk by distance keeps the change feed's
    seq of its first page in its keyset: its later pages skip the spaces written since
    (a space that moved during the walk is met at most once).
    """

    hits: Sequence[Hit]
    next_after: tuple | None = None
    version: str | None = None
