"""A write's turn (geosearch.writes): its row is made before the turn, against the dataset
version it read, and made again when a load replaced the dataset meanwhile; its commit is
durable on a server whose default is not (the test cluster runs with
``synchronous_commit=off``).
"""

from __future__ import annotations

import psycopg
import pytest

from geosearch import changes, liverows
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import libpq_url, make_engine
from geosearch.settings import Settings
from geosearch.store import load
from geosearch.writes import IfMatch, LiveStore

BODY = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [13.3777, 52.5163]},
        "properties": {"name": "Turn Test Desk", "address": "Unter den Linden 1",
                       "city": "Berlin", "country": "DE", "amenities": ["wifi"]}}


@pytest.fixture(scope="module")
def database(pg_database, feed_result) -> str:
    """A database with a few hundred spaces of the feed loaded."""
    url = pg_database("turn")
    engine = make_engine(Settings(database_url=url))
    try:
        load(feed_result.frame.head(200), feed_result.meta(), engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="module")
def store(database):
    backend = PostgisBackend(Settings(database_url=database, write_rate_limit=""))
    live = LiveStore(backend)
    yield live
    live.close()
    backend.close()


@pytest.fixture
def run(database):
    """Run a statement on a connection of its own (beside the writes' pool)."""
    def run(sql: str, params: dict | None = None) -> list[tuple]:
        with psycopg.connect(libpq_url(database), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []
    return run


def test_a_write_commits_durably_where_the_server_does_not(store, run, monkeypatch):
    assert run("SHOW synchronous_commit") == [("off",)]
    taken, seen = changes.take_seq, []

    def take_seq(cur):
        seen.append(cur.execute("SHOW synchronous_commit").fetchone()[0])
        return taken(cur)

    monkeypatch.setattr(changes, "take_seq", take_seq)
    store.create({**BODY, "id": "turn-durable"}, "test")
    assert seen == ["on"]


def _replaced_once(run, monkeypatch, version: str) -> list[str]:
    """Replace the dataset's version right after the first row a write makes (as a load
    between the row and the turn would); the versions of the rows made."""
    made = liverows.space_row
    versions: list[str] = []

    def space_row(record, row_version):
        versions.append(row_version)
        if len(versions) == 1:
            run("UPDATE dataset_state SET version = %(v)s", {"v": version})
        return made(record, row_version)

    monkeypatch.setattr(liverows, "space_row", space_row)
    return versions


def test_a_create_whose_dataset_was_replaced_meanwhile_is_made_again(store, run,
                                                                      monkeypatch):
    ((before,),) = run("SELECT version FROM dataset_state")
    versions = _replaced_once(run, monkeypatch, "replaced-1")
    written = store.create({**BODY, "id": "turn-create",
                            "properties": {**BODY["properties"], "name": "Turn Create"}},
                           "test")
    assert versions == [before, "replaced-1"]
    assert run("SELECT dataset_version, revision FROM spaces WHERE id = %(id)s",
               {"id": written.id}) == [("replaced-1", 1)]


def test_a_patch_whose_dataset_was_replaced_meanwhile_is_checked_again(store, run,
                                                                        monkeypatch):
    space_id = store.create({**BODY, "id": "turn-patch", "properties": {
        **BODY["properties"], "name": "Turn Patch"}}, "test").id
    ((before,),) = run("SELECT version FROM dataset_state")
    versions = _replaced_once(run, monkeypatch, "replaced-2")
    written = store.patch(space_id, {"properties": {"capacity": 7}}, IfMatch(frozenset({1})),
                          "test")
    assert versions == [before, "replaced-2"]
    assert written.revision == 2 and b'"capacity":7' in written.feature
