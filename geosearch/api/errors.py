"""RFC 9457 problem details: the one error format of the HTTP API."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Blueprint, Flask, Response, json
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected, HTTPException, SecurityError

from geosearch.backends.base import BackendUnavailable, NoDataset, StaleVersion
from geosearch.observe import context

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


@dataclass
class ParamError:
    """One invalid input: which parameter, and what would be valid."""

    param: str
    message: str


@dataclass
class ApiError(Exception):
    """An error with its HTTP status and a message that is safe to show to the client."""

    status: int
    title: str
    detail: str
    errors: list[ParamError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def bad_params(cls, errors: list[ParamError]) -> ApiError:
        """A 400 naming each invalid parameter."""
        names = ", ".join(dict.fromkeys(e.param for e in errors))
        return cls(400, "Invalid request", f"invalid parameter(s): {names}", errors)


def problem(status: int, title: str, detail: str, errors: list[ParamError] | None = None,
            headers: dict[str, str] | None = None, extra: dict | None = None) -> Response:
    """A problem+json response (``extra``: more members, RFC 9457 extensions), with the
    ``request_id`` of the request it answers (the id of its log lines)."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            "errors": [{"param": e.param, "message": e.message} for e in errors or []],
            **(extra or {})}
    request_id = context.request_id()
    if request_id is not None:
        body["request_id"] = request_id
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def handle_api_error(exc: ApiError) -> Response:
    """Render an ApiError."""
    return problem(exc.status, exc.title, exc.detail, exc.errors, exc.headers)


def handle_stale(exc: Exception) -> Response:
    """410: the cursor's dataset version is served by no store any more."""
    return handle_api_error(stale_cursor())


def stale_cursor() -> ApiError:
    """410 Gone: the cursor was issued for another dataset version."""
    return ApiError(410, "Gone", "the dataset changed since this cursor was issued; "
                    "start again from the first page",
                    [ParamError("cursor", "stale: issued for another dataset version")])


def handle_unavailable(exc: Exception, extra: dict | None = None) -> Response:
    """The store is down or holds no dataset: 503, retry later (``extra``: more members
    of the problem). Its text is not shown."""
    log.warning("backend unavailable: %s", exc)
    detail = ("no dataset is loaded" if isinstance(exc, NoDataset)
              else "the spatial database cannot be reached; try again shortly")
    return problem(503, "Service Unavailable", detail, headers={"Retry-After": "5"},
                   extra=extra)


def handle_http_exception(exc: HTTPException) -> Response:
    """Werkzeug's own errors (404, 405, 413...) as problem+json."""
    if isinstance(exc, ClientDisconnected):  # the body was cut short, or stopped coming
        if isinstance(exc.__context__, TimeoutError):
            return problem(408, "Request Timeout", "the request body stopped arriving "
                           "before its end; send it whole", headers={"Connection": "close"})
        return problem(400, "Bad Request", "the request body ended before its declared end")
    if isinstance(exc, SecurityError):  # its text repeats the untrusted Host header
        return problem(400, "Bad Request", "the Host header names a host this service "
                       "does not answer for (GEOSEARCH_PUBLIC_URL, GEOSEARCH_TRUSTED_HOSTS)")
    headers = dict(exc.get_headers()) if exc.code == 405 else {}
    headers.pop("Content-Type", None)
    return problem(exc.code or 500, exc.name, exc.description or exc.name, headers=headers)


def handle_unreadable_body(exc: Exception) -> Response:
    """The server could not read the request's body (a malformed chunked encoding)."""
    return problem(400, "Bad Request", "the request body could not be read: its chunked "
                   "transfer coding is malformed")


def handle_unexpected(exc: Exception) -> Response:
    """Anything else: logged with its trace, answered without it."""
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal Server Error", "an unexpected error occurred; it was logged")


def register_handlers(target: Flask | Blueprint, app_wide: bool = True) -> None:
    """Answer the errors of the API's own kinds on ``target`` (an app or a blueprint) as
    problem+json; ``app_wide``: Werkzeug's (404, 405, 413...) and unexpected ones too.
    Installed with the request checks by :func:`geosearch.api.guard.register`."""
    target.register_error_handler(ApiError, handle_api_error)
    target.register_error_handler(BackendUnavailable, handle_unavailable)
    target.register_error_handler(NoDataset, handle_unavailable)
    target.register_error_handler(StaleVersion, handle_stale)
    if app_wide:
        target.register_error_handler(HTTPException, handle_http_exception)
        target.register_error_handler(ParseException, handle_unreadable_body)
        target.register_error_handler(Exception, handle_unexpected)
