"""Per-client limits: how often a client may ask, and how much worker time it may take.

Two kinds, both counted per client (:mod:`geosearch.api.clients`: the peer, or the
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

A refusal is a 429 problem+json with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from flask import Blueprint, Flask, Response, g, request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from geosearch.api.errors import ApiError
from geosearch.clientid import Network, client_key, client_name, key_of
from geosearch.runclock import run_time
from geosearch.sharedwindow import SharedWindows

BUDGET_PERIOD_S = 10.0
LOCAL_STORAGE = "memory://"  # the default: this server's workers share the counts
# Routes no limit applies to: an orchestrator's probes must always get through.
UNLIMITED = frozenset({"health.healthz", "health.readyz"})


def too_many(what: str, wait_s: float) -> ApiError:
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
        if request.endpoint in UNLIMITED:
            return
        forwarded = request.headers.get("X-Forwarded-For")
        for item in self.items:
            wait = self._wait(item, request.remote_addr, forwarded)
            if wait is not None:
                raise too_many(f"too many requests to {self.scope}: at most {item} per "
                                "client", wait)

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
    """At most ``share`` seconds of worker time per second for each client (averaged
    over :data:`BUDGET_PERIOD_S`), charged as requests end: the time each request held
    its worker (:func:`geosearch.runclock.run_time`), not the time it waited for the
    database, its client or its neighbours."""

    def __init__(self, share: float, proxies: tuple[Network, ...] = (),
                 windows: Callable[[], SharedWindows] = SharedWindows) -> None:
        self.limit = share * BUDGET_PERIOD_S
        self.proxies = proxies
        self.windows = windows()

    def attach(self, app: Flask) -> None:
        """Check the budget before every request and charge its time after it."""
        app.before_request(self.check)
        app.after_request(self.charge)

    def _key(self) -> int:
        return client_key(request.remote_addr, request.headers.get("X-Forwarded-For"),
                          self.proxies)

    def check(self) -> None:
        """Refuse (429) a client whose spent time is over its budget."""
        g.geosearch_started = run_time()
        g.geosearch_client = key = self._key()
        if request.endpoint in UNLIMITED:
            return
        verdict = self.windows.take(key, 0.0, self.limit, BUDGET_PERIOD_S, time.time())
        if not verdict.allowed:
            raise too_many("this client has used its share of the server's time "
                            f"({self.limit / BUDGET_PERIOD_S:g} s per second)",
                            verdict.retry_after_s)

    def charge(self, response: Response) -> Response:
        """Charge the request's time to its client."""
        started = g.get("geosearch_started")
        if started is not None:
            self.windows.charge(g.geosearch_client, run_time() - started, BUDGET_PERIOD_S,
                                time.time())
        return response
