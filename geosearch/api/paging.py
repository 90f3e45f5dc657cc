"""Keyset paging over HTTP, one path for /v1 and /ogc: the cursor of a request, the page
response with its ``next`` cursor and link, and the URLs they are built from.

A cursor is bound to the query (its fingerprint, made only when paging needs it) and to
the dataset version of the page it continues: the version goes into the next query, so
that only a store serving it answers (410 when none does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from urllib.parse import quote, unquote_plus

import orjson
from flask import Response, request

from geosearch.api.cursor import decode, encode
from geosearch.api.geojson import GEOJSON, VERSION_HEADER, collection
from geosearch.api.origin import absolute
from geosearch.model import Page

DISTANCE_KEY = (float, str, int)  # pages ordered by distance, then id; the walk's seq
ID_KEY = (str,)  # pages ordered by id
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# A path of these characters only is its own percent-encoding.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~]*")


def geojson_response(body: dict | bytes, version: str | None = None) -> Response:
    """A GeoJSON response; ``version``: the dataset version that answered, as a header."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = Response(data, mimetype=GEOJSON)
    if version:
        response.headers[VERSION_HEADER] = version
    return response


def own_url(query_string: str | None = None) -> str:
    """This request's URL, with its own query string or ``query_string``.

    The service's own origin (:mod:`geosearch.api.origin`: the public URL, or the
    request's trusted host), then the mount prefix in ``SCRIPT_NAME`` and the path as the
    client addressed them, so links stay right behind a prefix; cheaper than rebuilding
    it through the URL map.
    """
    env = request.environ
    path = env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", "")
    if not _PLAIN_PATH.fullmatch(path):
        path = quote(path.encode("latin-1"), safe=_PATH_SAFE)
    query = env.get("QUERY_STRING", "") if query_string is None else query_string
    return absolute(path) + (f"?{query}" if query else "")


def next_url(cursor: str) -> str:
    """This request's URL with ``cursor`` replaced: the ``next`` link (the other
    parameters exactly as the client sent them)."""
    kept = [pair for pair in request.environ.get("QUERY_STRING", "").split("&")
            if pair and unquote_plus(pair.partition("=")[0]) != "cursor"]
    return own_url("&".join([*kept, f"cursor={cursor}"]))


def after_of(cursor: str | None, query_fp: Callable[[], str],
             shape: tuple[type, ...]) -> tuple[tuple | None, str | None]:
    """The keyset a request's ``cursor`` continues after and the dataset version it was
    issued for; ``(None, None)`` on a first page. ``query_fp`` makes the query's
    fingerprint; a cursor of another query or shape is a 400."""
    if not cursor:
        return None, None
    return decode(cursor, query_fp(), shape)


def page_response(page: Page, query_fp: Callable[[], str], links: Sequence[dict] = (),
                  matched: int | None = None) -> Response:
    """The FeatureCollection of a page: its ``next`` cursor and link when there is more
    (bound to the query and to the page's dataset version), ``links`` after self, and
    ``numberMatched`` when given."""
    cursor = link = None
    if page.next_after is not None:
        cursor = encode(page.next_after, page.version or "", query_fp())
        link = next_url(cursor)
    return geojson_response(collection(page.hits, own_url(), link, cursor, links, matched),
                            page.version)
