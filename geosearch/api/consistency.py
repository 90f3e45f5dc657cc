"""Read-your-writes over HTTP: the consistency token of a write, and the freshness of every
search answer.

- Every write answered 2xx carries ``X-Consistency-Token``: the change feed's seq of the
  write, opaque to clients (base64url of a format mark and the seq: :func:`token`).
- A read that sends it back in ``X-Consistency-Token`` is answered only from a store that
  has applied that seq (:mod:`geosearch.backends.readscope`; over PostGIS, checked in the
  same snapshot as the answer: :mod:`geosearch.backends.nodes`). The seq counts every
  change of the database, a dataset's load included, so a token written before a load is
  met by the new dataset, and answered from it. A token that is not one this service
  makes is a 400 naming the header.
- Every search answer carries ``X-Change-Seq``, the seq of the state that answered it
  (the lowest, when it took several reads), beside ``X-Dataset-Version``.

A server over a snapshot takes no writes and applies none: it checks a token's form and
answers from its snapshot, saying ``X-Change-Seq: 0``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from flask import Blueprint, Response, g, request

from geosearch.api.errors import ApiError, ParamError
from geosearch.api.geojson import CHANGE_SEQ_HEADER, VERSION_HEADER
from geosearch.backends import readscope
from geosearch.backends.base import Backend
from geosearch.changes import MAX_SEQ

TOKEN_HEADER = "X-Consistency-Token"
# A token's text: "1." and the seq (the "1" marks the format, so that another can follow)
_FORMAT = "1."
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,32}")
_PAYLOAD = re.compile(r"1\.(0|[1-9][0-9]{0,15})")
_READ_METHODS = frozenset({"GET", "HEAD", "POST"})  # POST: a search by polygon
_EXPECTED = "a token from the X-Consistency-Token header of a write's answer"


def token(seq: int) -> str:
    """The consistency token of a write at ``seq``."""
    return base64.urlsafe_b64encode(f"{_FORMAT}{seq}".encode()).rstrip(b"=").decode()


def token_seq(text: str) -> int:
    """The seq of a token made by :func:`token`; ValueError for any other text."""
    if not _TOKEN.fullmatch(text):
        raise ValueError(_EXPECTED)
    try:
        payload = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(_EXPECTED) from None
    if not _PAYLOAD.fullmatch(payload) or int(payload[len(_FORMAT):]) > MAX_SEQ:
        raise ValueError(_EXPECTED)
    return int(payload[len(_FORMAT):])


def requested_seq() -> int:
    """The seq the request's ``X-Consistency-Token`` names (0 without one); a 400 naming
    the header when it is not a token."""
    text = request.headers.get(TOKEN_HEADER)
    if text is None:
        return 0
    try:
        return token_seq(text.strip())
    except ValueError as exc:
        raise ApiError.bad_params([ParamError(TOKEN_HEADER, str(exc))]) from None


def install(bp: Blueprint, backend: Backend, reads: Iterable[str] | None = None) -> None:
    """Give the reads of ``bp`` (its endpoints named in ``reads``; all by default) a read
    scope with the seq of their token, and their answers ``X-Change-Seq`` and
    ``X-Dataset-Version`` of what answered: the stamp the backend noted, or for a
    backend that notes none (a snapshot, whose state never changes) its
    :meth:`~geosearch.backends.base.Backend.data_stamp`."""
    names = None if reads is None else frozenset(reads)

    def is_read() -> bool:
        endpoint = request.endpoint or ""
        return request.method in _READ_METHODS and (
            names is None or endpoint.rpartition(".")[2] in names)

    def open_scope() -> None:
        if is_read():
            g.geosearch_read_scope = readscope.enter(requested_seq())

    def stamp(response: Response) -> Response:
        scope = readscope.current()
        if scope is None or not 200 <= response.status_code < 400:
            return response
        version, seq = scope.stamp or backend.data_stamp()
        response.headers.setdefault(VERSION_HEADER, version)
        response.headers[CHANGE_SEQ_HEADER] = str(seq)
        return response

    def close_scope(_: BaseException | None) -> None:
        opened = g.pop("geosearch_read_scope", None)
        if opened is not None:
            readscope.leave(opened)

    bp.before_request(open_scope)
    bp.after_request(stamp)
    bp.teardown_request(close_scope)
