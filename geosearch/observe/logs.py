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
import time
from datetime import UTC, datetime
from pathlib import Path
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
        if type(record.msg) is not dict:
            return super().formatMessage(record)
        # the client's text escaped: a line break in a path cannot forge another line
        fields = {key: value.encode("unicode_escape").decode("ascii")
                  if isinstance(value, str) else value for key, value in record.msg.items()}
        rest = " ".join(f"{key}={value}" for key, value in fields.items()
                        if key not in _SUMMARY and value is not None)
        return (f"{self.formatTime(record)} INFO {record.name} [{fields['request_id']}] "
                f"{_request_summary(fields)} {rest}")

    def request_line(self, fields: dict) -> str:
        """A request's line."""
        return self.format(request_record(fields))


_SUMMARY = frozenset({"method", "path", "status", "duration_ms", "request_id"})


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's formatter (encoded by orjson): ``time``, ``level``,
    ``logger``, ``message``, then the record's own fields and ``exc_info`` for an error.
    A request's line has its fields already: they are not looked for among a record's
    attributes (:meth:`request_line` needs no record at all)."""

    def __init__(self) -> None:
        super().__init__(["levelname", "name", "message"], timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger"})

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict
                   ) -> None:
        if type(record.msg) is not dict:
            super().add_fields(log_data, record, message_dict)
            return
        log_data.update(_request_data(message_dict, record.created))

    def request_line(self, fields: dict) -> str:
        """A request's line, as :meth:`format` writes it from its record."""
        return self.serialize_log_record(_request_data(fields, time.time()))


def _request_data(fields: dict, created: float) -> dict:
    return {"time": datetime.fromtimestamp(created, tz=UTC), "level": "INFO",
            "logger": ACCESS, "message": _request_summary(fields), **fields}


class RequestLog:
    """Where a server writes the lines of its requests: each formatted and written at
    once, past the logging module's loggers and handlers (a request's line is most of
    its log lines, and their dispatch cost more than the line)."""

    def __init__(self, stream: IO[str], line_formatter: JsonFormatter | TextFormatter,
                 owned: bool = False) -> None:
        self.stream = stream
        self.formatter = line_formatter
        self.owned = owned  # a file of its own, closed with it

    def write(self, fields: dict) -> None:
        """Write a request's line."""
        self.stream.write(self.formatter.request_line(fields) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Close the file of its own."""
        if self.owned:
            self.stream.close()


_request_log: RequestLog | None = None


def request_log() -> RequestLog | None:
    """The request lines' destination that :func:`configure` set (None: in-process, the
    lines go to the logger ``geosearch.access`` if its host listens)."""
    return _request_log


def formatter(log_format: str) -> JsonFormatter | TextFormatter:
    """The formatter of ``json`` or ``text``."""
    if log_format not in FORMATS:
        raise ValueError("GEOSEARCH_LOG_FORMAT must be json or text")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(log_format: str, access: str = "-", stream: IO[str] | None = None
              ) -> logging.Handler:
    """Write every log line (the root logger's) to ``stream`` (stderr) as ``log_format``,
    replacing what an earlier call installed; the requests' lines (``access``) go with
    them (``-``), to a file (a path), or nowhere (``""``). Returns the handler."""
    global _request_log
    unconfigure()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestFields())
    setattr(handler, _OURS, True)
    logging.getLogger().addHandler(handler)
    logging.getLogger("geosearch").setLevel(logging.INFO)
    logging.getLogger(ACCESS).disabled = access == ""
    if access == "-":
        _request_log = RequestLog(handler.stream, formatter(log_format))
    elif access:
        _request_log = RequestLog(Path(access).open("a", encoding="utf-8"),  # noqa: SIM115
                                  formatter(log_format), owned=True)
    # A record need not know its thread or process: less work per line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return handler


def unconfigure() -> None:
    """Undo :func:`configure` (for a host that takes logging back, and tests)."""
    global _request_log
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    if _request_log is not None:
        _request_log.close()
    _request_log = None
    logging.getLogger(ACCESS).disabled = False


class GunicornLogger(glogging.Logger):
    """gunicorn's logger, its error log written by the handlers of :func:`configure` (in
    the same format as the service's own lines) rather than its own."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True
