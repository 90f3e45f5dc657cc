"""Per-client limits shared by every worker, the clients they count, and the origin of
every absolute URL (no link or redirect built from a Host header nobody configured)."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from geosearch.api import create_app
from geosearch.api.ratelimit import BUDGET_PERIOD_S
from geosearch.clientid import client_name, proxy_networks
from geosearch.settings import SERVER_CLIENT_BUDGET, Settings
from geosearch.sharedwindow import SharedWindows

RADIUS = "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=20000&limit=2"
LINKED = [RADIUS, "/v1/spaces?limit=2", "/ogc", "/ogc/", "/ogc/api",
          "/ogc/collections/spaces/items?limit=2", "/ogc/collections/spaces/queryables",
          "/ogc?x=1", "/ogc/collections/spaces"]


def _take_many(windows: SharedWindows, n: int, allowed: multiprocessing.Queue) -> None:
    allowed.put(sum(windows.take(42, 1.0, 50.0, 3600.0, 1000.0).allowed for _ in range(n)))


def test_counts_are_shared_by_forked_workers():
    windows = SharedWindows(slots=256)
    context = multiprocessing.get_context("fork")
    allowed: multiprocessing.Queue = context.Queue()
    workers = [context.Process(target=_take_many, args=(windows, 40, allowed))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert sum(allowed.get(timeout=5) for _ in workers) == 50  # not 3 x 40, not 3 x 50


def test_a_sliding_window_forgives_at_the_rate_the_previous_window_fades():
    windows = SharedWindows(slots=64)
    assert all(windows.take(7, 1.0, 10.0, 10.0, 5.0).allowed for _ in range(10))
    refused = windows.take(7, 1.0, 10.0, 10.0, 9.0)
    assert not refused.allowed and 0 < refused.retry_after_s <= 1.0 + 1e-9
    # at 15 s, half of the first window (10 spent) still overlaps: 5 + 1 fits, 5 + 6 not
    assert sum(windows.take(7, 1.0, 10.0, 10.0, 15.0).allowed for _ in range(9)) == 5
    assert windows.take(8, 1.0, 10.0, 10.0, 15.0).allowed  # another key is not affected


def test_a_full_table_forgives_rather_than_refuses_a_new_client():
    windows = SharedWindows(slots=8)
    for key in range(1, 100):
        assert windows.take(key, 1.0, 1.0, 60.0, 0.0).allowed


@pytest.mark.parametrize(("peer", "forwarded", "proxies", "expected"), [
    ("2001:db8:1:2:aaaa::1", None, (), "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::9", None, (), "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", None, (), "198.51.100.7"),
    ("198.51.100.7", "203.0.113.1", (), "198.51.100.7"),  # no proxy trusted
    ("10.1.2.3", "203.0.113.1", ("10.0.0.0/8",), "203.0.113.1"),
    ("10.1.2.3", "1.1.1.1, 203.0.113.1, 10.9.9.9", ("10.0.0.0/8",), "203.0.113.1"),
    ("10.1.2.3", "garbage, 10.9.9.9", ("10.0.0.0/8",), "10.9.9.9"),
    ("10.1.2.3", "2001:db8::5", ("10.0.0.0/8",), "2001:db8::/64"),
    ("not an address", None, (), "unknown"),
])
def test_the_client_counted(peer, forwarded, proxies, expected):
    assert client_name(peer, forwarded, proxy_networks(proxies)) == expected


def _app(memory_feed, **settings):
    return create_app(Settings(heavy_rate_limit="", **settings), backend=memory_feed)


def test_the_request_rate_is_per_client_and_answers_429_with_retry_after(memory_feed):
    client = _app(memory_feed, rate_limit="5/minute").test_client()
    statuses = [client.get(RADIUS).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    refused = client.get(RADIUS)
    assert refused.content_type == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    other = client.get(RADIUS, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert other.status_code == 200
    assert client.get("/healthz").status_code == 200  # probes are never limited
    # one IPv6 subscriber is one client, whichever address of its /64 it uses
    v6 = [client.get(RADIUS, environ_base={"REMOTE_ADDR": f"2001:db8::{n:x}"}).status_code
          for n in range(1, 8)]
    assert v6 == [200] * 5 + [429] * 2


def test_behind_a_trusted_proxy_each_forwarded_client_counts_apart(memory_feed):
    client = _app(memory_feed, rate_limit="2/minute",
                  trusted_proxies=("127.0.0.1",)).test_client()
    for n in range(3):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert [client.get(RADIUS, headers=headers).status_code for _ in range(3)] \
            == [200, 200, 429]


def _get(client, path, **kwargs):
    """GET ``path``, its body read and closed at once as a server does: the worker budget
    charges a request when its body is closed."""
    return client.get(path, buffered=True, **kwargs)


def _over_budget(memory_feed, **settings):
    """A test client whose own address (127.0.0.1) has used up its worker budget."""
    client = _app(memory_feed, client_budget=1e-5, **settings).test_client()
    statuses = [_get(client, RADIUS).status_code for _ in range(50)]
    assert statuses[0] == 200 and statuses[-1] == 429
    return client


def test_a_client_over_its_worker_budget_is_refused_and_the_others_are_not(memory_feed):
    client = _over_budget(memory_feed)
    refused = _get(client, RADIUS)
    assert refused.status_code == 429
    assert refused.content_type == "application/problem+json"
    assert refused.get_json()["status"] == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= BUDGET_PERIOD_S
    other = _get(client, RADIUS, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert other.status_code == 200
    # the probes are never refused
    assert [_get(client, path).status_code for path in ("/healthz", "/readyz")] == [200, 200]


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(memory_feed):
    client = _over_budget(memory_feed, trusted_proxies=("127.0.0.1",))  # the proxy's own
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    assert _get(client, RADIUS, headers=forwarded).status_code == 200
    # from a peer no one trusts, the header names no client: the peer is refused
    untrusted = _app(memory_feed, client_budget=1e-5).test_client()
    assert [_get(untrusted, RADIUS, headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(50)][-1] == 429


def test_a_page_of_an_allowed_origin_can_read_the_budgets_429(memory_feed):
    client = _over_budget(memory_feed, cors_origins=("https://maps.example.com",))
    page = {"Origin": "https://maps.example.com"}
    refused = _get(client, RADIUS, headers=page)
    assert refused.status_code == 429
    assert refused.headers["Access-Control-Allow-Origin"] == "https://maps.example.com"
    assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"]
    assert "Origin" in refused.headers["Vary"]
    # the preflight is still answered: without it the browser would not send the request
    preflight = client.options("/v1/spaces/polygon", buffered=True, headers={
        **page, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    other = _get(client, RADIUS, headers={"Origin": "https://evil.example"})
    assert other.status_code == 429 and "Access-Control-Allow-Origin" not in other.headers


def test_a_request_is_charged_when_its_body_is_closed_the_sending_included(monkeypatch):
    from geosearch.api import ratelimit

    clock = [0.0]  # the worker's run time, advanced only by the body being made
    monkeypatch.setattr(ratelimit, "run_time", lambda: clock[0])

    def streamed(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def parts():
            for _ in range(3):
                clock[0] += 1.0
                yield b"part"

        return parts()

    budget = ratelimit.WorkerBudget(streamed, share=0.25,  # 2.5 s of each 10 s
                                    windows=lambda: SharedWindows(slots=64))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/stream", "REMOTE_ADDR": "198.51.100.1"}
    statuses: list[str] = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    first = budget(dict(environ), start_response)
    assert list(first) == [b"part"] * 3  # 3 s of the worker, sent but not yet closed
    second = budget(dict(environ), start_response)  # not charged yet: let through
    second.close()
    first.close()
    refused = budget(dict(environ), start_response)
    assert b"share of the server's time" in b"".join(refused)
    refused.close()
    assert statuses == ["200 OK", "200 OK", "429 TOO MANY REQUESTS"]


def test_the_budget_is_off_in_process_and_on_under_a_server(memory_feed):
    from geosearch.api.ratelimit import WorkerBudget

    # the budget is the middleware inside the observing one (geosearch.observe)
    assert not isinstance(_app(memory_feed).wsgi_app.app, WorkerBudget)  # the caller is alone
    served = Settings.from_env({"GEOSEARCH_CLIENT_BUDGET": str(SERVER_CLIENT_BUDGET)})
    budget = create_app(served, backend=memory_feed).wsgi_app.app
    assert isinstance(budget, WorkerBudget)
    assert budget.limit == SERVER_CLIENT_BUDGET * BUDGET_PERIOD_S


@pytest.mark.parametrize("path", LINKED)
def test_an_untrusted_host_is_refused_and_never_echoed(memory_feed, path):
    client = _app(memory_feed).test_client()
    response = client.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    assert "evil.example" not in response.get_data(as_text=True)
    assert "evil.example" not in str(response.headers)


def _urls(doc: object) -> list[str]:
    """Every link target of a JSON document (hrefs, and the OpenAPI servers' urls)."""
    if isinstance(doc, dict):
        own = [doc[k] for k in ("href", "url", "$id") if isinstance(doc.get(k), str)]
        return own + [u for value in doc.values() for u in _urls(value)]
    if isinstance(doc, list):
        return [u for value in doc for u in _urls(value)]
    return []


@pytest.mark.parametrize("path", LINKED)
def test_links_start_with_the_public_url_whatever_the_host(memory_feed, path):
    client = _app(memory_feed, public_url="https://maps.example.com").test_client()
    response = client.get(path, headers={"Host": "maps.example.com"},
                          follow_redirects=False)
    if response.status_code == 308:
        assert response.headers["Location"].startswith("/ogc/")  # relative: no host
        return
    assert response.status_code == 200, response.get_data(as_text=True)
    own = [u for u in _urls(response.get_json()) if "opengis.net" not in u]
    assert own and all(u.startswith("https://maps.example.com/") or
                       u == "https://maps.example.com" for u in own), own


def test_a_greenlet_is_charged_its_own_turns_not_its_neighbours():
    import gevent

    from geosearch.runclock import run_time

    spent: dict[str, float] = {}

    def waiter():  # waits (the database, its client) while a neighbour computes
        started = run_time()
        gevent.sleep(0.3)
        spent["waiter"] = run_time() - started

    def busy():
        started = run_time()
        deadline = time.perf_counter() + 0.2
        while time.perf_counter() < deadline:
            pass
        spent["busy"] = run_time() - started

    gevent.joinall([gevent.spawn(waiter), gevent.spawn(busy)])
    assert spent["busy"] >= 0.2
    assert spent["waiter"] < 0.05  # not the 0.3 s it waited, of which 0.2 s the neighbour's
