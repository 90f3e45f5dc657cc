"""A per-client rate limit for the heavy endpoints, on the ``limits`` library.

Only the blueprints it is attached to pay for it: the searches are never counted. The
limit is kept in memory (per worker process) by default, or in Redis (shared by every
process and server) when ``rate_limit_storage`` names one.
"""

from __future__ import annotations

import math
import time

from flask import Blueprint, request
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from geosearch.api.errors import ApiError


class RateLimit:
    """At most ``spec`` requests (``"60/minute"``, ``"10/second;300/hour"``) per client
    address to the blueprints it is attached to; more get 429 with ``Retry-After``."""

    def __init__(self, spec: str, storage_uri: str = "memory://") -> None:
        self.spec = spec
        self.items = parse_many(spec)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    def attach(self, bp: Blueprint) -> None:
        """Check the limit before every request to ``bp``."""
        bp.before_request(self.check)

    def check(self) -> None:
        """Count this request against its client; raise 429 when over the limit."""
        client = request.remote_addr or "unknown"
        for item in self.items:
            if not self.limiter.hit(item, request.blueprint or "", client):
                stats = self.limiter.get_window_stats(item, request.blueprint or "", client)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise ApiError(429, "Too Many Requests",
                               f"too many requests to this endpoint: at most {item} per "
                               f"client; retry in {wait} s (Retry-After)",
                               headers={"Retry-After": str(wait)})
