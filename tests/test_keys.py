"""API keys (geosearch.keys, geosearch.api.auth): made, listed and revoked by the command
line, kept as a digest only, checked on the HTTP API with their scopes and write limit,
and required on reads when GEOSEARCH_READ_KEYS=required."""

from __future__ import annotations

import logging

import psycopg
import pytest
from flask import g

from geosearch.api import create_app
from geosearch.api.auth import KEYS, MAX_AUTHORIZATION_CHARS, require
from geosearch.cli import main
from geosearch.database import libpq_url
from geosearch.keys import CACHE_S, KeyStore, new_secret, prefix_of
from geosearch.settings import Settings

NEAREST = "/v1/spaces/nearest?lat=52.52&lon=13.405&k=1"
BARE = 'Bearer realm="geosearch"'
INVALID = 'Bearer realm="geosearch", error="invalid_token"'


@pytest.fixture
def url(pg_database):
    """A database migrated to the newest schema (by the command line's first use)."""
    url = pg_database("keys")
    assert main(["keys", "list", "--database", url]) == 0
    return url


def _cli(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    """The status, stdout lines and stderr lines of one ``geosearch keys`` command."""
    capsys.readouterr()
    status = main(["keys", *args])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


def _create(capsys, url: str, name: str, scopes: str) -> str:
    status, out, _ = _cli(capsys, "create", name, "--scopes", scopes, "--database", url)
    assert status == 0
    return out[-1]


def _table_text(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        return "\n".join(row[0] for row in conn.execute(
            "SELECT row_to_json(k)::text FROM api_keys k").fetchall())


def test_the_command_line_creates_lists_and_revokes_and_keeps_no_secret(url, capsys,
                                                                       monkeypatch):
    secret = _create(capsys, url, "ingest-bot", "write,changes")
    body = secret.split("_", 2)[2]

    assert prefix_of(secret) is not None
    key = KeyStore(Settings(database_url=url)).authenticate(secret)
    assert key is not None and key.name == "ingest-bot"
    assert key.scopes == {"write", "changes"}
    assert secret not in _table_text(url) and body not in _table_text(url)
    monkeypatch.setenv("GEOSEARCH_DATABASE_URL", url)  # the default of --database
    status, out, _ = _cli(capsys, "list")
    assert status == 0 and len(out) == 2
    name, scopes, prefix, _, last_used, revoked = out[1].split("\t")
    assert (name, scopes, revoked) == ("ingest-bot", "write,changes", "-")
    assert secret.startswith(prefix + "_") and last_used != "-"
    assert body not in "\n".join(out)

    assert _cli(capsys, "revoke", "ingest-bot") == (0, ["key 'ingest-bot' revoked"], [])
    assert _cli(capsys, "list")[1][1].split("\t")[5] != "-"
    assert KeyStore(Settings(database_url=url)).authenticate(secret) is None


@pytest.mark.parametrize("args, says", [
    (("create", "bot", "--scopes", "write,delete"), "unknown scope 'delete'"),
    (("create", "bot", "--scopes", ","), "no scope given"),
    (("create", "bot\x00", "--scopes", "write"), "a key name is"),
    (("create", "taken", "--scopes", "write"), "'taken' exists already"),
    (("revoke", "nobody"), "no key is named 'nobody'"),
])
def test_bad_input_is_one_line_on_stderr_and_status_2(url, capsys, args, says):
    _create(capsys, url, "taken", "changes")

    status, out, err = _cli(capsys, *args, "--database", url)

    assert (status, out, len(err)) == (2, [], 1)
    assert says in err[0]


def test_hostile_secrets_are_refused(url):
    store = KeyStore(Settings(database_url=url))
    secret = store.create("writer", ["write"])
    other_body = new_secret()[0].split("_", 2)[2]

    fresh = new_secret()[0]
    malformed = ("", "x" * 10_240, secret[:20] + "\x00" + secret[21:], fresh + "\x00",
                 fresh[:-1], fresh + "A", fresh.upper(), fresh[:-1] + "é", secret[:13],
                 " " + fresh, fresh.replace("gsk_", "gsk-"))

    assert store.authenticate(secret) is not None
    assert [prefix_of(hostile) for hostile in malformed] == [None] * len(malformed)
    for hostile in (*malformed, f"{secret[:12]}_{other_body}", fresh):
        assert store.authenticate(hostile) is None, repr(hostile)


def test_a_check_reads_the_database_once_per_cache_period_and_a_revoke_lands_within_it(
        url, monkeypatch):
    now = [1000.0]
    server = KeyStore(Settings(database_url=url), clock=lambda: now[0])
    secret = server.create("reader", ["changes"])
    statements: list[str] = []
    run = server._rows

    def counted(sql: str, params: tuple) -> list[tuple]:
        statements.append(sql)
        return run(sql, params)

    monkeypatch.setattr(server, "_rows", counted)

    assert server.authenticate(secret) is not None
    assert len(statements) == 2  # the key, then its last use
    for _ in range(5):
        assert server.authenticate(secret) is not None
        assert server.authenticate(new_secret()[0]) is None
    assert len(statements) == 7  # each unknown prefix once, the key not again

    KeyStore(Settings(database_url=url)).revoke("reader")  # another process
    now[0] += CACHE_S / 2
    assert server.authenticate(secret) is not None
    now[0] += CACHE_S / 2
    assert server.authenticate(secret) is None


@pytest.fixture
def keyed_app(url, memory_feed):
    """An app whose keys are in ``url`` with a route of each scope (writes: 3 a minute)."""

    def make(**settings):
        app = create_app(Settings(database_url=url, write_rate_limit="3/minute", **settings),
                         backend=memory_feed)
        app.add_url_rule("/v1/test-write", "test_write",
                         require("write")(lambda: {"actor": g.actor}), methods=["POST"])
        app.add_url_rule("/v1/test-changes", "test_changes",
                         require("changes")(lambda: {"actor": g.actor}))
        return app

    return make


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_writes_need_a_live_key_with_the_scope(url, keyed_app, caplog):
    store = KeyStore(Settings(database_url=url))
    keys = {name: store.create(name, [scope]) for name, scope in (
        ("writer", "write"), ("follower", "changes"), ("root", "admin"), ("gone", "write"))}
    store.revoke("gone")
    client = keyed_app().test_client()
    caplog.set_level(logging.DEBUG)

    def post(headers: dict[str, str] | None = None):
        response = client.post("/v1/test-write", headers=headers or {})
        assert response.mimetype == ("application/json" if response.status_code == 200
                                     else "application/problem+json")
        for secret in keys.values():
            assert secret not in response.get_data(as_text=True) + str(response.headers)
        return response

    for headers in (None, {"Authorization": f"Basic {keys['writer']}"}):
        response = post(headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == BARE
    for token in (keys["gone"], new_secret()[0], "", keys["writer"] + "x" * 300,
                  keys["writer"][:-1] + "é"):
        response = post(_bearer(token))
        assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, INVALID)
    assert len("Bearer " + keys["writer"]) < MAX_AUTHORIZATION_CHARS
    assert post(_bearer(keys["follower"])).status_code == 403
    assert client.get("/v1/test-changes", headers=_bearer(keys["follower"])).json == {
        "actor": "follower"}
    assert post(_bearer(keys["writer"])).json == {"actor": "writer"}
    assert post(_bearer(keys["root"])).json == {"actor": "root"}
    assert client.get("/v1/test-changes", headers=_bearer(keys["root"])).status_code == 200
    assert not any(secret in caplog.text for secret in keys.values())


def test_a_long_or_non_ascii_authorization_is_refused_unread(keyed_app, monkeypatch):
    app = keyed_app()
    asked: list[str] = []
    monkeypatch.setattr(app.extensions[KEYS], "authenticate", asked.append)
    client = app.test_client()
    fresh = new_secret()[0]

    for token in (fresh + "x" * MAX_AUTHORIZATION_CHARS, fresh[:-1] + "é", fresh):
        response = client.post("/v1/test-write", headers=_bearer(token))
        assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, INVALID)
    assert asked == [fresh]


def test_writes_are_limited_per_key(url, keyed_app):
    store = KeyStore(Settings(database_url=url))
    first, second = store.create("busy", ["write", "changes"]), store.create("calm", ["admin"])
    client = keyed_app().test_client()

    assert [client.post("/v1/test-write", headers=_bearer(first)).status_code
            for _ in range(4)] == [200, 200, 200, 429]
    refused = client.post("/v1/test-write", headers=_bearer(first))
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert client.post("/v1/test-write", headers=_bearer(second)).status_code == 200
    assert client.get("/v1/test-changes", headers=_bearer(first)).status_code == 200


def test_reads_are_open_unless_keys_are_required(url, keyed_app):
    store = KeyStore(Settings(database_url=url))
    follower, gone = store.create("follower", ["changes"]), store.create("gone", ["write"])
    store.revoke("gone")
    assert keyed_app().test_client().get(NEAREST).status_code == 200

    client = keyed_app(read_keys="required").test_client()

    response = client.get(NEAREST)
    assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, BARE)
    assert client.get(NEAREST, headers=_bearer(gone)).status_code == 401
    assert client.get(NEAREST, headers=_bearer(follower)).status_code == 200
    assert client.get("/v1/test-changes", headers=_bearer(follower)).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("settings, says", [
    ({"read_keys": "required"}, "needs GEOSEARCH_DATABASE_URL"),
    ({"read_keys": "yes", "database_url": "postgresql://x/y"}, "GEOSEARCH_READ_KEYS"),
    ({"write_rate_limit": "often"}, "GEOSEARCH_WRITE_RATE_LIMIT"),
])
def test_key_settings_are_checked(settings, says):
    with pytest.raises(ValueError, match=says):
        Settings(**settings)
