"""The hostile battery of the write routes (geosearch.testing.hostile_writes) against the
real server (gunicorn, 2 workers, as ``geosearch serve`` runs it) over real sockets.

Over a loaded PostGIS: every probe gets its own 4xx problem+json naming its field, no
answer holds a key's secret, a stack trace or SQL, and nothing is written (the change
feed's counter, the spaces' count and highest revision are what they were); the requests
the probes spoil do write. Over a snapshot (``make run``): every probe of a write route
is a 405 problem+json with ``Allow`` (unless the server refuses its head before any
route, as it does over a database), and OPTIONS names only the methods that work.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from urllib.parse import unquote

import faults
import hostile_http
import psycopg
import pytest

from geosearch.api import create_app, guard
from geosearch.api.errors import ApiError
from geosearch.api.openapi import operations
from geosearch.database import libpq_url, make_engine
from geosearch.keys import KeyStore, new_secret
from geosearch.settings import Settings
from geosearch.snapshot import write_snapshot
from geosearch.store import load
from geosearch.testing import hostile
from geosearch.testing.hostile_writes import FEED, Keys, Target, unspoiled, write_battery

LIMITS_LIFTED = {"GEOSEARCH_WRITE_RATE_LIMIT": "1000000/minute",
                 "GEOSEARCH_HEAVY_RATE_LIMIT": "1000000/minute", "GEOSEARCH_CLIENT_BUDGET": "0"}


def _made_up_keys() -> Keys:
    return Keys(*(new_secret()[0] for _ in range(4)))


def _template(path: str) -> str:
    """The OpenAPI path a probe's target is served by."""
    path = path.split("?")[0]
    return re.sub(r"^(/v1/spaces|/ogc/collections/spaces/items)/.+$", r"\1/{id}", path)


def test_the_battery_covers_every_write_route_and_each_class_of_fault():
    on_database = operations(create_app(Settings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")))
    on_snapshot = operations(create_app(Settings(snapshot="does/not/exist")))
    writes = {(method, path) for path, ops in on_database.items() for method in ops
              if method not in on_snapshot.get(path, {})}
    probes = list(write_battery(_made_up_keys(), Target("sd-de-00232", 1)))
    assert {(p.method.lower(), _template(p.url)) for p in probes} == writes

    for method, path in writes:
        mine = [p for p in probes if (p.method.lower(), _template(p.url)) == (method, path)]
        got = {(p.status, p.param) for p in mine}
        assert {(401, "Authorization"), (403, "Authorization"), (431, "Authorization")} <= got
        assert any(p.secrets for p in mine) and all(p.status >= 400 for p in mine)
        if method in ("put", "patch", "delete"):
            assert {(428, "If-Match"), (400, "If-Match"), (412, "If-Match"),
                    (431, "If-Match")} <= got
        if method in ("post", "put", "patch"):
            assert {(400, "body"), (413, "body"), (415, "Content-Type"),
                    (422, "/properties/h3_r9"), (422, "/properties/revision"),
                    (422, "/properties/foo")} <= got
    feed = {p.param for p in probes if p.url.startswith(FEED) and p.status == 400}
    assert {"since", "limit", "wait"} <= feed


@pytest.fixture(scope="module")
def database(pg_database, feed_result):
    """The feed loaded in a database of its own; the battery's keys (one of them
    revoked) and its target, an active space."""
    url = pg_database("hostile_writes")
    engine = make_engine(Settings(database_url=url))
    try:
        load(feed_result.frame, feed_result.meta(), engine)
    finally:
        engine.dispose()
    store = KeyStore(Settings(database_url=url))
    keys = Keys(*(store.create(name, scopes) for name, scopes in (
        ("hostile", ["write", "changes"]), ("follower", ["changes"]), ("writer", ["write"]),
        ("revoked", ["write", "changes"]))))
    store.revoke("revoked")
    store.close()
    with psycopg.connect(libpq_url(url)) as conn:
        space_id, revision = conn.execute("SELECT id, revision FROM spaces WHERE status = "
                                          "'active' ORDER BY id LIMIT 1").fetchone()
    return SimpleNamespace(url=url, keys=keys, target=Target(space_id, revision))


@pytest.fixture(scope="module")
def served(database):
    """``geosearch serve --database`` with the per-client and per-key limits lifted, so
    that every probe reaches what it spoils; its base URL."""
    server = faults.Server(faults.serve_args("--database", database.url), env=LIMITS_LIFTED,
                           wait_s=120)
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def _written(url: str) -> tuple[int, int, int]:
    """The change feed's counter, the spaces' count and their highest revision."""
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute("SELECT (SELECT seq FROM change_counter), count(*), "
                            "max(revision) FROM spaces").fetchone()


def test_every_write_probe_is_refused_naming_its_field_and_nothing_is_written(served,
                                                                              database):
    before = _written(database.url)
    probes = list(write_battery(database.keys, database.target))
    outcome = hostile_http.run(served, probes)

    assert len(outcome.times) == len(probes) > 1500
    assert not outcome.failures, (f"{len(outcome.failures)} of {len(probes)}:\n"
                                  + "\n".join(outcome.failures[:30]))
    assert _written(database.url) == before
    # each probe was one fault away from a write: unspoiled, its request writes
    writes = unspoiled(database.keys, database.target)
    done = hostile_http.run(served, writes)
    assert not done.failures, "\n".join(done.failures)
    seq, count, _ = _written(database.url)
    assert (seq, count) == (before[0] + len(writes) - 1, before[1] + 2)


def test_an_etag_spelt_another_way_never_matches(served, database):
    """If-Match compares entity tags strongly (RFC 9110): "01" is another tag than the
    ETag "1" of a space at revision 1 (it was once taken for it, and the space closed)."""
    with psycopg.connect(libpq_url(database.url)) as conn:
        space_id, revision = conn.execute(
            "SELECT id, revision FROM spaces WHERE status = 'active' AND id <> %s "
            "ORDER BY id LIMIT 1", (database.target.id,)).fetchone()
    before = _written(database.url)
    auth = {"Authorization": f"Bearer {database.keys.valid}"}
    probes = [hostile.Probe("DELETE", f"/v1/spaces/{space_id}", None,
                            {**auth, "If-Match": f'"{spelling.format(revision)}"'}, 412,
                            param="If-Match")
              for spelling in ("0{}", "00{}", "+{}", "{}.0", "{}e0", "0x{}")]
    outcome = hostile_http.run(served, probes)
    assert not outcome.failures, "\n".join(outcome.failures)
    assert _written(database.url) == before


@pytest.fixture(scope="module")
def snapshot(feed_result, tmp_path_factory):
    """``geosearch serve`` over a snapshot of the feed (``make run``); its base URL."""
    path = write_snapshot(feed_result.frame, tmp_path_factory.mktemp("snap") / "s.parquet",
                          feed_result.meta())
    server = faults.Server(faults.serve_args("--snapshot", str(path)), wait_s=120)
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def _refused_before_routing(probe: hostile.Probe) -> bool:
    """Whether a server refuses ``probe`` before any route: a header line it cannot read
    (400 naming no field), oversized headers (431), a path or query that is no text."""
    if probe.status == 431 or (probe.status == 400 and probe.param is None):
        return True
    path, _, query = probe.url.partition("?")
    try:
        guard.check_path(unquote(path, encoding="latin-1"))
        guard.check_query(query)
    except ApiError:
        return True
    return False


def _allowed(head: str) -> set[str]:
    found = re.search(r"(?im)^allow:(.*)$", head)
    return {m.strip() for m in found.group(1).split(",")} if found else set()


def test_a_snapshot_answers_every_write_probe_405_with_allow(snapshot):
    failures = []
    for probe in write_battery(_made_up_keys(), Target("sd-de-00232", 1)):
        answer = hostile_http.send(snapshot, probe)
        expected = (probe.status if _refused_before_routing(probe)
                    else 404 if probe.url.startswith(FEED) else 405)
        found = hostile.problems_with(answer.status, answer.content_type, answer.text)
        found += [secret for secret in probe.secrets if secret in answer.head + answer.text]
        if answer.status != expected:
            found.append(f"status {answer.status}, not {expected}")
        elif expected == 405 and ("--database" not in json.loads(answer.text)["detail"]
                                  or _allowed(answer.head) != {"GET", "HEAD", "OPTIONS"}):
            found.append(f"405 without Allow or the reason: {answer.head!r}")
        if found:
            failures.append(f"{hostile_http.shown(probe)}: {', '.join(found)}")
    assert not failures, f"{len(failures)}:\n" + "\n".join(failures[:30])


@pytest.mark.parametrize("path", ["/v1/spaces", "/v1/spaces/sd-de-00232", hostile.ITEMS,
                                  f"{hostile.ITEMS}/sd-de-00232"])
def test_options_name_only_the_methods_that_work(snapshot, served, path):
    read_only = hostile_http.send(snapshot, hostile.Probe("OPTIONS", path))
    assert read_only.status == 200
    assert _allowed(read_only.head) == {"GET", "HEAD", "OPTIONS"}
    assert "Accept-P" not in read_only.head
    writable = hostile_http.send(served, hostile.Probe("OPTIONS", path))
    item = path.endswith("sd-de-00232")
    assert _allowed(writable.head) == {"GET", "HEAD", "OPTIONS"} | (
        {"PUT", "PATCH", "DELETE"} if item else {"POST"})
    assert ("Accept-Patch: application/merge-patch+json" if item
            else "Accept-Post: application/geo+json, application/json") in writable.head
