"""The CQL2 classes /ogc/conformance declares, tested by their own requirements (OGC
21-065, CQL2): Basic CQL2 (/req/basic-cql2/...) through the CQL2 Text encoding, on both
backends.

Each filter's answer is compared with the spaces an evaluation of the requirements
selects, written here from them: a comparison with an unset value is NULL (unknown),
NOT of NULL is NULL, AND and OR follow the three-valued tables, and a space is in the
answer when its filter is TRUE. The queryables are those of
/ogc/collections/spaces/queryables; ``city`` compares as the city filter does (any case),
``country`` as its upper-case code.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from urllib.parse import quote

import pandas as pd
import pytest

from geosearch.api import create_app
from geosearch.settings import Settings

CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
ITEMS = "/ogc/collections/spaces/items?limit=500&filter-lang=cql2-text&filter="

Truth = bool | None  # TRUE, FALSE, or NULL (unknown)
Row = dict


def compare(value: object, op: str, other: object) -> Truth:
    """/req/basic-cql2/binary-comparison-predicate A, B and C."""
    if value is None:
        return None
    ops = {"=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le,
           ">": operator.gt, ">=": operator.ge}
    return bool(ops[op](value, other))


def not_(a: Truth) -> Truth:
    return None if a is None else not a


def and_(a: Truth, b: Truth) -> Truth:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def or_(a: Truth, b: Truth) -> Truth:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def cap(row: Row) -> float | None:
    return row["capacity"]


def _case(op: str, value: float) -> tuple[str, Callable[[Row], Truth]]:
    return f"capacity {op} {value:g}", lambda r: compare(cap(r), op, value)


CASES: list[tuple[str, Callable[[Row], Truth]]] = [
    # binary comparisons, each operator, on a number and on text (A, B)
    *(_case(op, 58) for op in ("=", "<>", "<", "<=", ">", ">=")),
    ("country <> 'DE'", lambda r: compare(r["country"], "<>", "DE")),
    ("country < 'DE'", lambda r: compare(r["country"], "<", "DE")),
    ("country >= 'US'", lambda r: compare(r["country"], ">=", "US")),
    ("city = 'berlin'", lambda r: compare(r["city"], "=", "berlin")),
    ("city <> 'Berlin'", lambda r: compare(r["city"], "<>", "berlin")),
    ("city <= 'bern'", lambda r: compare(r["city"], "<=", "bern")),
    # a value on the left
    ("20 > capacity", lambda r: compare(cap(r), "<", 20)),
    # NULL operands (C): an unset capacity passes neither a comparison nor its NOT
    ("NOT (capacity < 40)", lambda r: not_(compare(cap(r), "<", 40))),
    # the null predicate and NOT's truth table
    ("capacity IS NULL", lambda r: cap(r) is None),
    ("NOT (capacity IS NULL)", lambda r: cap(r) is not None),
    ("capacity IS NOT NULL", lambda r: cap(r) is not None),
    # logically connected predicates (/req/basic-cql2/cql2-filter)
    ("country = 'NZ' OR capacity > 300",
     lambda r: or_(compare(r["country"], "=", "NZ"), compare(cap(r), ">", 300))),
    ("NOT (country = 'DE' AND capacity < 50)",
     lambda r: not_(and_(compare(r["country"], "=", "DE"), compare(cap(r), "<", 50)))),
    ("(city = 'Paris' OR city = 'Lyon') AND NOT capacity >= 30",
     lambda r: and_(or_(compare(r["city"], "=", "paris"), compare(r["city"], "=", "lyon")),
                    not_(compare(cap(r), ">=", 30)))),
    ("capacity IS NULL OR capacity < 10",
     lambda r: or_(cap(r) is None, compare(cap(r), "<", 10))),
    ("country = 'DE' AND capacity >= 40 AND capacity <= 41",
     lambda r: and_(compare(r["country"], "=", "DE"),
                    and_(compare(cap(r), ">=", 40), compare(cap(r), "<=", 41)))),
    ("TRUE", lambda r: True),
    ("FALSE OR country = 'SG'", lambda r: compare(r["country"], "=", "SG")),
    ("1 = 2 OR NOT TRUE", lambda r: False),
]


@pytest.fixture(scope="module")
def rows(feed_result) -> list[Row]:
    """Every active space's queryables, as the requirements read them (unset: None)."""
    frame = feed_result.frame
    active = frame[frame["status"] == "active"]
    return [{"id": r.id, "country": r.country, "city": str(r.city).strip().casefold(),
             "capacity": None if pd.isna(r.capacity) else float(r.capacity)}
            for r in active.itertuples()]


@pytest.fixture
def client(feed_backend):
    return create_app(Settings(), backend=feed_backend).test_client()


def _selected(client, text: str) -> list[str]:
    """The ids of every page of the items the filter ``text`` selects."""
    ids, url = [], ITEMS + quote(text)
    while url:
        response = client.get(url)
        assert response.status_code == 200, (text, response.get_json())
        body = response.get_json()
        ids += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    return ids


def test_the_basic_cql2_classes_are_declared(client):
    declared = client.get("/ogc/conformance").get_json()["conformsTo"]
    assert {CQL2 + "basic-cql2", CQL2 + "cql2-text"} <= set(declared)


@pytest.mark.parametrize(("text", "truth"), CASES, ids=[c[0] for c in CASES])
def test_a_filter_selects_the_spaces_whose_predicate_is_true(client, rows, text, truth):
    want = sorted(r["id"] for r in rows if truth(r) is True)
    assert _selected(client, text) == want


def test_the_cases_select_something_and_meet_unset_values(rows):
    """The cases above are not vacuous: most select some spaces and leave others, and the
    data has spaces without a capacity (the NULL requirements)."""
    assert any(r["capacity"] is None for r in rows)
    picked = [sum(truth(r) is True for r in rows) for _, truth in CASES]
    assert sum(0 < n < len(rows) for n in picked) >= len(CASES) - 4


@pytest.mark.parametrize(("text", "named"), [
    ("colour = 'red'", "'colour' is not a queryable"),  # /req/basic-cql2/property A
    ("capacity = 'ten'", "capacity is compared with a number"),  # binary-comparison D
    ("country = 10", "text"),
    ("capacity < capacity", "not with another queryable"),  # property-property: not declared
])
def test_what_the_requirements_exclude_is_a_400_naming_the_filter(client, text, named):
    response = client.get(ITEMS + quote(text))
    assert response.status_code == 400
    [error] = response.get_json()["errors"]
    assert error["param"] == "filter" and named in error["message"]
