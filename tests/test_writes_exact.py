"""What a process keeps beside PostGIS stays exact under writes: its copy of the words
(nearest with ``q`` in the word plane finds a space by a word new to the dataset) and the
coverage answers (counted and measured again after a write, from the cache until then).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import h3
import orjson
import pandas as pd
import psycopg
import pytest

from geosearch.api import create_app
from geosearch.backends import termcounts
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import libpq_url, make_engine
from geosearch.keys import KeyStore
from geosearch.model import Amenity, Filters, NearestQuery, Point
from geosearch.reports.coverage import Coverage, CoverageOptions
from geosearch.settings import Settings
from geosearch.store import load
from geosearch.testing import oracle
from geosearch.text import query_terms

BERLIN = Point(52.5163, 13.3777)
ORACLE_COLUMNS = "id, name, address, city, country, lat, lon, amenities, capacity"


@pytest.fixture(scope="module")
def live(pg_database, feed_result):
    """The app over the feed in PostGIS, with a key that writes."""
    url = pg_database("writes_exact")
    engine = make_engine(Settings(database_url=url))
    try:
        load(feed_result.frame, feed_result.meta(), engine)
    finally:
        engine.dispose()
    settings = Settings(database_url=url, write_rate_limit="", heavy_rate_limit="",
                        client_budget=0)
    backend = PostgisBackend(settings)
    app = create_app(settings, backend=backend)
    keys = KeyStore(settings)
    writer = {"Authorization": f"Bearer {keys.create('writer', ['write'])}"}
    yield SimpleNamespace(url=url, app=app, backend=backend, client=app.test_client(),
                          writer=writer)
    app.extensions["geosearch.writes"].close()
    keys.close()
    backend.close()


def _rows(live, sql: str, params: dict | None = None) -> list[tuple]:
    with psycopg.connect(libpq_url(live.url)) as conn:
        return conn.execute(sql, params).fetchall()


def _active(live) -> pd.DataFrame:
    """The active spaces as the oracle reads them, from the database."""
    return pd.DataFrame(_rows(live, f"SELECT {ORACLE_COLUMNS} FROM spaces "
                                    "WHERE status = 'active' ORDER BY id"),
                        columns=ORACLE_COLUMNS.split(", "))


def _create(live, name: str, at: Point, **properties) -> dict:
    body = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [at.lon, at.lat]},
            "properties": {"name": name, "address": "", "city": "", "country": "DE",
                           "amenities": ["wifi"], **properties}}
    answer = live.client.post("/v1/spaces", json=body, headers=live.writer)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return {"id": answer.get_json()["id"], "etag": answer.headers["ETag"]}


def _close(live, space: dict) -> None:
    answer = live.client.delete(f"/v1/spaces/{space['id']}",
                                headers={**live.writer, "If-Match": space["etag"]})
    assert answer.status_code == 204, answer.get_data(as_text=True)


def _tiled_prefix(live) -> tuple[str, list[str]]:
    """A prefix of a few words, all in the word plane, that no active space has within
    500 km of Berlin; and its words."""
    spaces = _active(live)
    for (word,) in _rows(live, "SELECT word FROM search_words WHERE tile IS NOT NULL "
                               "AND word ~ '^[a-z]{5,}$' ORDER BY word"):
        prefix = word[:4]
        words = _rows(live, "SELECT word, tile FROM search_words WHERE word LIKE %(p)s",
                      {"p": prefix + "%"})
        if len(words) > termcounts.PLANE_WORDS or any(t is None for _, t in words):
            continue
        matching = spaces[oracle.passes(spaces, Filters(text=(prefix,)))]
        if oracle.distances(matching, BERLIN.lat, BERLIN.lon).min() > 500_000:
            return prefix, [w for w, _ in words]
    raise AssertionError("the feed has no such prefix")


def test_nearest_with_q_finds_a_space_by_a_word_new_to_the_dataset(live, monkeypatch):
    """A write adds a word of a prefix that the process's copy of the words knows by other
    words, all in the word plane: nearest with that prefix is searched in the plane
    (the copy is not read again meanwhile) and finds the new space, as the oracle does;
    and so does nearest with the new word, which the copy does not know at all."""
    monkeypatch.setattr(termcounts, "CHECK_EVERY_S", 1e9)  # the copy read once, here
    prefix, known = _tiled_prefix(live)
    new_word = prefix + "qxzv"
    assert live.backend._term_counts.lookup((prefix,)).plane is not None
    assert not _rows(live, "SELECT 1 FROM search_words WHERE word = %(w)s", {"w": new_word})

    space = _create(live, f"{new_word.capitalize()} Raum", BERLIN)

    copy_words = live.backend._term_counts._table[0]
    assert new_word not in copy_words and set(known) <= set(copy_words)  # the copy is stale
    assert live.backend._term_counts.lookup((prefix,)).plane is not None  # in the plane
    spaces = _active(live)
    for q in (prefix, new_word, f"{prefix} raum"):
        for origin, k, cap in ((BERLIN, 3, None), (Point(48.14, 11.58), 5, None),
                               (Point(53.55, 9.99), 2, 300_000.0)):
            f = Filters(all_amenities=frozenset({Amenity.WIFI}), text=query_terms(q))
            want = oracle.nearest(spaces, origin.lat, origin.lon, k, cap, f)
            got = live.backend.nearest(NearestQuery(origin, k, cap, f))
            assert [h.space.id for h in got] == [i for i, _ in want], (q, origin)
            assert [h.distance_m for h in got] == pytest.approx([d for _, d in want],
                                                                abs=1e-6)
    answer = live.client.get(f"/v1/spaces/nearest?lat={BERLIN.lat}&lon={BERLIN.lon}&k=1"
                             f"&q={prefix}").get_json()
    assert [f["id"] for f in answer["features"]] == [space["id"]]

    monkeypatch.setattr(termcounts, "CHECK_EVERY_S", 0.0)  # the copy follows the new word
    counts = live.backend._term_counts.lookup((new_word,))
    assert counts.matches == 1 and counts.plane is not None
    _close(live, space)
    f = Filters(text=(prefix,))
    want = oracle.nearest(_active(live), BERLIN.lat, BERLIN.lon, 3, None, f)
    assert [h.space.id for h in live.backend.nearest(NearestQuery(BERLIN, 3, None, f))] == [
        i for i, _ in want]
    assert space["id"] not in {i for i, _ in want}


COVERAGE = "res=7&walk_m=1000&min_population=100000"


def _coverage(live, view: str) -> dict:
    sep = "&" if "?" in view else "?"
    answer = live.client.get(f"/v1/coverage/{view}{sep}{COVERAGE}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def _fresh(live) -> dict:
    """The tables of the library over the spaces active now, as JSON reads them."""
    cov = Coverage(live.backend.active_frame(), CoverageOptions(res=7))
    tables = {"cities": cov.city_table("DE"), "countries": cov.country_table()}
    return {name: json.loads(orjson.dumps(table.to_dict(orient="records"),
                                          option=orjson.OPT_SERIALIZE_NUMPY))
            for name, table in tables.items()}


def _state(live) -> tuple[dict, dict, dict]:
    """Berlin's row of the cities, Germany's of the countries, the DE cells by id."""
    cities = {c["city"]: c for c in _coverage(live, "cities?country=DE")["cities"]}
    countries = {c["country"]: c for c in _coverage(live, "countries")["countries"]}
    cells = {f["id"]: f["properties"] for f in _coverage(live, "hexes?country=DE")["features"]}
    return cities["Berlin"], countries["DE"], cells


def test_coverage_counts_and_reach_follow_creates_and_closes(live):
    """A space created in Berlin is counted in its city, its country and its cell, and
    covers a cell that had no space within walk_m; closed, it is gone again. Between
    writes the answers come from the cache; after each, they equal the library's over
    the spaces active then."""
    cache = live.app.extensions["coverage.cache"]
    berlin, germany, cells = _state(live)
    computed = cache.computed
    assert _state(live) == (berlin, germany, cells) and cache.computed == computed
    empty = next(h for h, c in sorted(cells.items())
                 if not c["covered"] and c["spaces"] == 0 and c["city"] == "Berlin")
    at = Point(*h3.cell_to_latlng(empty))

    space = _create(live, "Abdeckung Neu", at)
    after = _state(live)
    assert after[0]["spaces"] == berlin["spaces"] + 1
    assert after[1]["spaces"] == germany["spaces"] + 1
    assert after[2][empty]["spaces"] == cells[empty]["spaces"] + 1 == 1
    assert after[2][empty]["covered"] and after[2][empty]["nearest_m"] < 1
    assert cache.computed > computed
    assert {key[0] for key in cache.entries._items} == {live.backend.data_stamp()}
    fresh = _fresh(live)
    assert _coverage(live, "cities?country=DE")["cities"] == fresh["cities"]
    assert _coverage(live, "countries")["countries"] == fresh["countries"]

    _close(live, space)
    assert _state(live) == (berlin, germany, cells)
