"""The real server (gunicorn, as `geosearch serve` runs it) over real sockets: slow
clients do not starve the others, the server's own refusals are problem+json, and a
killed worker is replaced."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import faults
import pytest

from geosearch.snapshot import write_snapshot


@pytest.fixture(scope="module")
def server(feed_result, tmp_path_factory):
    snap = write_snapshot(feed_result.frame, tmp_path_factory.mktemp("snap") / "s.parquet",
                          feed_result.meta())
    running = faults.Server(faults.serve_args("--snapshot", str(snap)), wait_s=60)
    yield running.proc, running.port
    running.stop()


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def problem_status(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert "content-type: application/problem+json" in (h.lower() for h in lines), head
    return int(lines[0].split()[1]), json.loads(body)


SEARCH = "/v1/spaces/radius?lat=52.52&lon=13.405&radius_m=10000&limit=50"


def test_slow_and_stalled_clients_do_not_delay_other_requests(server):
    _, port = server
    slow = []
    for n in range(20):
        s = socket.create_connection(("127.0.0.1", port))
        # half a request: the rest never comes (stall) or comes a byte at a time (trickle)
        s.sendall(f"GET {SEARCH}&n={n} HTTP/1.1\r\nHost: x\r\n".encode())
        slow.append(s)
    try:
        waits = []
        for i in range(20):
            for s in slow[i % 2::2]:
                s.send(b"X")  # not a valid header byte yet: the head stays incomplete
            start = time.monotonic()
            status, body = faults.get(port, SEARCH, timeout=10)
            waits.append(time.monotonic() - start)
            assert status == 200 and json.loads(body)["numberReturned"] > 0
    finally:
        for s in slow:
            s.close()
    # starvation would be the slow clients' whole stall (10 s and more) for every request
    assert max(waits) < 3.0, waits


def test_stalled_request_heads_are_dropped(server):
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        assert s.recv(100) == b""  # closed by the server, not by us
        assert time.monotonic() - start < 20


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /v1/spaces/polygon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: garbage\r\n\r\n", 417),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    (b"GET /v1/spaces?city=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", 431),
    (b"GET /v1/spaces/%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
])
def test_requests_refused_anywhere_are_problem_json(server, request_bytes, status):
    _, port = server
    got, body = problem_status(raw(port, request_bytes.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)))
    assert got == status and body["status"] == status and body["title"]


@pytest.mark.parametrize("request_bytes", [
    b"GET evil.example:443\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nevil.example\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: evil.example\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: evil.example\r\n\r\n"])
def test_the_servers_refusals_do_not_repeat_the_clients_bytes(server, request_bytes):
    _, port = server
    answer = raw(port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 501")
    assert b"evil.example" not in answer.lower()


@pytest.mark.parametrize("framing", [b"Content-Length: 100\r\n\r\n{\"type\":",
                                     b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"typ"])
def test_a_body_that_stops_arriving_is_answered_408_and_costs_the_client_nothing(
        server, framing):
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /v1/spaces/polygon HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\n" + framing)
        started = time.monotonic()
        answer = b""  # the rest of the body never comes; the socket stays open
        while chunk := s.recv(65536):  # until the server closes it
            answer += chunk
        waited = time.monotonic() - started
    status, body = problem_status(answer)
    assert status == 408 and "stopped arriving" in body["detail"]
    assert waited < 20  # the server's I/O timeout, not the client's patience
    # the wait was the client's, not a worker's: its time budget is untouched
    assert raw(port, f"GET {SEARCH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Connection: close\r\n\r\n".encode()).startswith(b"HTTP/1.1 200")


def test_a_killed_worker_is_replaced_and_the_service_goes_on(server):
    proc, port = server
    deadline = time.monotonic() + 30
    while len(faults.children(proc.pid)) < 2:  # ready once one worker answers
        assert time.monotonic() < deadline, "the second worker did not boot"
        time.sleep(0.2)
    workers = faults.children(proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len(set(faults.children(proc.pid)) - {workers[0]}) < 2:
        assert time.monotonic() < deadline, "the worker was not replaced"
        time.sleep(0.2)
    assert all(faults.get(port, SEARCH)[0] == 200 for _ in range(20))

