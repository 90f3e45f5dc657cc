"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify

from geosearch.api.errors import problem
from geosearch.api.openapi import OBJECT, Operation, body, documented
from geosearch.api.openapi import problem as problem_response
from geosearch.backends.base import Backend

READY = Operation(
    "A dataset is loaded and a store answers",
    body("application/json", {"type": "object", "required": ["dataset_version"],
                              "properties": {"dataset_version": {"type": "string"},
                                             "nodes": {"type": "array"}}}, "Ready"),
    errors={"503": problem_response("Not ready")})


def health_blueprint(backend: Backend) -> Blueprint:
    """``/healthz`` (the process is up) and ``/readyz``: ready (200) while any store can
    serve a dataset, else 503; both list every store (``nodes``: role, health, dataset
    version, replication lag)."""
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    @documented(Operation("The process is up", body("application/json", OBJECT, "Up")))
    def healthz():
        return jsonify(status="ok")

    @bp.get("/readyz")
    @documented(READY)
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
