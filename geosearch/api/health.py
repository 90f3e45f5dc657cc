"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify

from geosearch.api.errors import problem
from geosearch.backends.base import Backend


def health_blueprint(backend: Backend) -> Blueprint:
    """``/healthz`` (the process is up) and ``/readyz``: ready (200) while any store can
    serve a dataset, else 503; both list every store (``nodes``: role, health, dataset
    version, replication lag)."""
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @bp.get("/readyz")
    def readyz():
        # BackendUnavailable / NoDataset propagate to the app's 503 problem handler.
        nodes = backend.nodes()
        serving = [n for n in nodes if n["healthy"] and n["dataset_version"]]
        if not serving:
            return problem(503, "Service Unavailable", "no store can serve a dataset",
                           headers={"Retry-After": "5"}, extra={"nodes": nodes})
        return jsonify(status="ready", dataset_version=backend.dataset_version(),
                       nodes=nodes)

    return bp
