"""Seeing inside the running service: request ids, per-request logs, Prometheus metrics
and OpenTelemetry traces (docs/operations.md lists every metric and log field).

The parts, each small, each importable alone:

- :mod:`.context`: the request being served (its id, what it returned), for log lines
  and problem bodies; no dependency beyond the standard library.
- :mod:`.middleware`: WSGI middleware around the whole app: it accepts or makes the
  request id, times the request, records its metrics and writes its log line.
- :mod:`.metrics`: the metrics and how they are recorded (prometheus_client, its
  multiprocess mode under gunicorn: :mod:`.multiproc`); :mod:`.exposition`: ``/metrics``;
  :mod:`.pool`: the database pools' waits and use; :mod:`.ingest`: an ingest run's counts
  in the textfile format.
- :mod:`.logs`: JSON (python-json-logger) or text log lines on stderr, each with its
  request id.
- :mod:`.traces`: OpenTelemetry spans, started after gunicorn forks when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

This package imports nothing heavy: prometheus_client must not be imported before
:func:`geosearch.observe.multiproc.prepare` has chosen its directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from geosearch.backends.base import Backend
    from geosearch.settings import Settings


def install(app: Flask, settings: Settings, backend: Backend) -> None:
    """Observe ``app``: ``/metrics`` over ``backend`` (unless ``settings.metrics`` is off)
    and the middleware of request ids, metrics and log lines around everything else it
    runs (called last by :func:`geosearch.api.create_app`, so that the limits' refusals
    are seen too)."""
    from geosearch.clientid import proxy_networks
    from geosearch.observe.exposition import metrics_blueprint
    from geosearch.observe.middleware import ObservedApp

    if settings.metrics:
        app.register_blueprint(metrics_blueprint(backend, settings))
    # Flask's way to wrap its WSGI callable in middleware (mypy sees a method)
    app.wsgi_app = ObservedApp(  # type: ignore[method-assign]
        app.wsgi_app, app.url_map, settings.metrics, proxy_networks(settings.trusted_proxies))
