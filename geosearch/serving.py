"""Run the app under gunicorn, in-process (used by ``geosearch serve``).

The worker model (docs/deploy.md says why, docs/benchmarks.md gives the numbers):

- **gevent workers**: every connection is a greenlet, so clients that trickle or stall
  their requests cost a socket each, not a worker; the other requests go on. Requests that
  compute (the searches) run one at a time per worker, as in sync workers.
- **Timeouts**: the head of every request (the first on a connection too) must arrive
  within ``KEEPALIVE_S``, else the connection is closed: a client that trickles its
  request line or stalls halfway holds a greenlet for at most that long. A worker that
  stops answering its arbiter for ``WORKER_TIMEOUT_S`` is replaced.
- **Limits**: gunicorn's own request-line and header limits are raised so that the app
  answers over-long requests itself in problem+json (:mod:`geosearch.api.guard`); what the
  server still refuses (malformed requests, ``Expect`` it cannot meet, a request line over
  1 MB) is answered in problem+json too, by :class:`ProblemGeventWorker`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket

import gevent
from flask import Flask
from gevent import monkey
from gunicorn.app.base import BaseApplication
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from geosearch.api.errors import PROBLEM_JSON
from geosearch.api.mappage import outlines_geojson
from geosearch.backends import prepared
from geosearch.observe import logs, multiproc, traces
from geosearch.observe.logs import GunicornLogger
from geosearch.reports.grid import MAX_RES, MIN_RES, build_grids
from geosearch.settings import worker_class

KEEPALIVE_S = 5
IO_TIMEOUT_S = 10
WORKER_TIMEOUT_S = 60
WORKER_CONNECTIONS = 1000

# How the server's own refusals read: (status, title) by gunicorn's exception class.
_SERVER_ERRORS: list[tuple[type, int, str]] = [
    (http_errors.LimitRequestLine, 414, "URI Too Long"),
    (http_errors.LimitRequestHeaders, 431, "Request Header Fields Too Large"),
    (http_errors.ExpectationFailed, 417, "Expectation Failed"),
    (http_errors.UnsupportedTransferCoding, 501, "Not Implemented"),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden"),
    (http_errors.ParseException, 400, "Bad Request"),
]


def server_problem(exc: BaseException) -> tuple[int, bytes]:
    """The status and the raw HTTP/1.1 response (problem+json) for a server-level error."""
    status, title, detail = 500, "Internal Server Error", "an unexpected error occurred"
    known = next(((s, t) for kind, s, t in _SERVER_ERRORS if isinstance(exc, kind)), None)
    if known is not None:
        status, title = known
        # what was wrong, without the client's own bytes (gunicorn quotes them after ":")
        detail = f"the server could not read the request: {str(exc).split(':', 1)[0]}"
    body = json.dumps({"type": "about:blank", "title": title, "status": status,
                       "detail": detail[:500], "errors": []}).encode()
    head = (f"HTTP/1.1 {status} {title}\r\nConnection: close\r\n"
            f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n\r\n")
    return status, head.encode("latin-1") + body


# The bytes an HTTP/1 request can open with: a method's (a token's characters), or the CR
# of an empty line before it. A TLS handshake opens with 0x16, a ClientHello in the SSL 2
# format with a byte of its high bit set: neither has a line end to wait for.
_REQUEST_START = frozenset(b"!#$%&'*+-.^_`|~\r0123456789"
                           b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_NOT_HTTP_REFUSAL = server_problem(http_errors.ParseException(
    "this port speaks plain HTTP, not TLS: use http://"))[1]


class ProblemGeventWorker(GeventWorker):
    """gunicorn's gevent worker, answering the requests it refuses in problem+json, and
    telling the PostGIS driver when it serves one connection alone
    (:func:`geosearch.backends.prepared.alone_when`)."""

    connections = 0

    def init_process(self) -> None:
        """Count this worker's connections for the driver, then run the worker."""
        prepared.alone_when(lambda: self.connections == 1)
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        """Serve one connection (all its requests), counted while it is open; one that
        opens with a byte no HTTP request starts with (a TLS handshake on this plain-HTTP
        port) is answered 400 at once (it has no line end for the request parser to wait
        for)."""
        self.connections += 1
        try:
            if self._opens_without_http(client):
                client.recv(1 << 16)  # what came so far: closing on unread bytes resets
                client.sendall(_NOT_HTTP_REFUSAL)
                return
            super().handle(listener, client, addr)
        finally:
            self.connections -= 1

    def handle_request(self, listener_name, req, sock, addr) -> bool:
        """Serve one request whose head has arrived. Its body and its answer may wait no
        longer than IO_TIMEOUT_S for the client: a body that stops arriving is answered
        408 (geosearch.api.errors), a client that stops reading is dropped."""
        sock.settimeout(IO_TIMEOUT_S)
        return super().handle_request(listener_name, req, sock, addr)

    def _opens_without_http(self, client: socket.socket) -> bool:
        """Whether the connection's first byte can start no HTTP request (peeked:
        nothing is consumed), waiting no longer than for a request's head."""
        first = b""
        with self.timeout_ctx(), contextlib.suppress(OSError):
            first = client.recv(1, socket.MSG_PEEK)
        return first != b"" and first[0] not in _REQUEST_START

    def handle_error(self, req, client, addr, exc) -> None:
        """Answer a request the server itself refused with a problem+json body."""
        status, response = server_problem(exc)
        if status >= 500:
            self.log.exception("error handling a request", exc_info=exc)
        else:
            self.log.info("refused a request from %s: %s", (addr or ("",))[0], exc)
        try:
            client.sendall(response)
        except OSError:
            self.log.debug("could not send the error response")


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def server_options(host: str, port: int, workers: int = 2,
                   trusted_proxies: tuple[str, ...] = ()) -> dict:
    """gunicorn's settings for geosearch (what ``geosearch serve`` runs with);
    ``trusted_proxies``: the only peers whose ``X-Forwarded-Proto`` gunicorn believes
    (its own default trusts loopback)."""
    kind = worker_class()  # gevent unless the benchmark of worker classes asks otherwise
    return {
        "bind": f"{host}:{port}", "workers": workers,
        "worker_class": f"{__name__}.ProblemGeventWorker" if kind == "gevent" else kind,
        "threads": 8 if kind == "gthread" else 1,
        "worker_connections": WORKER_CONNECTIONS, "keepalive": KEEPALIVE_S,
        "timeout": WORKER_TIMEOUT_S, "graceful_timeout": 5,
        # Above the app's own limits (0: none, up to 1 MB), so the app answers 414 and 431.
        "limit_request_line": 0, "limit_request_field_size": 65536, "limit_request_fields": 200,
        # each request's line is the app's own (geosearch.observe), gunicorn's lines go
        # through the same handlers; a dead worker's live gauges are dropped, tracing
        # starts in each worker
        "accesslog": None, "logger_class": GunicornLogger,
        "child_exit": multiproc.child_exit, "post_fork": traces.post_fork,
        "forwarded_allow_ips": ",".join(trusted_proxies),
        # No gunicornc control socket: every instance would make the same one
        # (~/.gunicorn/gunicorn.ctl), and stopping one deletes another's. Signals to the
        # master (HUP, TERM, TTIN/TTOU) do what it would.
        "control_socket_disable": True,
    }


def serve(app: Flask, host: str, port: int, workers: int = 2) -> None:
    """Serve ``app`` with gunicorn's gevent workers on ``host:port`` until stopped.

    The app (and its loaded dataset) is built once, here, and the workers are forked from
    this process: they share its memory page for page. ``gc.freeze`` keeps the collector
    of each worker from writing to the objects built before the fork.
    """
    if monkey.is_module_patched("threading"):
        # Let greenlets the app started (a rate limiter's expiry timer) finish before the
        # fork copies them half-run into every worker.
        gevent.wait(timeout=1.0)
    settings = app.extensions.get("geosearch.settings")  # None: another app (the floor)
    configure_logs(None if settings is None else settings.log_format)
    if settings is not None:
        build_shared()
    gc.collect()
    gc.freeze()
    proxies = () if settings is None else settings.trusted_proxies
    _Gunicorn(app, server_options(host, port, workers, proxies)).run()


def configure_logs(log_format: str | None) -> None:
    """The server's log lines: ``log_format`` (json when unset), each request's line
    where ``GEOSEARCH_ACCESS_LOG`` says (``-``: with the rest on stderr; empty: none)."""
    logs.configure(log_format or "json", os.environ.get("GEOSEARCH_ACCESS_LOG", "-"))


def build_shared() -> None:
    """Build what every worker would otherwise build at its first request of each kind
    (the map's country outlines, the coverage grids), once, before the fork: no request
    pays for them and the workers share them."""
    outlines_geojson()
    build_grids(range(MIN_RES, MAX_RES + 1))
