"""WSGI middleware around the whole app: every request gets an id, its metrics and its
log line, the requests that the limits refuse before Flask sees them included.

Per request: the id (:mod:`.context`) is accepted or made and set for the request's
context, echoed in ``X-Request-ID``; the route's template and view are read when the app
starts its response (Flask's request is still there then); when the server closes the
response body (after its last byte, or after the client left), the request's duration
is recorded (:class:`.metrics.RequestMetrics`) and its line logged on
``geosearch.access`` (:mod:`.logs` formats it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from time import perf_counter
from typing import TYPE_CHECKING

from flask import Request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from geosearch.api.openapi import openapi_path
from geosearch.clientid import Network, client_address
from geosearch.observe import context, traces
from geosearch.observe.logs import ACCESS, RequestLog, request_log, request_record
from geosearch.observe.metrics import RequestMetrics

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

ACCESS_LOG = logging.getLogger(ACCESS)
UNMATCHED = "unmatched"  # the route of a request that no rule matched (a 404)
MAX_AGENT_CHARS = 256
_HEADER = context.HEADER


class ObservedApp:
    """``app`` (the WSGI callable of the Flask app whose routes are ``url_map``) with
    request ids, metrics (unless ``metrics`` is False) and a log line per request.
    ``proxies``: the trusted proxies, whose ``X-Forwarded-For`` names the client."""

    def __init__(self, app: WSGIApplication, url_map: Map, metrics: bool = True,
                 proxies: tuple[Network, ...] = ()) -> None:
        self.app = app
        self.url_map = url_map
        self.metrics = RequestMetrics() if metrics else None
        self.proxies = proxies
        self._templates: dict[str, str] = {}  # by the rule's own text

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse
                 ) -> Iterable[bytes]:
        """Serve the request through ``app``; record it when its body is closed."""
        exchange = _Exchange(self, environ, start_response)
        try:
            body = self.app(environ, exchange.start_response)
        except BaseException:  # Flask answers errors itself: this is a server's bug
            exchange.status = exchange.status or 500
            exchange.finish(None)
            raise
        return _ObservedBody(body, exchange)

    def template(self, rule: Rule) -> str:
        """The route template of a rule, as the OpenAPI document writes its path
        (``/v1/spaces/{id}``)."""
        template = self._templates.get(rule.rule)
        if template is None:
            template = self._templates[rule.rule] = openapi_path(rule.rule)
        return template

    def route_of(self, environ: WSGIEnvironment) -> tuple[str, str | None]:
        """The route template and endpoint of a request answered before Flask saw it (a
        limit's refusal): matched here, only for those."""
        try:
            rule, _ = self.url_map.bind_to_environ(environ).match(return_rule=True)
        except HTTPException:  # no rule matches (or a redirect's)
            return UNMATCHED, None
        return self.template(rule), rule.endpoint

    def finished(self, exchange: _Exchange, sent: int | None) -> None:
        """Record a request whose body was closed (``sent``: the body's bytes)."""
        seconds = perf_counter() - exchange.started
        status = exchange.status
        note = exchange.note
        if self.metrics is not None:
            self.metrics.record(exchange.method, exchange.route, exchange.endpoint, status,
                                seconds, note.results)
        lines = request_log()
        if lines is not None or ACCESS_LOG.isEnabledFor(logging.INFO):
            self._log(exchange, status, seconds, sent, lines)

    def _log(self, exchange: _Exchange, status: int, seconds: float, sent: int | None,
             lines: RequestLog | None) -> None:
        """The request's line: to the server's request log, else to the logger."""
        environ = exchange.environ
        client = environ.get("REMOTE_ADDR")
        if self.proxies:
            client = _forwarded_client(client, environ.get("HTTP_X_FORWARDED_FOR"),
                                       self.proxies)
        path = environ.get("PATH_INFO", "")
        if not path.isascii():  # WSGI's text is the path's bytes as latin-1
            path = path.encode("latin-1", "replace").decode("utf-8", "replace")
        fields = {
            "request_id": exchange.note.request_id, "method": exchange.method,
            "route": exchange.route, "path": path, "status": status,
            "duration_ms": round(seconds * 1000, 3), "bytes": sent, "client": client,
            "user_agent": (environ.get("HTTP_USER_AGENT") or "")[:MAX_AGENT_CHARS] or None}
        if exchange.note.key_name is not None:
            fields["key_name"] = exchange.note.key_name
        trace_id = traces.request_trace_id(environ)
        if trace_id is not None:
            fields["trace_id"] = trace_id
        if lines is not None:
            lines.write(fields)
        else:
            ACCESS_LOG.handle(request_record(fields))


@lru_cache(maxsize=4096)
def _forwarded_client(remote: str | None, forwarded: str | None,
                      proxies: tuple[Network, ...]) -> str | None:
    """The client's address behind the trusted proxies (as text), kept per header pair."""
    address = client_address(remote, forwarded, proxies)
    return None if address is None else str(address)


class _Exchange:
    """One request on its way through the app: its id, when it came, how it was
    answered."""

    __slots__ = ("endpoint", "environ", "length", "method", "note", "observed", "route",
                 "started", "status", "upstream")

    def __init__(self, observed: ObservedApp, environ: WSGIEnvironment,
                 upstream: StartResponse) -> None:
        self.started = perf_counter()
        self.observed = observed
        self.environ = environ
        self.upstream = upstream
        self.method: str = environ.get("REQUEST_METHOD", "")
        self.note = context.RequestNote(context.accepted_id(environ.get("HTTP_X_REQUEST_ID")))
        context.CURRENT.set(self.note)
        self.status = 0
        self.length: int | None = None
        self.route = UNMATCHED
        self.endpoint: str | None = None

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info=None) -> Callable[[bytes], object]:
        """The app's ``start_response``: note the status, the body's length and the
        route, add the request id, pass it on."""
        self.status = int(status[:3])
        for name, value in headers:
            if name == "Content-Length":
                self.length = int(value)
        request = self.environ.get("werkzeug.request")
        if isinstance(request, Request):  # Flask's, still there: it routed the request
            rule = request.url_rule
            if rule is not None:
                self.route, self.endpoint = self.observed.template(rule), rule.endpoint
        else:  # answered before Flask saw it
            self.route, self.endpoint = self.observed.route_of(self.environ)
        headers.append((_HEADER, self.note.request_id))
        return self.upstream(status, headers, exc_info)

    def finish(self, sent: int | None) -> None:
        """The request is over: record it, and leave its context."""
        try:
            self.observed.finished(self, sent)
        finally:
            context.CURRENT.set(None)


class _ObservedBody:
    """The app's response body; the request is recorded when the server closes it (WSGI
    servers close every body they got, sent in full or not)."""

    __slots__ = ("body", "exchange", "sent")

    def __init__(self, body: Iterable[bytes], exchange: _Exchange) -> None:
        self.body = body
        self.exchange = exchange
        self.sent: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        if self.exchange.length is not None:
            self.sent = self.exchange.length
            return iter(self.body)
        return self._counted()

    def _counted(self) -> Iterator[bytes]:
        """The body's chunks, counted (a body sent without a Content-Length)."""
        self.sent = 0
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        """Close the app's body, then record the request."""
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.exchange.finish(self.sent)
