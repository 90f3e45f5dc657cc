"""The request being served, as the rest of the service may know it: its id and what it
returned. A context variable, so each greenlet (gevent) or thread sees its own request.

The id comes from the client's ``X-Request-ID`` when that is 1 to 128 characters of
``[A-Za-z0-9._-]``; anything else (longer, empty, other characters, non-ASCII) is replaced
by an id made here, 32 hex digits. It is echoed on the response, written in every log
line of the request and put in its problem bodies (``request_id``), so that a user's
report leads to the log line.

>>> accepted_id("abc")
'abc'
>>> len(accepted_id("x" * 129)), len(accepted_id("caf\\xe9"))
(32, 32)
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar

HEADER = "X-Request-ID"
MAX_ID_CHARS = 128
_CLIENT_ID = re.compile(f"[A-Za-z0-9._-]{{1,{MAX_ID_CHARS}}}")


class RequestNote:
    """What is known of one request while it is served: its id, the results of the
    search it answered (None when it answered none) and the key it used."""

    __slots__ = ("key_name", "request_id", "results")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.results: int | None = None
        self.key_name: str | None = None


CURRENT: ContextVar[RequestNote | None] = ContextVar("geosearch_request", default=None)


def accepted_id(header: str | None) -> str:
    """The client's request id when it is acceptable, else a new one: this process'
    random prefix (made again in a forked child) and its count of ids, 32 hex digits."""
    if header is not None and _CLIENT_ID.fullmatch(header):
        return header
    return f"{_made.prefix}{next(_made.count):016x}"


class _Made:
    """The ids this process makes: a random prefix and a count."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.count = itertools.count()


_made = _Made()
os.register_at_fork(after_in_child=_made.renew)


def request_id() -> str | None:
    """The id of the request being served (None outside a request)."""
    note = CURRENT.get()
    return None if note is None else note.request_id


def note_results(count: int) -> None:
    """Record how many results the request's search returned (for the results metric)."""
    note = CURRENT.get()
    if note is not None:
        note.results = count


def note_key(name: str) -> None:
    """Record the name of the API key the request used (for its log line; never the
    secret)."""
    note = CURRENT.get()
    if note is not None:
        note.key_name = name
