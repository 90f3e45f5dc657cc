"""Liveness and readiness probes."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, Response, jsonify

from geosearch.api.errors import problem
from geosearch.api.openapi import OBJECT, Operation, add_route, body
from geosearch.api.openapi import problem as problem_response
from geosearch.backends.base import Backend

UP = Operation("The process is up", body("application/json", OBJECT, "Up"))
READY = Operation(
    "A dataset is loaded and a store answers",
    body("application/json", {"type": "object", "required": ["dataset_version"],
                              "properties": {"dataset_version": {"type": "string"},
                                             "nodes": {"type": "array"}}}, "Ready"),
    errors={"503": problem_response("Not ready")})


def healthz() -> Response:
    """GET /healthz"""
    return jsonify(status="ok")


def readyz(backend: Backend) -> Response:
    """GET /readyz over ``backend``."""
    # BackendUnavailable / NoDataset propagate to the app's 503 problem handler.
    nodes = backend.nodes()
    serving = [n for n in nodes if n["healthy"] and n["dataset_version"]]
    if not serving:
        return problem(503, "Service Unavailable", "no store can serve a dataset",
                       headers={"Retry-After": "5"}, extra={"nodes": nodes})
    return jsonify(status="ready", dataset_version=backend.dataset_version(), nodes=nodes)


def health_blueprint(backend: Backend) -> Blueprint:
    """``/healthz`` (the process is up) and ``/readyz``: ready (200) while any store can
    serve a dataset, else 503; both list every store (``nodes``: role, health, dataset
    version, replication lag)."""
    bp = Blueprint("health", __name__)
    add_route(bp, "/healthz", "healthz", healthz, UP)
    add_route(bp, "/readyz", "readyz", partial(readyz, backend), READY)
    return bp
