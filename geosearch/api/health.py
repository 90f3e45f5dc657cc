"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify

from geosearch.backends.base import Backend


def health_blueprint(backend: Backend) -> Blueprint:
    """``/healthz`` (the process is up) and ``/readyz`` (a dataset answers, else 503)."""
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @bp.get("/readyz")
    def readyz():
        # BackendUnavailable / NoDataset propagate to the app's 503 problem handler.
        return jsonify(status="ready", dataset_version=backend.dataset_version())

    return bp
