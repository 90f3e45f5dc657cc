"""Validate positions: ranges, null island, swapped lat/lon, point in declared country."""

from __future__ import annotations

from geosearch.ingest.records import Record, Rejected
from geosearch.reference import CountryIndex

NULL_ISLAND_DEG = 1e-6


def _inside(index: CountryIndex, code: str, lat: float, lon: float) -> bool:
    return -90 <= lat <= 90 and -180 <= lon <= 180 and bool(index.in_country(code, lat, lon))


def validate_position(record: Record, index: CountryIndex) -> None:
    """Check the row's point against its declared country (5 km tolerance).

    (0, 0) is a placeholder: the point is dropped and the row is geocoded instead. A
    swap of lat and lon is repaired only when it is certain: the point as given lies
    outside the declared country (or out of range) and the swapped one inside it. Any
    other point outside its country is rejected.
    """
    if record.lat is None or record.lon is None:
        return
    lat, lon = record.lat, record.lon
    if abs(lat) < NULL_ISLAND_DEG and abs(lon) < NULL_ISLAND_DEG:
        record.repair("null_island", "coordinates (0, 0) dropped: geocoding instead")
        record.lat = record.lon = None
        return
    if index.geometry(record.country) is None:
        raise Rejected("unknown_country", f"no outline for country {record.country}")
    if _inside(index, record.country, lat, lon):
        return
    if _inside(index, record.country, lon, lat):
        record.repair("swapped_latlon", f"({lat}, {lon}) -> ({lon}, {lat})")
        record.lat, record.lon = lon, lat
        return
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise Rejected("invalid_coordinates",
                       f"lat {lat} / lon {lon} out of range (lat -90..90, lon -180..180)")
    outside_m = index.distance_outside_m(record.country, lat, lon)
    how_far = "" if outside_m is None else f"{outside_m / 1000:.0f} km "
    found = ", ".join(index.countries_at(lat, lon)) or "no country"
    raise Rejected("outside_country", f"point ({lat}, {lon}) is {how_far}outside "
                   f"{record.country} (it lies in {found})")
