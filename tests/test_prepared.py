"""The serving path's prepared statements on libpq (geosearch.backends.prepared), against
the session's PostgreSQL: the same rows and errors as a psycopg cursor, one statement per
shape, recovery when the session loses them, and cooperation with gevent."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psycopg
import pytest

from geosearch.backends import prepared
from geosearch.backends.prepared import ServingConnection, run
from geosearch.database import libpq_url as dsn


@pytest.fixture
def conn(pg_database):
    with ServingConnection.connect(dsn(pg_database("prep")), autocommit=True) as c:
        yield c


def _server_statements(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements")
            if r[0].startswith("gs_")}


CASES = [
    ("SELECT %(a)s::float8 + %(b)s, %(a)s", {"a": 1.25, "b": 2}),
    ("SELECT %(t)s::text || '!', length(%(t)s::text)", {"t": "Zürich 'quoted' \"x\""}),
    ("SELECT %(n)s::int8 * 2, %(none)s::text IS NULL", {"n": 5_000_000_000, "none": None}),
    ("SELECT %(xs)s::float8[], cardinality(%(xs)s::float8[])", {"xs": [1.5, -2.0, 3.25]}),
    ("SELECT %(b)s::bytea, %(flag)s::bool", {"b": b"\x00\x01\xff", "flag": True}),
    ("SELECT 7 %% 3, g FROM generate_series(1, %(k)s) g ORDER BY g", {"k": 4}),
    ("SELECT '{\"a\": [1, 2]}'::jsonb, now() > now() - interval '1 day'", {}),
]


@pytest.mark.parametrize(("sql", "params"), CASES)
def test_rows_are_a_cursors_rows(conn, sql, params):
    assert run(conn, sql, params) == conn.execute(sql, params).fetchall()
    assert run(conn, sql, params) == conn.execute(sql, params).fetchall()  # prepared


def test_one_statement_per_shape_and_parameter_types(conn):
    sql = "SELECT %(n)s + 1"
    assert run(conn, sql, {"n": 1}) == [(2,)]
    assert run(conn, sql, {"n": 41}) == [(42,)]
    assert len(conn.statements) == 1
    assert run(conn, sql, {"n": 10**12}) == [(10**12 + 1,)]  # int8, not int2: another
    assert len(conn.statements) == 2
    assert _server_statements(conn) == {name.decode() for name in conn.statements.values()}


def test_shapes_beyond_the_limit_run_unprepared(conn, monkeypatch):
    monkeypatch.setattr(prepared, "MAX_STATEMENTS", 1)
    assert run(conn, "SELECT %(x)s::int", {"x": 1}) == [(1,)]
    assert run(conn, "SELECT %(x)s::int + 1", {"x": 1}) == [(2,)]
    assert run(conn, "SELECT %(x)s::int + 1", {"x": 2}) == [(3,)]
    assert len(conn.statements) == 1 and len(_server_statements(conn)) == 1


def test_a_session_that_lost_its_statements_prepares_them_again(conn):
    sql = "SELECT %(x)s::text"
    assert run(conn, sql, {"x": "a"}) == [("a",)]
    conn.execute("DEALLOCATE ALL")
    assert run(conn, sql, {"x": "b"}) == [("b",)]
    assert len(_server_statements(conn)) == 1


def test_a_statement_whose_result_type_changed_is_prepared_again(conn):
    conn.execute("CREATE TABLE t (a int)")
    conn.execute("INSERT INTO t VALUES (1)")
    sql = "SELECT * FROM t WHERE a >= %(low)s"
    assert run(conn, sql, {"low": 0}) == [(1,)]
    conn.execute("ALTER TABLE t ADD COLUMN b text DEFAULT 'x'")
    assert run(conn, sql, {"low": 0}) == [(1, "x")]
    assert len(_server_statements(conn)) == 1  # the old one deallocated


def test_errors_are_psycopgs_and_the_session_goes_on(conn):
    with pytest.raises(psycopg.errors.DivisionByZero):
        run(conn, "SELECT 1 / %(z)s", {"z": 0})
    conn.execute("SET statement_timeout = 50")
    with pytest.raises(psycopg.errors.QueryCanceled):
        run(conn, "SELECT pg_sleep(%(s)s)", {"s": 2.0})
    with pytest.raises(psycopg.errors.UndefinedTable):
        run(conn, "SELECT * FROM no_such_table WHERE x = %(x)s", {"x": 1})
    assert run(conn, "SELECT 1 / %(z)s", {"z": 1}) == [(1,)]


def test_only_named_placeholders():
    with pytest.raises(ValueError, match="placeholders"):
        prepared.positional("SELECT %s")


def under_gevent(url: str, alone: bool, body: str) -> int:
    """Run ``body`` in a fresh process patched by gevent, with the driver told whether it
    serves one connection alone and ``conn`` a ServingConnection to ``url``; the number
    the body prints."""
    script = textwrap.dedent(f"""
        from gevent import monkey
        monkey.patch_all()
        import gevent
        import greenlet
        from geosearch.backends import prepared
        from geosearch.backends.prepared import ServingConnection, run
        assert prepared._native_poll() is not None
        prepared.alone_when(lambda: {alone})
        with ServingConnection.connect({url!r}, autocommit=True) as conn:
    """) + textwrap.indent(textwrap.dedent(body), "    ")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


@pytest.mark.parametrize("alone", [True, False])
def test_under_gevent_a_slow_statement_lets_the_other_greenlets_run(pg_database, alone):
    """A statement is awaited on the real poll for SPIN_MS at most, and only when the
    server says it serves one connection alone; then (or at once) the hub runs the
    worker's other greenlets while it waits (here: ticks every 5 ms)."""
    ticks = under_gevent(dsn(pg_database("prep_gevent")), alone, """
        ticks = []
        def tick():
            while True:
                ticks.append(1)
                gevent.sleep(0.005)
        ticker = gevent.spawn(tick)
        gevent.sleep(0)
        assert run(conn, "SELECT %(x)s::int * 2", {"x": 21}) == [(42,)]
        before = len(ticks)
        assert run(conn, "SELECT 1 FROM pg_sleep(%(s)s)", {"s": 0.4}) == [(1,)]
        print(len(ticks) - before)
        ticker.kill()
    """)
    assert ticks >= 10  # blocking the whole 0.4 s would give 0 or 1


@pytest.mark.parametrize("alone", [True, False])
def test_under_gevent_a_result_that_came_while_alone_skips_the_hub(pg_database, alone):
    """Serving one connection alone, a statement whose result arrives within SPIN_MS is
    read at once, with no switch to gevent's hub; with other connections to serve, every
    statement waits through the hub."""
    switched = under_gevent(dsn(pg_database("prep_spin")), alone, """
        run(conn, "SELECT %(x)s::int", {"x": 0})  # prepared
        switched = 0
        for x in range(20):
            events = []
            greenlet.settrace(lambda event, args: events.append(event))
            assert run(conn, "SELECT %(x)s::int", {"x": x}) == [(x,)]
            greenlet.settrace(None)
            switched += bool(events)
        print(switched)
    """)
    assert switched == (0 if alone else 20)


def test_the_backend_serves_searches_from_prepared_statements(postgis_feed):
    from geosearch.backends.postgis import PostgisBackend
    from geosearch.model import NearestQuery, Point
    from geosearch.settings import Settings

    backend = PostgisBackend(Settings(database_url=postgis_feed.settings.database_url,
                                      pool_size=1))
    try:
        query = NearestQuery(Point(52.52, 13.40), k=3)
        assert backend.nearest(query) == postgis_feed.nearest(query)
        with backend.cluster.primary.connection() as conn:  # the pool's one connection
            assert conn.statements  # the search's statement, prepared on this session
            assert _server_statements(conn) == {n.decode() for n in conn.statements.values()}
    finally:
        backend.close()
