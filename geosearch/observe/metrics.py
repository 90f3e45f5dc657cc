"""The service's metrics (prometheus_client), and how a finished request records them.

Every metric is listed with its meaning and labels in docs/operations.md. Under gunicorn
they are kept in prometheus_client's multiprocess mode (:mod:`.multiproc`): each worker
writes its own files and ``/metrics`` sums them, so any worker answers for all of them.
The state read at scrape time (nodes, dataset) is in :mod:`.exposition`.

Labels stay few: a request is labelled by its route's template (``/v1/spaces/{id}``),
never its raw path, and its method is one of the HTTP methods or ``OTHER``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# 0.5 ms to 10 s: a search answers in about a millisecond, a coverage report in seconds.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
RESULT_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)
POOL_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0)

HTTP_DURATION = Histogram(
    "http_server_request_duration_seconds",
    "Time from a request's arrival to its response's last byte, per route template",
    ["method", "route", "status"], buckets=DURATION_BUCKETS)
CLIENT_ERRORS = Counter(
    "geosearch_http_client_errors", "Requests answered 4xx, by the class of their reason",
    ["reason"])
SEARCH_RESULTS = Histogram(
    "geosearch_search_results", "Results returned by a search (one page), per kind",
    ["kind"], buckets=RESULT_BUCKETS)
CACHE_LOOKUPS = Counter(
    "geosearch_cache_lookups", "Lookups of the coverage answers cache and tile "
    "revalidations, hit or miss", ["cache", "outcome"])
WRITES = Counter("geosearch_writes", "Writes to spaces, by operation and outcome",
                 ["op", "outcome"])
RATE_LIMITED = Counter("geosearch_rate_limited",
                       "Requests refused 429 by a per-client or per-key limit", ["scope"])
POOL_WAIT = Histogram(
    "geosearch_db_pool_wait_seconds",
    "Time a statement waited for a connection of its node's pool", ["node"],
    buckets=POOL_WAIT_BUCKETS)
POOL_IN_USE = Gauge("geosearch_db_pool_connections_in_use",
                    "Connections of the pools taken by a statement now, all workers",
                    ["node"], multiprocess_mode="livesum")
POOL_MAX = Gauge("geosearch_db_pool_connections_max",
                 "The most connections the pools may open, all workers", ["node"],
                 multiprocess_mode="livesum")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The class of a 4xx status: what the client has to change.
_REASONS = {400: "bad_parameter", 422: "bad_parameter", 401: "auth", 403: "auth",
            412: "precondition", 428: "precondition", 404: "not_found", 410: "not_found",
            405: "method", 406: "media_type", 415: "media_type", 408: "timeout",
            413: "too_large", 414: "too_large", 431: "too_large", 409: "conflict",
            429: "rate_limited"}
# The endpoints of the writes (their last part, after the blueprint's name; "write" is
# the 405 of a read-only server), and the op of each write method.
_WRITE_VIEWS = frozenset({"create", "replace", "patch", "close", "write"})
_WRITE_OPS = {"POST": "create", "PUT": "replace", "PATCH": "patch", "DELETE": "close"}
_TILE_ENDPOINTS = frozenset({"tile_mvt", "tile_json"})


def reason_class(status: int) -> str:
    """The class of a 4xx status (``other`` for one without a class).

    >>> reason_class(422), reason_class(412), reason_class(418)
    ('bad_parameter', 'precondition', 'other')
    """
    return _REASONS.get(status, "other")


def write_outcome(status: int) -> str:
    """What became of a write answered ``status``: ``ok``, ``error`` (5xx), or the class
    of its refusal (:func:`reason_class`; ``method`` when the store is read-only)."""
    if status < 400:
        return "ok"
    return "error" if status >= 500 else reason_class(status)


def cache_lookup(cache: str, hit: bool) -> None:
    """Count one lookup of ``cache``."""
    CACHE_LOOKUPS.labels(cache, "hit" if hit else "miss").inc()


def rate_limited(scope: str) -> None:
    """Count one request refused by the limit of ``scope``."""
    RATE_LIMITED.labels(scope).inc()


class RequestMetrics:
    """Records a finished request: its duration on the RED histogram and what its route
    says of the domain (results, writes, tile revalidations, 4xx classes). The labelled
    series are looked up once per label values and kept."""

    def __init__(self) -> None:
        self._durations: dict[tuple[str, str, int], Histogram] = {}
        self._views: dict[str, str] = {}
        self._results: dict[str, Histogram] = {}

    def record(self, method: str, route: str, endpoint: str | None, status: int,
               seconds: float, results: int | None) -> None:
        """Record one request; ``endpoint``: Flask's name of the view that answered it
        (None when none did), ``results``: the results of its search, if any."""
        if method not in METHODS:
            method = "OTHER"
        key = (method, route, status)
        series = self._durations.get(key)
        if series is None:
            series = self._durations[key] = HTTP_DURATION.labels(method, route, str(status))
        series.observe(seconds)
        if 400 <= status < 500:
            CLIENT_ERRORS.labels(reason_class(status)).inc()
        if endpoint is None:
            return
        view = self._views.get(endpoint)
        if view is None:
            view = self._views[endpoint] = endpoint.rpartition(".")[2]
        if results is not None:
            kind = self._results.get(view)
            if kind is None:
                kind = self._results[view] = SEARCH_RESULTS.labels(view)
            kind.observe(results)
        elif view in _TILE_ENDPOINTS and status in (200, 304):
            cache_lookup("tile", status == 304)
        elif method in _WRITE_OPS and view in _WRITE_VIEWS:
            WRITES.labels(_WRITE_OPS[method], write_outcome(status)).inc()
