"""``GET /metrics``: every metric in the Prometheus text format, for the allowed
addresses only.

The counts come from every worker (:mod:`.multiproc`: the sum of their files) or, in a
single process, from its registry. The state of the stores is read when scraped, by
the worker answering: each node's health, dataset version, applied change seq and
replica lag (:meth:`~geosearch.backends.base.Backend.nodes`), and the dataset's active
spaces (counted again only when the data stamp changed).

The client's address is the peer's, or the one a trusted proxy forwarded
(:func:`geosearch.clientid.client_address`); one outside ``GEOSEARCH_METRICS_ALLOW``
(addresses or CIDR networks, loopback by default) is answered 403.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from geosearch.api.errors import ApiError, ParamError
from geosearch.api.openapi import Operation, add_route, body, problem
from geosearch.backends.base import Backend, BackendUnavailable, NoDataset
from geosearch.clientid import Network, client_address, proxy_networks
from geosearch.model import ListQuery
from geosearch.observe import multiproc
from geosearch.settings import Settings

METRICS = Operation(
    "Metrics in the Prometheus text format (docs/operations.md)",
    body("text/plain", {"type": "string"}, "Every metric of every worker"),
    errors={"403": problem("This address may not read the metrics "
                           "(GEOSEARCH_METRICS_ALLOW)")})
# Node fields (Backend.nodes) shown as gauges, where a node reports them.
NODE_GAUGES = {
    "applied_seq": ("geosearch_node_applied_change_seq",
                    "The change feed's last seq the node has applied"),
    "lag_seq": ("geosearch_node_lag_changes",
                "Changes committed on the primary that the node has not applied"),
    "lag_seconds": ("geosearch_node_lag_seconds",
                    "Seconds since the first change the node has not applied committed"),
    "lag_bytes": ("geosearch_node_replica_lag_bytes",
                  "WAL a replica has yet to replay, in bytes"),
}


class StoreState:
    """The state of ``backend``'s stores as metric families, read when collected."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._counted: tuple[tuple[str, int], int] | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        """The nodes' and the dataset's gauges (none that cannot be read now)."""
        yield from self._nodes()
        yield from self._dataset()

    def _nodes(self) -> Iterator[Metric]:
        try:
            nodes = self.backend.nodes()
        except (BackendUnavailable, NoDataset):
            return
        labels = ["node", "role"]
        up = GaugeMetricFamily("geosearch_node_up", "1 when the node answers and is in "
                               "the read rotation, else 0", labels=labels)
        info = InfoMetricFamily("geosearch_node_dataset", "The dataset version a node "
                                "serves", labels=labels)
        gauges = {key: GaugeMetricFamily(name, doc, labels=labels)
                  for key, (name, doc) in NODE_GAUGES.items()}
        seen: dict[str, int] = {}
        for state in nodes:
            role = str(state["role"])
            seen[role] = seen.get(role, 0) + 1
            name = role if role != "replica" else f"replica{seen[role]}"
            up.add_metric([name, role], 1.0 if state["healthy"] else 0.0)
            if state.get("dataset_version"):
                info.add_metric([name, role], {"version": str(state["dataset_version"])})
            for key, gauge in gauges.items():
                if state.get(key) is not None:
                    gauge.add_metric([name, role], float(state[key]))
        yield up
        yield info
        yield from gauges.values()

    def _dataset(self) -> Iterator[Metric]:
        try:
            stamp = self.backend.data_stamp()
            with self._lock:
                if self._counted is None or self._counted[0] != stamp:
                    self._counted = (stamp, self.backend.count(ListQuery()))
                active = self._counted[1]
        except (BackendUnavailable, NoDataset):
            return
        yield GaugeMetricFamily("geosearch_dataset_active_spaces",
                                "Active spaces in the dataset served", value=active)
        yield GaugeMetricFamily("geosearch_dataset_change_seq",
                                "The change feed's last seq the service answers from "
                                "(0 for a snapshot)", value=stamp[1])


def exposition(state: StoreState) -> bytes:
    """Every metric, as the text format."""
    registry = CollectorRegistry()
    registry.register(state)
    if multiproc.directory() is not None:
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY) + generate_latest(registry)


def metrics_blueprint(backend: Backend, settings: Settings) -> Blueprint:
    """``/metrics`` over ``backend``, for the addresses of ``settings.metrics_allow``."""
    allowed = proxy_networks(settings.metrics_allow, "GEOSEARCH_METRICS_ALLOW")
    proxies = proxy_networks(settings.trusted_proxies)
    state = StoreState(backend)

    def metrics() -> Response:
        """GET /metrics"""
        _check_allowed(allowed, proxies)
        return Response(exposition(state), content_type=CONTENT_TYPE_LATEST)

    bp = Blueprint("observe", __name__)
    add_route(bp, "/metrics", "metrics", metrics, METRICS)
    return bp


def _check_allowed(allowed: tuple[Network, ...], proxies: tuple[Network, ...]) -> None:
    """403 unless the request's client is in ``allowed``."""
    forwarded = request.headers.get("X-Forwarded-For") if proxies else None
    address = client_address(request.remote_addr, forwarded, proxies)
    if address is None or not any(address.version == network.version and address in network
                                  for network in allowed):
        raise ApiError(403, "Forbidden", "this address may not read the metrics",
                       [ParamError("client address", "one of GEOSEARCH_METRICS_ALLOW")])
