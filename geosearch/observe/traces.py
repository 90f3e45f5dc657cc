"""OpenTelemetry traces: a span per request (Flask) with a child span per statement of
the serving path (its prepared statements), exported over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Started in each gunicorn worker after the fork (:func:`post_fork`): the exporter's thread
and connection belong to the worker. Unset, nothing here is imported beyond this module
and a log line asks only whether tracing is on. The exporter reads the standard
``OTEL_*`` variables itself (endpoint, headers, timeout); ``OTEL_SERVICE_NAME`` names the
service (default ``geosearch``).

The serving path runs its statements on libpq directly (:mod:`geosearch.backends.prepared`):
:func:`start` wraps :func:`~geosearch.backends.prepared.run`, and :meth:`Tracing.stop`
puts it back. The statements of writes and of the change feed (psycopg cursors) have no
span of their own yet: psycopg's instrumentation wraps ``Connection.connect`` for the
whole process, and a pool's connections opened under it lose the backend's connection
class.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
# Where the Flask instrumentation keeps a request's span in the WSGI environ.
_FLASK_SPAN = "opentelemetry-flask.span_key"
_active: Tracing | None = None


def wanted() -> bool:
    """Whether the environment asks for traces (an OTLP endpoint is set)."""
    return bool(os.environ.get(ENDPOINT))


def current_trace_id() -> str | None:
    """The trace id of the span current here (32 hex digits); None when not tracing."""
    if _active is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def request_trace_id(environ: dict) -> str | None:
    """The trace id of a request's span, read from its WSGI environ (its span is no
    longer current when its log line is written); None when not tracing."""
    if _active is None:
        return None
    span = environ.get(_FLASK_SPAN)
    if span is None:
        return None
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@dataclass
class Tracing:
    """Tracing as started on one app: stop it to undo every instrumentation."""

    app: Flask
    provider: TracerProvider
    _undo: list[Callable[[], Any]] = field(default_factory=list)

    def stop(self) -> None:
        """Undo the instrumentations, flush and shut the exporter down."""
        global _active
        while self._undo:
            self._undo.pop()()
        self.provider.shutdown()
        _active = None


def start(app: Flask, exporter: SpanExporter | None = None) -> Tracing:
    """Trace ``app``'s requests and their statements; spans go to ``exporter`` as they
    end (a test's), or by default in batches to the OTLP/HTTP endpoint of the
    environment."""
    global _active
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if _active is not None:
        raise RuntimeError("tracing is already started in this process")
    name = os.environ.get("OTEL_SERVICE_NAME") or "geosearch"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(app, provider)
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    tracing._undo.append(lambda: FlaskInstrumentor().uninstrument_app(app))
    # The serving statements, as the backend's prepared path runs them. Not psycopg's own
    # instrumentation: it wraps Connection.connect, and the connections a pool opens then
    # are plain psycopg connections, not the backend's ServingConnection.
    tracing._undo.append(_trace_prepared(provider))
    _active = tracing
    return tracing


def _trace_prepared(provider: TracerProvider) -> Callable[[], None]:
    """Wrap the serving path's statements in a span each; returns the undo."""
    from opentelemetry.trace import SpanKind

    from geosearch.backends import prepared

    tracer = provider.get_tracer(__name__)
    run = prepared.run

    def traced(conn, sql: str, params: dict) -> list[tuple]:
        verb = sql.split(None, 1)[0].upper() if sql else "SQL"
        with tracer.start_as_current_span(
                verb, kind=SpanKind.CLIENT,
                attributes={"db.system": "postgresql", "db.statement": sql}):
            return run(conn, sql, params)

    prepared.run = traced

    def undo() -> None:
        prepared.run = run

    return undo


def post_fork(server, worker) -> None:
    """gunicorn's ``post_fork`` hook: start tracing in the new worker when the
    environment asks for it."""
    if wanted():
        start(worker.app.wsgi())
