"""Find duplicates: the same space sent again, under a new id or with small changes."""

from __future__ import annotations

from geosearch.geo import geodesic_m
from geosearch.ingest.records import Record
from geosearch.reference import fold

NEAR_M = 150.0


def _same_space(a: Record, b: Record) -> bool:
    if geodesic_m(a.lat, a.lon, b.lat, b.lon) > NEAR_M:
        return False
    if "city" in (a.geocode_precision, b.geocode_precision):
        # City-level positions all sit on the city centre: the address must agree too.
        return fold(a.address) == fold(b.address)
    return True


def find_duplicates(records: list[Record]) -> dict[int, Record]:
    """Map the index of each duplicate to the earlier record it repeats.

    Two rows are one space when they have the same name (compared case-, accent- and
    space-insensitively) in the same country and lie within 150 m of each other (with the
    same address when either was geocoded to a city centre). The first row wins.
    """
    kept: dict[tuple[str, str], list[Record]] = {}
    duplicates: dict[int, Record] = {}
    for i, record in enumerate(records):
        group = kept.setdefault((record.country, fold(record.name)), [])
        original = next((k for k in group if _same_space(k, record)), None)
        if original is None:
            group.append(record)
        else:
            duplicates[i] = original
    return duplicates
