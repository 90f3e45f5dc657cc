"""Log lines on stderr: one JSON object per line (python-json-logger, encoded by orjson),
or plain text; each line of a request carries its request id (and its trace id when
tracing is on).

``GEOSEARCH_LOG_FORMAT=json|text`` chooses; ``geosearch serve`` and the gunicorn config
default to json, in-process uses leave logging to their host. ``GEOSEARCH_ACCESS_LOG``
says where the line of each request (logger ``geosearch.access``) goes: ``-`` (the
default) with the rest on stderr, a file path, or nowhere when empty.

python-json-logger rather than structlog: the service and its libraries (gunicorn,
psycopg_pool, werkzeug) already log through the standard ``logging`` module, and a
formatter turns all of their lines into JSON without a second logging API; its orjson
formatter keeps a line's cost low.

What a line never holds: a secret (the ``Authorization`` header is never read into a
log line), a request or response body, a query string. A 500's stack trace is logged
(``exc_info``) and never sent to the client.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO

from gunicorn import glogging
from pythonjsonlogger.orjson import OrjsonFormatter

from geosearch.observe import context, traces

FORMATS = ("json", "text")
ACCESS = "geosearch.access"
_OURS = "_geosearch_handler"  # marks the handlers configure() installed
# The ids of the request a line was written in, when there is one.
_TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestFields(logging.Filter):
    """Adds the request id of the request being served (and, while tracing, the trace
    id) to every record that has none (a request's own line has them already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if type(record.msg) is dict:  # a request's line (fields)
            return True
        if not hasattr(record, "request_id"):
            request_id = context.request_id()
            if request_id is not None:
                record.request_id = request_id
        if not hasattr(record, "trace_id"):
            trace_id = traces.current_trace_id()
            if trace_id is not None:
                record.trace_id = trace_id
        return True


def request_record(fields: dict) -> logging.LogRecord:
    """The record of a request's line: its ``fields`` (:mod:`.middleware`) as the
    message, made directly (``Logger.info`` would first walk the stack for its caller)."""
    return logging.LogRecord(ACCESS, logging.INFO, __file__, 0, fields, None, None)


def _request_summary(fields: dict) -> str:
    return (f"{fields['method']} {fields['path']} {fields['status']} "
            f"{fields['duration_ms']:.1f} ms")


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message`` (``-`` outside a request), then the
    stack trace of an error; a request's line is its summary and its other fields."""

    def __init__(self) -> None:
        super().__init__(_TEXT, defaults={"request_id": "-"})

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's)
        fields = record.msg
        if type(fields) is not dict:
            return super().formatMessage(record)
        rest = " ".join(f"{key}={value}" for key, value in fields.items()
                        if key not in _SUMMARY and value is not None)
        return (f"{self.formatTime(record)} INFO {record.name} [{fields['request_id']}] "
                f"{_request_summary(fields)} {rest}")


_SUMMARY = frozenset({"method", "path", "status", "duration_ms", "request_id"})


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's formatter (encoded by orjson): ``time``, ``level``,
    ``logger``, ``message``, then the record's own fields and ``exc_info`` for an error.
    A request's line (its fields as the message) is written without looking through
    the record's attributes for fields: it has them all."""

    def __init__(self) -> None:
        super().__init__(["levelname", "name", "message"], timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"})

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict
                   ) -> None:
        if type(record.msg) is not dict:
            super().add_fields(log_data, record, message_dict)
            return
        log_data["time"] = datetime.fromtimestamp(record.created, tz=UTC)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = _request_summary(message_dict)
        log_data.update(message_dict)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``json`` or ``text``."""
    if log_format not in FORMATS:
        raise ValueError("GEOSEARCH_LOG_FORMAT must be json or text")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def _handler(handler: logging.Handler, log_format: str) -> logging.Handler:
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestFields())
    setattr(handler, _OURS, True)
    return handler


def configure(log_format: str, access: str = "-", stream: IO[str] | None = None
              ) -> logging.Handler:
    """Write every log line (the root logger's) to ``stream`` (stderr) as ``log_format``,
    replacing the handlers an earlier call installed; the requests' lines (``access``) go
    with them (``-``), to a file (a path), or nowhere (``""``). Returns the handler."""
    handler = _handler(logging.StreamHandler(stream or sys.stderr), log_format)
    root = logging.getLogger()
    access_log = logging.getLogger(ACCESS)
    for logger in (root, access_log):
        for old in [h for h in logger.handlers if getattr(h, _OURS, False)]:
            logger.removeHandler(old)
            old.close()
    root.addHandler(handler)
    logging.getLogger("geosearch").setLevel(logging.INFO)
    access_log.disabled = access == ""
    access_log.propagate = access == "-"
    if access not in ("", "-"):
        access_log.addHandler(_handler(logging.FileHandler(access), log_format))
    # A record need not know its thread or process: less work per line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return handler


class GunicornLogger(glogging.Logger):
    """gunicorn's logger, its error log written by the handlers of :func:`configure` (in
    the same format as the service's own lines) rather than its own."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True
