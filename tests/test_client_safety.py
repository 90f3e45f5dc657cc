"""The HTTP client against hostile servers on loopback: a redirect to another port, a cursor
that repeats, pages without end, a body without end, a body that trickles in."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from geosearch.client import (
    Client,
    CrossOriginRedirect,
    DeadlineExceeded,
    EndlessPages,
    ResponseTooLarge,
    _origin,
)

EMPTY = {"type": "FeatureCollection", "features": [], "numberReturned": 0, "links": []}
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
KEY = {"X-Api-Key": "s3cret"}

Answer = Callable[[BaseHTTPRequestHandler, int], None]


@contextlib.contextmanager
def server(answer: Answer) -> Iterator[tuple[str, list[dict]]]:
    """A loopback HTTP/1.0 server calling ``answer(handler, n)`` for its n-th request (from
    1); yields its URL and what each request carried (method, path, headers, body)."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({"method": self.command, "path": self.path,
                         "headers": dict(self.headers), "body": body})
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                answer(self, len(seen))

        def do_POST(self):
            self.do_GET()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, body: dict | None = None,
         **headers: str) -> None:
    payload = b"" if body is None else json.dumps(body).encode()
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **headers}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def keyed(url: str, **kwargs) -> Client:
    client = Client(url, retries=0, **kwargs)
    client.session.headers.update(KEY)
    return client


# -- redirects ----------------------------------------------------------------------------

def test_a_redirect_to_another_port_is_refused_and_the_other_gets_nothing():
    with server(lambda h, n: send(h, 200, EMPTY)) as (elsewhere, other_seen):
        def away(handler, n):
            send(handler, 308 if handler.command == "POST" else 302,
                 Location=f"{elsewhere}{handler.path}")

        with server(away) as (url, seen):
            client = keyed(url)
            with pytest.raises(CrossOriginRedirect) as refused:
                list(client.polygon(SQUARE))
            assert refused.value.location == f"{elsewhere}{seen[0]['path']}"
            assert elsewhere in str(refused.value)
            with pytest.raises(CrossOriginRedirect):
                client.nearest(0, 0)
    assert len(seen) == 2 and other_seen == []


def test_a_redirect_within_the_origin_keeps_the_method_body_and_key():
    def moved(handler, n):
        if handler.path.startswith("/v1/"):
            send(handler, 308, Location=handler.path.replace("/v1/", "/v2/"))
        else:
            send(handler, 200, EMPTY)

    with server(moved) as (url, seen):
        assert list(keyed(url).polygon(SQUARE, page_size=3)) == []
    first, second = seen
    assert second["method"] == "POST" and second["path"].startswith("/v2/spaces/polygon?")
    assert "limit=3" in second["path"]
    assert json.loads(second["body"]) == SQUARE == json.loads(first["body"])
    assert second["headers"]["X-Api-Key"] == KEY["X-Api-Key"]


def test_origins_compare_scheme_host_and_port_with_default_ports():
    assert _origin("HTTP://Example.COM/a") == _origin("http://example.com:80/b?c=1")
    assert _origin("https://example.com") == _origin("https://example.com:443")
    assert _origin("https://example.com") != _origin("http://example.com")
    assert _origin("http://example.com:8000") != _origin("http://example.com:8001")
    assert _origin("http://example.com:port/") != _origin("http://example.com/")


# -- pages --------------------------------------------------------------------------------

def test_a_cursor_that_comes_back_ends_the_walk():
    # The server gives up after 50 pages, so a client without the check ends too (and fails).
    def same(handler, n):
        send(handler, 200, {**EMPTY, **({"next": "same"} if n < 50 else {})})

    with server(same) as (url, seen), pytest.raises(EndlessPages, match="'same' a second"):
        list(Client(url).spaces())
    assert len(seen) == 2


def test_a_walk_stops_after_max_pages():
    def pages(handler, n):
        send(handler, 200, {**EMPTY, **({"next": f"c{n}"} if n < 50 else {})})

    with server(pages) as (url, seen):
        with pytest.raises(EndlessPages, match="max_pages=5"):
            list(Client(url, max_pages=5).spaces())
        assert len(seen) == 5
        assert list(Client(url, max_pages=45).spaces()) == []  # pages 6..50: exactly 45
    assert len(seen) == 50


# -- bodies -------------------------------------------------------------------------------

def test_a_body_without_end_is_cut_at_max_response_bytes():
    written = []

    def endless(handler, n):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()
        chunk = b" " * 65536
        for _ in range(1024):  # 64 MiB, so a client that reads it all ends too (and fails)
            handler.wfile.write(chunk)
            written.append(len(chunk))

    with server(endless) as (url, _), pytest.raises(ResponseTooLarge, match="than 1048576"):
        Client(url, max_response_bytes=1 << 20).nearest(0, 0)
    assert sum(written) < 32 << 20


def test_a_declared_length_past_the_cap_is_refused_before_reading():
    def huge(handler, n):
        handler.send_response(200)
        handler.send_header("Content-Length", str(10**12))
        handler.end_headers()
        handler.wfile.write(json.dumps(EMPTY).encode())

    with server(huge) as (url, _), pytest.raises(ResponseTooLarge, match="of 1000000000000 b"):
        Client(url).nearest(0, 0)


def trickler(framing: str) -> Answer:
    """A page of 200 bytes sent one byte each 20 ms (4 s in all)."""
    body = json.dumps(EMPTY).encode().ljust(200)

    def trickle(handler, n):
        handler.send_response(200)
        if framing == "content-length":
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for i in range(len(body)):
            handler.wfile.write(body[i:i + 1])
            handler.wfile.flush()
            time.sleep(0.02)

    return trickle


def cut_in_time(url: str) -> bool:
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="still arriving"):
        Client(url, timeout=0.5, retries=0).nearest(0, 0)
    return time.monotonic() - start < 1.5


@pytest.mark.parametrize("framing", ["content-length", "until-close"])
def test_a_body_that_trickles_in_ends_at_the_deadline(framing):
    with server(trickler(framing)) as (url, _):
        assert cut_in_time(url)
    assert issubclass(DeadlineExceeded, requests.Timeout)


def test_the_deadline_holds_in_a_forked_child_too():
    with server(trickler("content-length")) as (url, _):
        assert cut_in_time(url)  # the parent's watchdog thread runs; the child has none
        child = multiprocessing.get_context("fork").Process(
            target=lambda: sys.exit(0 if cut_in_time(url) else 1))
        child.start()
        child.join(10)
    assert child.exitcode == 0


def test_redirect_hops_share_one_deadline():
    def slow_hops(handler, n):
        time.sleep(0.3)
        if n < 6:
            send(handler, 307, Location=f"/hop{n}")
        else:
            send(handler, 200, EMPTY)

    with server(slow_hops) as (url, seen):
        start = time.monotonic()
        with pytest.raises(requests.Timeout):
            Client(url, timeout=1.0, retries=0).nearest(0, 0)
        assert time.monotonic() - start < 1.5
        assert len(seen) <= 4
