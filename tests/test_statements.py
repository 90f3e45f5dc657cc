"""The PostGIS backend's statements, checked without a database: every builder binds
exactly the parameters its SQL names, values never reach the SQL text (a query shape is
one text, one prepared statement), and the filters are where they should be."""

from __future__ import annotations

import re

import pytest

from geosearch.backends import prepared
from geosearch.backends.statements import (
    ACTIVE_FRAME_SQL,
    AMENITY_COUNTS_SQL,
    DATA_STAMP_SQL,
    NODE_STATE_SQL,
    SPACE_SQL,
    count_statement,
    filter_sql,
    plane_far_statement,
    plane_statement,
    statement,
    versioned_page,
)
from geosearch.backends.tile_statements import tile_statement
from geosearch.geo import bbox_area
from geosearch.model import (
    POINT_ZOOM,
    Amenity,
    Filters,
    ListQuery,
    NearestQuery,
    Point,
    PolygonQuery,
    RadiusQuery,
    TileQuery,
)

WIFI, COFFEE = frozenset({Amenity.WIFI}), frozenset({Amenity.COFFEE})
EVERY_FILTER = Filters(WIFI, COFFEE, frozenset({"DE", "FR"}), "Sankt Pauli", 7,
                       ("kaffee", "haus"))
# a second query of each shape: other values, the same filters present
OTHER_FILTER = Filters(frozenset({Amenity.PARKING}), frozenset({Amenity.PHONE_BOOTHS}),
                       frozenset({"JP"}), "O'Hare", 2, ("zebra", "quoll"))
AREA = bbox_area(9.9, 53.5, 10.1, 53.6)
OTHER_AREA = bbox_area(139.6, 35.6, 139.8, 35.7)
FILTERS = [Filters(), Filters(all_amenities=WIFI), Filters(any_amenities=COFFEE),
           Filters(countries=frozenset({"DE"})), Filters(city="Berlin"),
           Filters(min_capacity=3), Filters(text=("cafe",)), EVERY_FILTER]


def _shapes(f: Filters, area, origin: Point, after_d: float, after_id: str) -> dict:
    """A statement of every shape with filters ``f`` and the other values given."""
    return {
        "radius": statement(RadiusQuery(origin, 2000.0, f)),
        "radius after": statement(RadiusQuery(origin, 2000.0, f, 10, (after_d, after_id, 7))),
        "nearest": statement(NearestQuery(origin, 6, None, f)),
        "nearest capped": statement(NearestQuery(origin, 6, 900.0, f)),
        "nearest by text": statement(NearestQuery(origin, 6, None, f), by_text=True),
        "polygon": statement(PolygonQuery(area, f)),
        "polygon after": statement(PolygonQuery(area, f, None, 10, (after_id,))),
        "polygon by distance": statement(PolygonQuery(area, f, origin)),
        "polygon by distance after": statement(
            PolygonQuery(area, f, origin, 10, (after_d, after_id, 7))),
        "list": statement(ListQuery(f)),
        "list after": statement(ListQuery(f, 10, (after_id,))),
        "count list": count_statement(ListQuery(f)),
        "count polygon": count_statement(PolygonQuery(area, f)),
        "plane": plane_statement(NearestQuery(origin, 6, None, f), ("cafe", "cafg")),
        "plane far": plane_far_statement(NearestQuery(origin, 6, None, f), ("cafe", "cafg"),
                                         2_000_000.0),
        "tile cells": tile_statement(TileQuery(3, 4, 2, Filters()), mvt=False),
        "tile cells mvt": tile_statement(TileQuery(3, 4, 2, Filters()), mvt=True),
        "tile groups": tile_statement(TileQuery(9, 270, 160, f), mvt=False),
        "tile groups mvt": tile_statement(TileQuery(9, 270, 160, f), mvt=True),
        "tile points": tile_statement(TileQuery(POINT_ZOOM, 2200, 1300, f), mvt=False),
        "tile points mvt": tile_statement(TileQuery(POINT_ZOOM, 2200, 1300, f), mvt=True),
    }


def _every_shape(f: Filters) -> dict:
    return _shapes(f, AREA, Point(53.55, 9.99), 120.5, "space-1")


def _placeholders(sql: str) -> set[str]:
    return set(re.findall(r"%\((\w+)\)s", sql))


@pytest.mark.parametrize("f", FILTERS, ids=lambda f: repr(f.key()))
def test_every_statement_binds_exactly_the_parameters_its_sql_names(f):
    """Exactly, but for a tile: it gives its position whole, whichever parts the cells,
    the points or the MVT encoding use."""
    for shape, (sql, params) in _every_shape(f).items():
        named = _placeholders(sql)
        if shape.startswith("tile"):
            assert named <= set(params), shape
            assert set(params) - named <= {"low", "high", "scale", "ox", "oy"}, shape
        else:
            assert set(params) == named, shape
        query, names = prepared.positional(sql)  # the driver reads every placeholder
        assert b"%(" not in query and set(names) == named, shape


def test_values_are_bound_never_written_into_the_sql():
    """Two queries of each shape with other values (origin, area, filters, cursor) give
    the same SQL text, and none of the values is in it."""
    one = _every_shape(EVERY_FILTER)
    other = _shapes(OTHER_FILTER, OTHER_AREA, Point(35.65, 139.7), 77.25, "x'; DROP TABLE")
    for shape, (sql, params) in one.items():
        other_sql, other_params = other[shape]
        assert sql == other_sql, shape
        for value in (*params.values(), *other_params.values()):
            if isinstance(value, str) and len(value) > 2:
                assert value not in sql, (shape, value)
    for word in ("Sankt", "O'Hare", "kaffee", "zebra", "DROP TABLE", "53.55", "139.7"):
        assert not any(word in sql for sql, _ in one.values()), word


@pytest.mark.parametrize(("ordered", "all_sql", "any_sql", "text_sql"), [
    (True, "amenity_mask & %(all_mask)s = %(all_mask)s", "amenity_mask & %(any_mask)s <> 0",
     "ts_match_vq(search, %(q)s::tsquery)"),
    (False, "amenities @> %(all_amenities)s::text[]", "amenities && %(any_amenities)s::text[]",
     "search @@ %(q)s::tsquery"),
], ids=["ordered-scan", "indexed"])
def test_each_filter_has_its_condition(ordered, all_sql, any_sql, text_sql):
    """An ordered scan (radius, KNN, tile ranges) tests amenities and text on what no
    index serves; any other scan on what their GIN indexes serve."""
    where, params = filter_sql(EVERY_FILTER, ordered_scan=ordered)
    for condition in ("status = 'active'", all_sql, any_sql, text_sql,
                      "country = ANY(%(countries)s::text[])", "city_key = %(city_key)s",
                      "capacity >= %(min_capacity)s::int"):
        assert condition in where
    assert params["countries"] == ["DE", "FR"] and params["city_key"] == "sankt pauli"
    assert params["min_capacity"] == 7 and params["q"] == "'kaffee':* & 'haus':*"
    assert filter_sql(Filters(), ordered_scan=ordered) == ("status = 'active'", {})


def test_statements_apply_their_filters_and_keysets():
    f = Filters(countries=frozenset({"DE"}), text=("cafe",))
    origin = Point(52.5, 13.4)
    sql, params = statement(RadiusQuery(origin, 500.0, f, 20, (12.5, "b", 9)))
    assert "ts_match_vq(search" in sql and "ST_DWithin(geog" in sql
    assert "changed_seq <= %(s0)s" in sql
    assert (params["d0"], params["id0"], params["s0"], params["n"], params["r"]) == (
        12.5, "b", 9, 21, 500.0)
    sql, params = statement(ListQuery(f, 5, ("k",)))
    assert "search @@ %(q)s::tsquery" in sql and "id > %(id0)s" in sql
    assert (params["id0"], params["n"]) == ("k", 6)
    sql, params = statement(PolygonQuery(AREA, f))
    assert "ST_Covers(ST_GeomFromWKB(%(area)s, 4326), geom)" in sql
    assert isinstance(params["area"], bytes)
    walk, _ = statement(NearestQuery(origin, 3, None, f))
    by_text, _ = statement(NearestQuery(origin, 3, None, f), by_text=True)
    assert "LIMIT 5000" in walk and "LIMIT 5000" not in by_text  # the walk is bounded
    _, params = tile_statement(TileQuery(POINT_ZOOM, 2200, 1300, Filters()), mvt=False)
    assert "bounds" not in params and "shift" not in params  # points, not cells


def test_the_far_plane_statement_reads_both_sides_of_the_antimeridian():
    _, params = plane_far_statement(NearestQuery(Point(-17.7, 179.99), 6, None, Filters(
        text=("suva",))), ("suva", "suvb"), 50_000.0)
    assert len(params["west"]) >= 2  # a strip on each side of ±180°
    for west, east in zip(params["west"], params["east"], strict=True):
        assert 0 <= west <= east <= 360  # longitudes + 180 in the plane


def test_a_versioned_page_is_its_rows_or_none_for_the_row_of_an_empty_page():
    rows = [("v1", "a", 1.0, b"{"), ("v1", "b", 2.0, b"{")]
    assert versioned_page(rows) == ("v1", rows)
    assert versioned_page([("v1", None, None, None)]) == ("v1", [])
    assert versioned_page([("v1", 0)]) == ("v1", [("v1", 0)])  # a count of none is a row
    assert versioned_page([("v1",)]) == ("v1", [])  # the version alone


def test_the_fixed_statements_take_no_value_but_the_ids():
    for sql in (DATA_STAMP_SQL, AMENITY_COUNTS_SQL, ACTIVE_FRAME_SQL, NODE_STATE_SQL):
        assert _placeholders(sql) == set()
    assert _placeholders(SPACE_SQL) == {"id"}
    assert ACTIVE_FRAME_SQL.startswith("SELECT id, lat, lon, country, city, amenities ")
