"""Unit tests of each ingestion stage, and property tests of the parsers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geosearch.ingest.decode import FeedError, clean_text, decode_bytes, fix_mojibake, read_feed
from geosearch.ingest.dedupe import find_duplicates
from geosearch.ingest.geocode import GazetteerGeocoder
from geosearch.ingest.normalise import amenity_token, normalise, parse_decimal
from geosearch.ingest.records import Record, Rejected
from geosearch.ingest.validate import validate_position
from geosearch.reference import countries, country_code

HEADER = ("id,name,address,city,postcode,country,lat,lon,amenities,capacity,price_day,"
          "currency,status")


def record(**fields) -> Record:
    raw = {"id": "x1", "name": "Desk Club", "address": "1 Main St", "city": "Berlin",
           "postcode": "10115", "country": "DE", "lat": "52.52", "lon": "13.405",
           "amenities": "wifi;coffee", "capacity": "40", "price_day": "25.5",
           "currency": "EUR", "status": "active"}
    raw.update(fields)
    return Record(row=1, raw=raw)


def codes(rec: Record) -> list[str]:
    return [r.code for r in rec.repairs]


# -- decode ---------------------------------------------------------------------------

def test_csv_with_bom_and_cp1252_decode_to_the_same_text(tmp_path):
    row = "z1,Café Zürich,Bahnhofstr. 1,Zürich,8001,CH,47.37,8.54,wifi,10,30,CHF,active"
    text = f"{HEADER}\n{row}\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    (tmp_path / "win.csv").write_bytes(text.encode("cp1252"))

    a, b = read_feed(tmp_path / "bom.csv"), read_feed(tmp_path / "win.csv")

    assert a[0].raw == b[0].raw
    assert a[0].raw["city"] == "Zürich" and a[0].raw["id"] == "z1"


def test_geojson_feed_takes_the_point_as_coordinates(tmp_path):
    doc = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [13.4, 52.5]},
        "properties": {"id": "g1", "name": "N", "city": "Berlin", "country": "DE",
                       "amenities": ["wifi", "parking"]}}]}
    path = tmp_path / "feed.geojson"
    path.write_text(json.dumps(doc))

    [rec] = read_feed(path)

    assert (rec.raw["lat"], rec.raw["lon"]) == ("52.5", "13.4")
    assert rec.raw["amenities"] == "wifi;parking"


def test_unreadable_feeds_raise_feed_error(tmp_path):
    (tmp_path / "bad.geojson").write_text("{not json")
    (tmp_path / "nohead.csv").write_text("a,b\n1,2\n")
    for name in ("bad.geojson", "nohead.csv", "missing.csv"):
        with pytest.raises(FeedError):
            read_feed(tmp_path / name)


@pytest.mark.parametrize("text", ["Zürich", "Kraków", "São Paulo", "İstanbul", "東京", "Grudziądz"])
def test_mojibake_is_undone_and_clean_text_is_left_alone(text):
    broken = text.encode("utf-8").decode("sloppy-windows-1252")

    assert fix_mojibake(broken) == text
    assert fix_mojibake(text) == text


@given(st.text(alphabet=st.characters(codec="cp1252", exclude_categories=["Cc", "Cs"]),
               max_size=40))
def test_any_cp1252_text_survives_decoding(text):
    data = text.encode("cp1252")
    try:  # bytes that are UTF-8 too (ASCII, or pairs such as "Ã¼") are read as UTF-8
        want = data.decode("utf-8")
    except UnicodeDecodeError:  # any other cp1252 text comes back as it was
        want = text
    assert decode_bytes(data) == want
    assert decode_bytes(("\ufeff" + text).encode("utf-8")) == text


@given(st.text(max_size=60))
def test_clean_text_is_idempotent(text):
    once = clean_text(text)
    assert clean_text(once) == once


# -- normalise ------------------------------------------------------------------------

@given(st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 6)))
def test_decimal_point_and_decimal_comma_parse_alike(value):
    text = f"{value:.6f}"
    assert parse_decimal(text) == (pytest.approx(value), False)
    assert parse_decimal(text.replace(".", ",")) == (pytest.approx(value), True)


@pytest.mark.parametrize("text", ["abc", "1.2.3", "1,2,3", "nan", "inf", "--1", "1e400"])
def test_non_numbers_are_refused(text):
    with pytest.raises(ValueError):
        parse_decimal(text)


@pytest.mark.parametrize(("given_name", "code"), [
    ("DE", "DE"), ("de", "DE"), ("Deutschland", "DE"), ("United Kingdom", "GB"), ("UK", "GB"),
    ("España", "ES"), ("Österreich", "AT"), ("Türkiye", "TR"), ("Brasil", "BR"),
    ("Fiji", "FJ"), ("Svalbard and Jan Mayen", "SJ"), ("Atlantis", None), ("XX", None),
])
def test_country_names_and_codes(given_name, code):
    assert country_code(given_name) == code


@given(st.sampled_from(["DE", "GB", "US", "JP", "FJ", "NZ", "NO", "BR"]),
       st.sampled_from([str.lower, str.upper, lambda s: f"  {s} "]))
def test_country_codes_in_any_case_and_spacing(code, style):
    assert country_code(style(code)) == code


def test_normalise_repairs_and_records_each_change():
    rec = record(country="Deutschland", lat="52,52", lon="13,405",
                 amenities="WiFi;sauna;Meeting Rooms;wifi", capacity="-12")

    normalise(rec)

    assert rec.country == "DE" and (rec.lat, rec.lon) == (52.52, 13.405)
    assert rec.amenities == ("wifi", "meeting_rooms")
    assert rec.capacity is None
    assert {"country_name", "decimal_comma", "unknown_amenity", "negative_capacity"} <= set(
        codes(rec))


@pytest.mark.parametrize(("fields", "code"), [
    ({"name": ""}, "missing_name"), ({"id": ""}, "missing_id"),
    ({"country": "Atlantis"}, "unknown_country"), ({"lat": "north"}, "invalid_coordinates"),
    ({"status": "maybe"}, "invalid_status"),
])
def test_normalise_rejects_with_a_reason(fields, code):
    with pytest.raises(Rejected) as verdict:
        normalise(record(**fields))
    assert verdict.value.code == code


def test_amenity_tokens():
    assert amenity_token("24/7 access") == "access_24_7"
    assert amenity_token("Phone Booths") == "phone_booths"
    assert amenity_token("free beer") is None


# -- validate -------------------------------------------------------------------------

def _validated(**fields) -> Record:
    rec = record(**fields)
    normalise(rec)
    validate_position(rec, countries())
    return rec


def test_point_in_its_country_passes_unchanged():
    rec = _validated()
    assert (rec.lat, rec.lon) == (52.52, 13.405) and rec.repairs == []


def test_certain_swap_is_repaired():
    rec = _validated(lat="13.405", lon="52.52")
    assert (rec.lat, rec.lon) == (52.52, 13.405) and codes(rec) == ["swapped_latlon"]


def test_null_island_is_dropped_for_geocoding():
    rec = _validated(lat="0", lon="0")
    assert rec.lat is None and codes(rec) == ["null_island"]


def test_point_far_outside_its_country_is_rejected():
    with pytest.raises(Rejected) as verdict:
        _validated(lat="48.8566", lon="2.3522")  # Paris, declared DE
    assert verdict.value.code == "outside_country"
    assert "FR" in verdict.value.reason


def test_coastal_point_within_tolerance_passes():
    # Just off the coast of Kiel, within 5 km of Germany's outline.
    assert _validated(lat="54.45", lon="10.25").lat == 54.45


@pytest.mark.parametrize(("lat", "lon", "country"), [
    ("-18.1416", "178.4419", "FJ"), ("-16.79", "-179.99", "FJ"), ("78.22", "15.65", "SJ"),
    ("78.22", "15.65", "NO"), ("65.5", "179.5", "RU"), ("51.88", "-176.65", "US"),
    ("-43.95", "-176.55", "NZ"), ("-77.85", "166.67", "AQ"),
])
def test_antimeridian_and_high_latitude_points_are_valid(lat, lon, country):
    rec = _validated(lat=lat, lon=lon, country=country)
    assert (rec.lat, rec.lon) == (float(lat), float(lon))


def test_out_of_range_without_a_certain_swap_is_rejected():
    with pytest.raises(Rejected) as verdict:
        _validated(lat="95", lon="200")
    assert verdict.value.code == "invalid_coordinates"


# -- geocode and dedupe ---------------------------------------------------------------

def test_gazetteer_finds_cities_regardless_of_case_and_accents():
    geocoder = GazetteerGeocoder()
    found = geocoder.geocode("", "zurich", None, "CH")
    assert found is not None and found.precision == "city"
    assert abs(found.lat - 47.37) < 0.05
    assert geocoder.geocode("", "Nowhere-on-Earth", None, "CH") is None
    assert geocoder.city_near(52.52, 13.40, "DE") == "Berlin"


def test_near_duplicates_are_found_and_the_first_wins():
    a = _validated(id="a")
    b = _validated(id="b", name="  DESK CLUB ", lat="52.5201", lon="13.4051")
    c = _validated(id="c", name="Desk Club", lat="52.60", lon="13.405")  # 9 km away

    dups = find_duplicates([a, b, c])

    assert dups == {1: a}
