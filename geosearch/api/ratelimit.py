"""Per-client limits: how often a client may ask, and how much worker time it may take.

Two kinds, both counted per client (:mod:`geosearch.clientid`: the peer, or the
address a trusted proxy forwarded; an IPv6 /64 as one) and shared by every worker of
the server (:class:`geosearch.sharedwindow.SharedWindows`, made before gunicorn forks):

- :class:`RateLimit`: at most so many requests per period (``"60/minute"``, in the
  ``limits`` library's notation, which parses it), on the blueprints it is attached
  to: the heavy coverage endpoints by default (``GEOSEARCH_HEAVY_RATE_LIMIT``), and every
  request when ``GEOSEARCH_RATE_LIMIT`` is set. With ``rate_limit_storage`` naming a
  Redis or Memcached URL, the ``limits`` library counts there instead (shared by several
  servers).
- :class:`WorkerBudget`: at most ``GEOSEARCH_CLIENT_BUDGET`` seconds of a worker per
  second, over :data:`BUDGET_PERIOD_S`: a request's own time is charged to its client when
  it ends, and a client over its budget is refused until it is back under. Whatever the
  requests cost, a client can hold no more than that share of the workers, so the other
  clients keep the rest. One client asking in sequence can never exceed a budget of 1.
  It is WSGI middleware around the whole app that reads the request's environ directly:
  checking and charging a request costs no Flask hook, proxy or request object.

A refusal is a 429 problem+json with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from geosearch.api.errors import ApiError, handle_api_error
from geosearch.clientid import Network, client_key, client_name, key_of
from geosearch.observe.metrics import rate_limited
from geosearch.runclock import run_time
from geosearch.sharedwindow import SharedWindows

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from geosearch.api.cors import Cors

BUDGET_PERIOD_S = 10.0
LOCAL_STORAGE = "memory://"  # the default: this server's workers share the counts
# Paths no limit refuses: an orchestrator's probes (geosearch.api.health) and the
# metrics' scrapes (geosearch.observe.exposition) must always get through.
UNLIMITED = frozenset({"/healthz", "/readyz", "/metrics"})


def too_many(what: str, wait_s: float, scope: str) -> ApiError:
    """The 429 of a request over the limit of ``scope`` (counted in the metrics: the
    ``service`` or ``endpoint`` rate, the worker ``budget``, a key's writes)."""
    rate_limited(scope)
    wait = max(1, math.ceil(wait_s))
    return ApiError(429, "Too Many Requests", f"{what}; retry in {wait} s (Retry-After)",
                    headers={"Retry-After": str(wait)})


class RateLimit:
    """At most ``spec`` requests (``"60/minute"``, ``"10/second;300/hour"``) per client
    to the blueprints (or app) it is attached to; more get 429 with ``Retry-After``."""

    def __init__(self, spec: str, scope: str, proxies: tuple[Network, ...] = (),
                 storage_uri: str = LOCAL_STORAGE,
                 windows: Callable[[], SharedWindows] = SharedWindows) -> None:
        self.items: list[RateLimitItem] = parse_many(spec)
        self.scope = scope
        self.proxies = proxies
        self.remote = (None if storage_uri == LOCAL_STORAGE else
                       MovingWindowRateLimiter(storage_from_string(storage_uri)))
        self.windows = windows() if self.remote is None else None
        self._salts = {str(item): key_of(f"{scope}|{item}") for item in self.items}

    def attach(self, target: Blueprint | Flask) -> None:
        """Check the limit before every request to ``target``."""
        target.before_request(self.check)

    def check(self) -> None:
        """Count this request against its client; raise 429 when over the limit."""
        if request.path in UNLIMITED:
            return
        forwarded = request.headers.get("X-Forwarded-For")
        for item in self.items:
            wait = self._wait(item, request.remote_addr, forwarded)
            if wait is not None:
                raise too_many(f"too many requests to {self.scope}: at most {item} per "
                               "client", wait, self.scope.removeprefix("this "))

    def _wait(self, item: RateLimitItem, remote: str | None, forwarded: str | None
              ) -> float | None:
        """None when the request is within ``item``, else the seconds to wait."""
        if self.remote is not None:
            client = client_name(remote, forwarded, self.proxies)
            if self.remote.hit(item, self.scope, client):
                return None
            stats = self.remote.get_window_stats(item, self.scope, client)
            return stats.reset_time - time.time()
        assert self.windows is not None
        # the client's cached key, told apart per limit (a client has one count each)
        key = client_key(remote, forwarded, self.proxies) ^ self._salts[str(item)] or 1
        verdict = self.windows.take(key, 1.0, float(item.amount), float(item.get_expiry()),
                                    time.time())
        return None if verdict.allowed else verdict.retry_after_s


class WorkerBudget:
    """WSGI middleware: at most ``share`` seconds of worker time per second for each
    client (averaged over :data:`BUDGET_PERIOD_S`).

    A request of a client over its budget is answered 429 before ``app`` sees it, with
    the CORS headers of ``cors`` for an allowed ``Origin`` so that the page can read the
    answer. Never refused: the probes (:data:`UNLIMITED`) and the preflights ``cors``
    answers (without its preflight a page's request, and so its 429, is never sent).
    Every request, refused or not, is charged when its body has been sent and closed:
    the time it held its worker (:func:`geosearch.runclock.run_time`), not the time it
    waited for the database, its client or its neighbours.
    """

    def __init__(self, app: WSGIApplication, share: float, proxies: tuple[Network, ...] = (),
                 cors: Cors | None = None,
                 windows: Callable[[], SharedWindows] = SharedWindows) -> None:
        self.app = app
        self.limit = share * BUDGET_PERIOD_S
        self.proxies = proxies
        self.cors = cors
        self.windows = windows()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse
                 ) -> Iterable[bytes]:
        """Answer the request through ``app``, or refuse it; charge it at its close."""
        started = run_time()
        # X-Forwarded-For is read only when some proxy is trusted: else it names no
        # client, and a new value per request would only churn the cache of keys.
        key = client_key(environ.get("REMOTE_ADDR"),
                         environ.get("HTTP_X_FORWARDED_FOR") if self.proxies else None,
                         self.proxies)
        if environ.get("PATH_INFO") not in UNLIMITED and not (
                environ.get("REQUEST_METHOD") == "OPTIONS" and self._preflight(environ)):
            verdict = self.windows.take(key, 0.0, self.limit, BUDGET_PERIOD_S, time.time())
            if not verdict.allowed:
                return _Charged(self._refuse(environ, start_response, verdict.retry_after_s),
                                self, key, started)
        return _Charged(self.app(environ, start_response), self, key, started)

    def _preflight(self, environ: WSGIEnvironment) -> bool:
        """Whether an OPTIONS request is a preflight the CORS policy answers."""
        return (self.cors is not None and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
                and self.cors.allowed(environ.get("HTTP_ORIGIN")))

    def _refuse(self, environ: WSGIEnvironment, start_response: StartResponse,
                wait_s: float) -> Iterable[bytes]:
        """The 429 of a client over its budget, as the app would answer it."""
        response = handle_api_error(too_many(
            f"this client has used its share of the server's time "
            f"({self.limit / BUDGET_PERIOD_S:g} s per second)", wait_s, "budget"))
        if self.cors is not None:
            self.cors.mark(response, environ.get("HTTP_ORIGIN"))
        return response(environ, start_response)

    def charge(self, key: int, started: float) -> None:
        """Charge the run time since ``started`` to the client of ``key``."""
        self.windows.charge(key, run_time() - started, BUDGET_PERIOD_S, time.time())


class _Charged:
    """A response body that charges its request to the budget when the server closes it
    (WSGI servers close every body they got, sent in full or not)."""

    __slots__ = ("body", "budget", "key", "started")

    def __init__(self, body: Iterable[bytes], budget: WorkerBudget, key: int,
                 started: float) -> None:
        self.body = body
        self.budget = budget
        self.key = key
        self.started = started

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        """Close the app's body, then charge the request its time, that of sending the
        body included."""
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.budget.charge(self.key, self.started)
