"""The exceptions of :mod:`geosearch.client`: one per problem the service answers, and
the answers the client refuses to read on.

A problem+json answer becomes a :class:`GeosearchError` subclass named after its status
(:func:`problem_error`); the whole problem body stays on it as ``problem``, so that its
extension members are at hand (``current_revision`` of a 412, ``existing_id`` of a 409).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import requests


class GeosearchError(Exception):
    """A problem+json answer: ``status``, ``title``, ``detail``, the named ``errors`` and
    the whole ``problem`` body."""

    def __init__(self, status: int, title: str, detail: str,
                 errors: list[dict] | None = None, problem: Mapping | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.errors = errors or []
        self.problem = dict(problem or {})


class BadRequest(GeosearchError):
    """400: a parameter is invalid; ``errors`` names each with what is valid."""


class Unauthorized(GeosearchError):
    """401: no key, or a key that is unknown or revoked (the client's ``key``)."""


class Forbidden(GeosearchError):
    """403: the key has not the scope: ``write`` for a write, ``changes`` for the feed."""


class NotFound(GeosearchError):
    """404: no such space or route."""


class MethodNotAllowed(GeosearchError):
    """405: a service over a snapshot takes no write (the detail says so)."""


class Conflict(GeosearchError):
    """409: a create whose id is taken, or whose space repeats an active one."""

    @property
    def existing_id(self) -> str | None:
        """The id of the space that is already there."""
        found = self.problem.get("existing_id")
        return found if isinstance(found, str) else None


class Gone(GeosearchError):
    """410: the dataset changed while paging; start again."""


class PreconditionFailed(GeosearchError):
    """412: the space is at another revision than the write named: read it again (or
    take ``current_revision``) and write against that."""

    @property
    def current_revision(self) -> int | None:
        """The revision the space is at."""
        found = self.problem.get("current_revision")
        return found if isinstance(found, int) and not isinstance(found, bool) else None


class PayloadTooLarge(GeosearchError):
    """413: the body is too large."""


class Unprocessable(GeosearchError):
    """422: the space is not valid; ``errors`` names each bad field as a JSON Pointer into
    the body (``param``) with what is valid (``message``)."""


class TooManyRequests(GeosearchError):
    """429: over a limit (a key's writes); ``retry_after_s``: the seconds the service asked
    to wait (its ``Retry-After``), when it said."""

    retry_after_s: int | None = None


class Unavailable(GeosearchError):
    """503: the service has no dataset or its database is down (after the retries of a
    read; a write is not sent again)."""


_ERRORS: dict[int, type[GeosearchError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: Conflict, 410: Gone, 412: PreconditionFailed, 413: PayloadTooLarge,
    422: Unprocessable, 429: TooManyRequests, 503: Unavailable}


def problem_error(status: int, reason: str, text: str,
                  headers: Mapping[str, str]) -> GeosearchError:
    """The exception of a problem answer (``reason``: its status line's; ``text``: its
    body, read as problem+json; its first 200 characters are the detail when it is not)."""
    try:
        problem = json.loads(text)
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {}
    errors = problem.get("errors")
    error = _ERRORS.get(status, GeosearchError)(
        status, str(problem.get("title") or reason),
        str(problem.get("detail") or text[:200]),
        errors if isinstance(errors, list) else None, problem)
    retry_after = headers.get("Retry-After", "")
    if isinstance(error, TooManyRequests) and retry_after.isdigit() and len(retry_after) < 10:
        error.retry_after_s = int(retry_after)
    return error


class UnsafeResponse(requests.RequestException):
    """The service answered something the client will not follow or read on; nothing was
    sent elsewhere and nothing more was read."""


class CrossOriginRedirect(UnsafeResponse):
    """A redirect to another scheme, host or port than ``base_url``'s; ``location`` is where
    it pointed. Following it would hand the key and the body to it."""

    def __init__(self, location: str, source: str) -> None:
        super().__init__(f"{source} redirected to another origin, not followed: {location}")
        self.location = location


class ResponseTooLarge(UnsafeResponse):
    """A body longer than ``max_response_bytes`` (declared, or as read)."""


class EndlessPages(UnsafeResponse):
    """A walk of pages that sent a cursor it had sent before, or went past ``max_pages``."""


class NoRevision(UnsafeResponse):
    """An answer about a space without a strong ``ETag`` naming its revision: a service
    over a snapshot names none (and takes no write)."""


class DeadlineExceeded(requests.Timeout):
    """A request (connect, redirects and body together) outlasted the client's ``timeout``."""
