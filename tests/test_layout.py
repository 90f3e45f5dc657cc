"""The table layout declared once (geosearch.layout): the migrations create exactly the
declared columns, the names that follow from it agree with their users, and a dataset
loaded under another layout is loaded again."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from geosearch import layout
from geosearch.database import libpq_url, make_engine
from geosearch.features import serving_columns
from geosearch.layout import Column
from geosearch.model import SPACE_FIELDS
from geosearch.settings import Settings
from geosearch.store import load, migrate


@pytest.fixture
def url(pg_database):
    return pg_database("layout")


def _columns(url: str, table: str) -> set[Column]:
    """The columns of ``table`` as the database has them."""
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull "
            "FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 "
            "AND NOT a.attisdropped", (table,)).fetchall()
    return {Column(*row) for row in rows}


def test_the_migrated_tables_have_exactly_the_declared_columns(url):
    engine = make_engine(Settings(database_url=url))
    try:
        migrate(engine)
    finally:
        engine.dispose()

    for table, columns in layout.TABLES.items():
        assert _columns(url, table) == set(columns), table


def test_the_spaces_table_holds_the_space_fields_first_then_what_is_derived():
    assert layout.LOAD_COLUMNS[:len(SPACE_FIELDS)] == SPACE_FIELDS
    assert len(set(layout.LOAD_COLUMNS)) == len(layout.LOAD_COLUMNS)
    assert set(layout.SNAPSHOT_FIELDS) <= set(SPACE_FIELDS)


def test_the_derived_columns_are_those_features_derives(feed_result):
    derived = serving_columns(feed_result.frame.head(3))

    assert tuple(derived) == layout.DERIVED_COLUMNS
    assert set(layout.DERIVED_COLUMNS) - {layout.SEARCH_WORDS} <= set(layout.LOAD_COLUMNS)


def test_the_layout_check_follows_the_declaration():
    tables = dict(layout.TABLES)
    assert layout.checksum(tables) == layout.LAYOUT
    assert 0 <= layout.LAYOUT < 2 ** 31  # dataset_state.layout is an integer
    reordered = {**tables, "spaces": tables["spaces"][::-1]}
    assert layout.checksum(reordered) == layout.LAYOUT
    for changed in ((*tables["spaces"], Column("extra", "text")),
                    tuple(dataclasses.replace(c, sql="bigint") if c.name == "place" else c
                          for c in tables["spaces"]),
                    tuple(dataclasses.replace(c, nullable=True) if c.name == "name" else c
                          for c in tables["spaces"])):
        assert layout.checksum({**tables, "spaces": changed}) != layout.LAYOUT


def test_a_dataset_loaded_under_another_layout_is_loaded_again(url, feed_result):
    engine = make_engine(Settings(database_url=url))
    frame, meta = feed_result.frame.head(50), {**feed_result.meta(), "dataset_version": "v"}
    try:
        assert load(frame, meta, engine) is True
        assert load(frame, meta, engine) is False
        with psycopg.connect(libpq_url(url)) as conn:
            conn.execute("UPDATE dataset_state SET layout = %s", (layout.LAYOUT ^ 1,))

        assert load(frame, meta, engine) is True
        with psycopg.connect(libpq_url(url)) as conn:
            assert conn.execute("SELECT layout FROM dataset_state").fetchone() == (
                layout.LAYOUT,)
    finally:
        engine.dispose()
