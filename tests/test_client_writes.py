"""Writes, revisions and the change feed through the HTTP client (geosearch.client, against
the app served on loopback over a real PostGIS) and through the library (geosearch.library
over the same database).

Each write returns the space and its revision; a write against a stale revision is an
exception carrying the current one; 409, 422, 401 and 403 are typed exceptions; the feed
names who wrote; a snapshot refuses writes plainly; the key is in no repr and no error
text; a write is sent again only when it certainly never reached the service. The
``python writes`` examples of docs/embedding-*.md run here, against PostGIS.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from geosearch import Geosearch, create_app
from geosearch.backends.postgis import PostgisBackend
from geosearch.client import (
    Client,
    Conflict,
    Forbidden,
    GeosearchError,
    MethodNotAllowed,
    NoRevision,
    NotFound,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
    Unprocessable,
)
from geosearch.database import make_engine
from geosearch.keys import KeyStore
from geosearch.library import ReadOnly
from geosearch.livespace import Invalid
from geosearch.settings import Settings
from geosearch.store import load
from geosearch.testing.ports import free_port
from geosearch.testing.served import served
from geosearch.writes import Conflict as StoreConflict
from geosearch.writes import NotFound as StoreNotFound
from geosearch.writes import Stale

ROOT = Path(__file__).resolve().parents[1]
WRITE_EXAMPLE = re.compile(r"```python writes\n(.*?)```", flags=re.S)
DOCS = [p for p in sorted((ROOT / "docs").glob("embedding-*.md"))
        if WRITE_EXAMPLE.search(p.read_text())]
MITTE = [13.3889, 52.5170]  # lon, lat: Berlin, far from the border


def feature(name: str, coordinates=None, **properties) -> dict:
    """A Feature a write takes: a point in Berlin and the space's own fields."""
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": coordinates or MITTE},
            "properties": {"name": name, "address": "Friedrichstraße 100", "city": "Berlin",
                           "country": "DE", "amenities": ["wifi"], "capacity": 8,
                           "price_day": 25.0, "currency": "EUR", **properties}}


@pytest.fixture(scope="module")
def live(pg_database, feed_result):
    """The feed loaded into PostGIS, the app over it served on loopback, and a key of
    each kind (their secrets by name)."""
    url = pg_database("client_writes")
    engine = make_engine(Settings(database_url=url))
    try:
        load(feed_result.frame, feed_result.meta(), engine)
    finally:
        engine.dispose()
    settings = Settings(database_url=url, write_rate_limit="")
    backend = PostgisBackend(settings)
    app = create_app(settings, backend=backend)
    keys = KeyStore(settings)
    secrets = {name: keys.create(name, scopes) for name, scopes in (
        ("writer", ["write"]), ("follower", ["changes"]), ("both", ["write", "changes"]))}
    try:
        with served(app) as base_url:
            yield SimpleNamespace(url=url, base_url=base_url, secrets=secrets)
    finally:
        app.extensions["geosearch.writes"].close()
        keys.close()
        backend.close()


def client(live, key: str | None = "both", **kwargs) -> Client:
    return Client(live.base_url, retries=0, key=None if key is None else live.secrets[key],
                  **kwargs)


def latest(api: Client | Geosearch) -> int:
    """The seq of the last committed change, read from the feed."""
    since = 0
    while (page := api.changes(since, limit=1000)).changes:
        assert page.next_since == page.changes[-1].seq > since
        since = page.next_since
    return since


# -- the HTTP client ------------------------------------------------------------------------

def test_client_writes_each_revision_and_the_feed_names_them(live):
    api = client(live)
    since = latest(api)

    created = api.create({**feature("Kranich Loft"), "id": "cw-one"})
    assert created.revision == 1 and created.space.id == "cw-one"
    assert created.space.lon == MITTE[0] and created.space.amenities == ("wifi",)
    assert created.space.h3_r9 and created.space.geocode_precision == "input"
    assert api.get_revised("cw-one") == created
    assert api.get("cw-one") == created.space  # get keeps its return type

    patched = api.patch("cw-one", {"properties": {"capacity": 12}}, revision=1)
    assert (patched.revision, patched.space.capacity) == (2, 12)
    with pytest.raises(PreconditionFailed) as stale:
        api.replace("cw-one", feature("Kranich Loft Neu"), revision=1)
    assert stale.value.current_revision == 2 and stale.value.status == 412
    assert isinstance(stale.value, GeosearchError)
    replaced = api.replace("cw-one", feature("Kranich Loft Neu"),
                           revision=stale.value.current_revision)
    assert (replaced.revision, replaced.space.name, replaced.space.capacity) == (
        3, "Kranich Loft Neu", 8)
    anyway = api.patch("cw-one", {"properties": {"price_day": None}})  # at any revision
    assert (anyway.revision, anyway.space.price_day) == (4, None)

    assert api.close_space("cw-one", revision=4) == 5
    assert api.get_revised("cw-one") is None and api.get("cw-one") is None
    with pytest.raises(NotFound):
        api.close_space("cw-one")

    page = api.changes(since)
    assert [(c.op, c.id, c.revision, c.previous_revision, c.actor) for c in page.changes] == [
        ("create", "cw-one", 1, None, "both"), ("update", "cw-one", 2, 1, "both"),
        ("replace", "cw-one", 3, 2, "both"), ("update", "cw-one", 4, 3, "both"),
        ("close", "cw-one", 5, 4, "both")]
    assert [c.seq for c in page.changes] == list(range(since + 1, since + 6))
    assert page.next_since == since + 5
    assert page.changes[3].space == anyway.space and isinstance(page.changes[0].at, datetime)
    assert page.changes[4].space.status == "inactive"
    assert api.changes(page.next_since).changes == ()


def test_client_creates_from_properties_alone_and_makes_the_id(live):
    made = client(live).create({"name": "Möwe Büro", "city": "Hamburg", "country": "DE"})
    assert made.space.id.startswith("sp-") and made.space.geocode_precision == "city"
    assert made.revision == 1


def test_client_conflict_names_the_existing_space_and_invalid_names_each_field(live):
    api = client(live)
    api.create({**feature("Reiher Werk", [13.30, 52.45]), "id": "cw-taken"})
    with pytest.raises(Conflict) as taken:
        api.create({**feature("Anderer Name"), "id": "cw-taken"})
    assert taken.value.existing_id == "cw-taken" and taken.value.status == 409
    with pytest.raises(Conflict) as twin:  # the ingest's duplicate rule: name, 150 m
        api.create(feature("Reiher Werk", [13.3005, 52.45]))
    assert twin.value.existing_id == "cw-taken"

    with pytest.raises(Unprocessable) as invalid:
        api.create(feature("Eule", capacity=-3, sofa=True, h3_r9="89"))
    assert {e["param"] for e in invalid.value.errors} == {
        "/properties/capacity", "/properties/sofa", "/properties/h3_r9"}
    with pytest.raises(Unprocessable) as moved:
        api.patch("cw-taken", {"id": "cw-other"})
    assert [e["param"] for e in moved.value.errors] == ["/id"]
    with pytest.raises(ValueError, match="positive integer"):
        api.patch("cw-taken", {}, revision=0)


def test_client_keys_and_scopes_are_exceptions_and_no_text_holds_a_key(live):
    unknown = "gsk_abcdefgh_" + "x" * 43
    cases: list[tuple[Client, Callable, type[GeosearchError]]] = [
        (client(live, None), lambda c: c.create(feature("Ohne Schlüssel")), Unauthorized),
        (client(live, None), lambda c: c.changes(), Unauthorized),
        (Client(live.base_url, key=unknown), lambda c: c.create(feature("Fremd")), Unauthorized),
        (client(live, "follower"), lambda c: c.create(feature("Folger")), Forbidden),
        (client(live, "writer"), lambda c: c.changes(), Forbidden),
    ]
    for api, call, kind in cases:
        with pytest.raises(kind) as refused:
            call(api)
        shown = f"{api!r} {api} {refused.value} {refused.value!r} {refused.value.problem}"
        assert all(secret not in shown for secret in (*live.secrets.values(), unknown))
    assert repr(client(live)) == f"Client({live.base_url!r}, key=[key])"
    assert client(live, "writer").get_revised("sd-de-00232") is not None  # reads are open


@contextlib.contextmanager
def loopback(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[tuple[str, list]]:
    """A loopback HTTP server answering every request with ``answer``; yields its URL and
    the requests it got (method and headers)."""
    seen: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_any(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, dict(self.headers)))
            answer(self)

        def log_message(self, *args):
            pass

    for verb in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        setattr(Handler, f"do_{verb}", Handler.do_any)
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
        finally:
            httpd.shutdown()


def test_a_key_a_service_echoes_back_is_blanked_out_of_the_error():
    def echo(handler):
        key = handler.headers["Authorization"]
        body = json.dumps({"title": f"Bad {key}", "detail": f"you sent {key}",
                           "errors": [{"param": key}]}).encode()
        handler.send_response(400, f"Nope {key}")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    secret = "gsk_abcdefgh_" + "s" * 43
    with loopback(echo) as (url, seen):
        for call in (lambda c: c.nearest(0, 0), lambda c: c.create(feature("Echo"))):
            with pytest.raises(GeosearchError) as echoed:
                call(Client(url, retries=0, key=secret))
            text = f"{echoed.value} {echoed.value!r} {echoed.value.problem} {echoed.value.errors}"
            assert secret not in text and "Bearer [key]" in echoed.value.detail
    assert all(h["Authorization"] == f"Bearer {secret}" for _, h in seen)
    for bad in ("two words", "x" * 300, "nul\x00", "zeilen\numbruch", ""):
        with pytest.raises(ValueError, match="key must be") as refused:
            Client(url, key=bad)
        assert bad not in str(refused.value) or not bad


def test_a_write_is_not_sent_again_after_it_may_have_arrived():
    def hang_up(handler):
        handler.close_connection = True  # the request was read; no answer comes

    writes: list[Callable[[Client], object]] = [
        lambda c: c.create(feature("Einmal")), lambda c: c.replace("x", feature("X")),
        lambda c: c.patch("x", {}, revision=2), lambda c: c.close_space("x")]
    with loopback(hang_up) as (url, seen):
        for write in writes:
            with pytest.raises(requests.ConnectionError):
                write(Client(url, retries=3, backoff=0))
        assert [method for method, _ in seen] == ["POST", "PUT", "PATCH", "DELETE"]
        with pytest.raises(requests.ConnectionError):
            Client(url, retries=3, backoff=0).get_revised("x")
        assert [method for method, _ in seen[4:]] == ["GET"] * 4

    def unavailable(handler):
        handler.send_response(503)
        handler.send_header("Retry-After", "0")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with loopback(unavailable) as (url, seen):
        with pytest.raises(Unavailable):
            Client(url, retries=3, backoff=0).patch("x", {}, revision=1)
        assert len(seen) == 1


def test_a_redirect_within_the_origin_keeps_the_key_and_a_303_drops_the_rest():
    served_space = {**feature("Umleitung"), "id": "x"}
    served_space["properties"].update(postcode=None, h3_r7="87", h3_r8="88", h3_r9="89",
                                      geocode_precision="input")

    def moved(handler):
        if handler.path == "/v1/spaces/x":
            handler.send_response(308 if handler.command == "PATCH" else 303)
            handler.send_header("Location", "/v2/spaces/x")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        body = json.dumps(served_space).encode()
        handler.send_response(200)
        handler.send_header("ETag", '"3"')
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    secret = "gsk_abcdefgh_" + "r" * 43
    with loopback(moved) as (url, seen):
        api = Client(url, retries=0, key=secret)
        assert api.patch("x", {"properties": {}}, revision=2).revision == 3
        assert api.replace("x", feature("Umleitung"), revision=2).revision == 3
    (_, patch), (_, patch_again), (_, put), (get, after_put) = seen
    assert patch_again["If-Match"] == '"2"' == patch["If-Match"]
    assert patch_again["Content-Type"] == "application/merge-patch+json"
    assert get == "GET" and after_put["Authorization"] == f"Bearer {secret}"
    assert "If-Match" in put and "If-Match" not in after_put
    assert "Content-Type" not in after_put


def test_a_write_whose_connection_was_refused_is_sent_again():
    api = Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0)
    attempts = []
    send = api.session.request

    def counted(method, url, **kwargs):
        attempts.append(method)
        return send(method, url, **kwargs)

    api.session.request = counted  # type: ignore[method-assign]
    with pytest.raises(requests.ConnectionError):
        api.create(feature("Niemand da"))
    assert attempts == ["POST"] * 3


def test_follow_walks_the_feed_page_by_page(live):
    api = client(live)
    since = latest(api)
    made = [api.create(feature(f"Folge {n}", [13.2 + n / 100, 52.4])).space.id for n in range(3)]
    followed = list(itertools.islice(api.follow(since, limit=1, wait=1), 3))
    assert [(c.seq, c.id) for c in followed] == [(since + n + 1, made[n]) for n in range(3)]
    with pytest.raises(ValueError, match="wait must be"):
        next(api.follow(0, wait=0))  # it would ask again and again without a pause


def test_a_snapshot_service_refuses_writes_and_names_no_revision(memory_feed):
    with served(create_app(Settings(), backend=memory_feed)) as url:
        api = Client(url, retries=0, key="gsk_abcdefgh_" + "y" * 43)
        with pytest.raises(MethodNotAllowed, match="--database"):
            api.create(feature("Schnappschuss"))
        with pytest.raises(NoRevision, match="ETag"):
            api.get_revised("sd-de-00232")
        assert api.get("sd-de-00232") is not None


# -- the library --------------------------------------------------------------------------

def test_library_writes_as_its_actor_against_revisions(live):
    with Geosearch.open(database_url=live.url, actor="batch-job") as gs:
        since = latest(gs)
        made = gs.create({**feature("Specht Studio", [13.42, 52.50]), "id": "lib-one"})
        assert made.revision == 1 and gs.get_revised("lib-one") == made
        assert gs.get("lib-one") == made.space  # every read sees it
        assert [h.space.id for h in gs.nearest(52.50, 13.42, k=1)] == ["lib-one"]

        patched = gs.patch("lib-one", {"properties": {"amenities": ["wifi", "coffee"]}},
                           revision=1)
        assert patched.revision == 2 and patched.space.amenities == ("wifi", "coffee")
        with pytest.raises(Stale) as stale:
            gs.replace("lib-one", feature("Specht Studio Zwei", [13.42, 52.50]), revision=1)
        assert stale.value.revision == 2
        replaced = gs.replace("lib-one", feature("Specht Studio Zwei", [13.42, 52.50]),
                              revision=stale.value.revision)
        assert replaced.revision == 3 and replaced.space.name == "Specht Studio Zwei"
        with pytest.raises(StoreConflict) as taken:
            gs.create({**feature("Noch eins"), "id": "lib-one"})
        assert taken.value.existing == "lib-one"
        with pytest.raises(Invalid) as invalid:
            gs.patch("lib-one", {"properties": {"capacity": -1}})
        assert [where for where, _ in invalid.value.errors] == ["/properties/capacity"]
        assert gs.close_space("lib-one") == 4
        assert gs.get_revised("lib-one") is None and gs.get("lib-one") is None
        with pytest.raises(StoreNotFound):
            gs.patch("lib-one", {})

        page = gs.changes(since)
        assert [(c.op, c.revision, c.actor) for c in page.changes] == [
            ("create", 1, "batch-job"), ("update", 2, "batch-job"),
            ("replace", 3, "batch-job"), ("close", 4, "batch-job")]
        assert next(gs.follow(since, wait=0.1)).id == "lib-one"
        with pytest.raises(ValueError, match="limit"):
            gs.changes(since, limit=0)
    assert client(live).changes(since).changes == page.changes  # one feed, both ways


def test_library_writes_need_an_actor_named_as_a_key_is(live):
    with Geosearch.open(database_url=live.url) as anonymous:
        with pytest.raises(ValueError, match="actor"):
            anonymous.create(feature("Niemandes"))
        assert anonymous.get_revised("sd-de-00232").revision >= 1  # reading needs none
    for bad in ("", "two words", "x" * 65, "-dash", "nul\x00"):
        with pytest.raises(ValueError, match="actor must be"):
            Geosearch.open(database_url=live.url, actor=bad)


def test_library_over_a_snapshot_says_writes_need_a_database(memory_feed):
    gs = Geosearch(memory_feed, actor="batch-job")  # not closed: the backend is shared
    for call in (lambda: gs.create(feature("Schnappschuss")), lambda: gs.changes(),
                 lambda: gs.get_revised("sd-de-00232"), lambda: gs.close_space("x")):
        with pytest.raises(ReadOnly, match="PostGIS database"):
            call()
    assert gs.get("sd-de-00232") is not None


# -- the docs ---------------------------------------------------------------------------

@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_write_examples_in_the_docs_run(doc, live, monkeypatch, capsys):
    """The ``python writes`` blocks (the plain ``python`` ones run over a snapshot in
    tests/test_embedding.py)."""
    blocks = WRITE_EXAMPLE.findall(doc.read_text())
    monkeypatch.setenv("GEOSEARCH_BASE_URL", live.base_url)
    monkeypatch.setenv("GEOSEARCH_API_KEY", live.secrets["both"])
    monkeypatch.setenv("GEOSEARCH_DATABASE_URL", live.url)
    namespace: dict[str, object] = {"__name__": "__main__"}  # nothing a reader lacks
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)
