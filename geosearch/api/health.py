"""Liveness and readiness probes."""

from __future__ import annotations

from functools import partial

from flask import Blueprint, Response, jsonify

from geosearch.api.errors import handle_unavailable, problem
from geosearch.api.openapi import OBJECT, Operation, add_route, body
from geosearch.api.openapi import problem as problem_response
from geosearch.backends.base import Backend, BackendUnavailable, NoDataset

UP = Operation("The process is up", body("application/json", OBJECT, "Up"))
_SEQ = {"type": "integer", "minimum": 0}
_LAG = {"type": ["number", "null"], "minimum": 0}
NODE = {"type": "object", "required": ["role", "healthy", "dataset_version"],
        "properties": {"role": {"type": "string"},
                       "healthy": {"type": "boolean"},
                       "dataset_version": {"type": ["string", "null"]},
                       "applied_seq": _SEQ, "lag_seq": {"type": ["integer", "null"], "minimum": 0},
                       "lag_seconds": _LAG, "lag_bytes": _LAG,
                       "in_rotation": {"type": "boolean"}}}
READY = Operation(
    "A dataset is loaded and a store answers",
    body("application/json", {"type": "object", "required": ["dataset_version", "seq"],
                              "properties": {"dataset_version": {"type": "string"},
                                             "seq": _SEQ,
                                             "nodes": {"type": "array", "items": NODE}}},
         "Ready"),
    errors={"503": problem_response("Not ready", {"Retry-After": True})})


def healthz() -> Response:
    """GET /healthz"""
    return jsonify(status="ok")


def readyz(backend: Backend) -> Response:
    """GET /readyz over ``backend``."""
    try:
        nodes = backend.nodes()
    except (BackendUnavailable, NoDataset) as exc:  # no store to list
        return handle_unavailable(exc, extra={"nodes": []})
    serving = [n for n in nodes if n["healthy"] and n["dataset_version"]]
    if not serving:
        return problem(503, "Service Unavailable", "no store can serve a dataset",
                       headers={"Retry-After": "5"}, extra={"nodes": nodes})
    version, seq = backend.data_stamp()
    return jsonify(status="ready", dataset_version=version, seq=seq, nodes=nodes)


def health_blueprint(backend: Backend) -> Blueprint:
    """``/healthz`` (the process is up) and ``/readyz``: ready (200) while any store can
    serve a dataset, else 503; both list every store (``nodes``: role, health, dataset
    version, the change feed's seq it has applied, its lag behind the primary)."""
    bp = Blueprint("health", __name__)
    add_route(bp, "/healthz", "healthz", healthz, UP)
    add_route(bp, "/readyz", "readyz", partial(readyz, backend), READY)
    return bp
