"""An HTTP client for geosearch, for services in other processes.

>>> from geosearch.client import Client
>>> client = Client("http://127.0.0.1:8000")          # doctest: +SKIP
>>> for hit in client.radius(52.52, 13.405, 2000, amenities=["wifi"]):  # doctest: +SKIP
...     print(hit.space.name, round(hit.distance_m))

Search methods that page (radius, polygon, bbox, spaces) return iterators that follow the
``next`` cursor for the caller. Problem responses become typed exceptions
(:mod:`geosearch.client_errors`). Over a PostGIS service, a client made with a ``key``
writes spaces (create, replace, patch, close_space: each returns the space and its
revision, and a write against a stale revision is :class:`PreconditionFailed` carrying
the current one) and reads the change feed (changes, follow).

The client is safe to hand a key: the key goes as ``Authorization: Bearer`` and is in no
``repr``, no exception text (a service that echoes it back has it blanked out); redirects
are followed only within the origin of ``base_url``, so neither the key nor a body ever
goes to another host or port; ``timeout`` bounds each request as a whole (connect,
redirects, body); a body past ``max_response_bytes`` is not read further; a walk of pages
ends with :class:`EndlessPages` at a repeated cursor or past ``max_pages``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import quote

import requests

from geosearch import revisions
from geosearch.client_errors import (
    BadRequest,
    Conflict,
    CrossOriginRedirect,
    DeadlineExceeded,
    EndlessPages,
    Forbidden,
    GeosearchError,
    Gone,
    MethodNotAllowed,
    NoRevision,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ResponseTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UnsafeResponse,
)
from geosearch.client_transport import Transport
from geosearch.client_transport import _origin as _origin  # re-exported: tests read it
from geosearch.model import Hit, Space
from geosearch.revisions import Change, ChangePage, Revised, checked_revision, space_of

__all__ = [
    "BadRequest", "Change", "ChangePage", "Client", "Conflict", "CrossOriginRedirect",
    "DeadlineExceeded", "EndlessPages", "Forbidden", "GeoInterface", "GeosearchError", "Gone",
    "MethodNotAllowed", "NoRevision", "NotFound", "PayloadTooLarge", "PreconditionFailed",
    "ResponseTooLarge", "Revised", "TooManyRequests", "Unauthorized", "Unavailable",
    "Unprocessable", "UnsafeResponse"]


class GeoInterface(Protocol):
    """A geometry that describes itself as GeoJSON (shapely, geopandas, pygeoif...)."""

    @property
    def __geo_interface__(self) -> dict: ...


# The ETag of a space: its revision, as a strong entity tag
_ETAG = re.compile(r'\s*"(\d{1,18})"\s*')
MERGE_PATCH = "application/merge-patch+json"


def _csv(values: Iterable[str] | str | None) -> str | None:
    if values is None:
        return None
    return values if isinstance(values, str) else ",".join(values)


def _filters(amenities=None, amenities_any=None, country=None, city=None,
             min_capacity=None, q=None) -> dict[str, Any]:
    raw = {"amenities": _csv(amenities), "amenities_any": _csv(amenities_any),
           "country": _csv(country), "city": city, "min_capacity": min_capacity, "q": q}
    return {k: v for k, v in raw.items() if v is not None}


def _space_path(space_id: str) -> str:
    return f"/v1/spaces/{quote(space_id, safe='')}"


def _if_match(revision: int | None) -> dict[str, str]:
    """A write's precondition: the space is at ``revision`` (at any, when None)."""
    return {"If-Match": "*" if revision is None else f'"{checked_revision(revision)}"'}


def _revision(response: requests.Response) -> int:
    """The revision an answer's ``ETag`` names."""
    found = _ETAG.fullmatch(response.headers.get("ETag", ""))
    if found is None:
        raise NoRevision(f"{response.url} answered without an ETag naming the space's "
                         "revision (a service over a snapshot names none, and takes no "
                         "write)")
    return int(found.group(1))


def _revised(answer: tuple[requests.Response, bytes]) -> Revised:
    """The space an answer holds (a Feature) and the revision of its ETag."""
    response, content = answer
    return Revised(space_of(json.loads(content)), _revision(response))


def _hit(feature: dict) -> Hit:
    return Hit(space_of(feature), feature["properties"].get("distance_m"))


class Client(Transport):
    """A geosearch service at ``base_url`` (e.g. ``http://127.0.0.1:8000``).

    Parameters
    ----------
    timeout : seconds for each request in all: connecting, following redirects and reading
        the body (each retry has its own; a change feed's ``wait`` is added). Past it:
        :class:`DeadlineExceeded`, a ``requests.Timeout``.
    retries : how many times a request is tried again, where that is safe (below).
    backoff : seconds before the first retry; doubles each time (Retry-After wins,
        up to ``max_wait``).
    session : a ``requests.Session`` to reuse (default: a new one). Redirects are followed
        only to ``base_url``'s own scheme, host and port (up to the session's
        ``max_redirects``); any other is :class:`CrossOriginRedirect`.
    max_pages : the most pages one walk (radius, polygon, bbox, spaces) reads; a longer walk,
        or one whose cursor repeats, ends with :class:`EndlessPages`.
    max_response_bytes : the longest body read (decoded); a longer one is
        :class:`ResponseTooLarge`.
    key : an API key (``geosearch keys create``), sent as ``Authorization: Bearer`` with
        every request: writes need the scope ``write``, the change feed ``changes``.

    Retries
    -------
    A request whose connection could not be made at all (refused, unreachable, connecting
    timed out) never reached the service, and is sent again, whatever it is. A read (a
    GET, the polygon search's POST) answered 503 is asked again, and a GET also after a
    timeout or a connection lost on the way. A write is not: one that timed out, lost its
    connection after it was sent or was answered 503 may have been committed, and the
    error is raised. Find out by reading the space (:meth:`get_revised`) or the feed
    before writing again. A write that names a revision is safe to repeat by hand (a
    second one is refused, 412 or 404), and so is a create with an id of your own (a
    second one is a :class:`Conflict` naming it); a create without an id is not.
    """

    def _pages(self, method: str, path: str, params: dict,
               body: dict | None = None) -> Iterator[Hit]:
        params = dict(params)
        seen: set[str] = set()
        for _ in range(self.max_pages):
            page = self._request(method, path, params, body)
            yield from (_hit(f) for f in page["features"])
            if "next" not in page:
                return
            cursor = str(page["next"])
            if cursor in seen:
                raise EndlessPages(f"{path} sent the cursor {cursor!r} a second time, after "
                                   f"{len(seen) + 1} pages")
            seen.add(cursor)
            params["cursor"] = cursor
        raise EndlessPages(f"{path} still had a next page after max_pages={self.max_pages} "
                           "pages (raise max_pages for a longer walk)")

    # -- the questions ------------------------------------------------------------------

    def radius(self, lat: float, lon: float, radius_m: float, *, page_size: int = 100,
               **filters) -> Iterator[Hit]:
        """Every space within ``radius_m``, nearest first (pages followed)."""
        return self._pages("GET", "/v1/spaces/radius", {
            "lat": lat, "lon": lon, "radius_m": radius_m, "limit": page_size,
            **_filters(**filters)})

    def nearest(self, lat: float, lon: float, k: int = 10,
                max_distance_m: float | None = None, **filters) -> list[Hit]:
        """The ``k`` nearest spaces that pass the filters."""
        params = {"lat": lat, "lon": lon, "k": k, **_filters(**filters)}
        if max_distance_m is not None:
            params["max_distance_m"] = max_distance_m
        return [_hit(f) for f in self._request("GET", "/v1/spaces/nearest", params)["features"]]

    def polygon(self, area: dict | GeoInterface, *, origin: tuple[float, float] | None = None,
                page_size: int = 100, **filters) -> Iterator[Hit]:
        """Every space covered by a GeoJSON (Multi)Polygon, or any geometry object with
        ``__geo_interface__`` (shapely's), by id (or by distance from ``origin`` =
        (lat, lon))."""
        body = area if isinstance(area, dict) else area.__geo_interface__
        params: dict = {"limit": page_size, **_filters(**filters)}
        if origin is not None:
            params["lat"], params["lon"] = origin
        return self._pages("POST", "/v1/spaces/polygon", params, json.loads(json.dumps(body)))

    def bbox(self, minlon: float, minlat: float, maxlon: float, maxlat: float, *,
             page_size: int = 100, **filters) -> Iterator[Hit]:
        """Every space in the box (``minlon > maxlon`` crosses the antimeridian), by id."""
        return self._pages("GET", "/v1/spaces/bbox", {
            "bbox": f"{minlon},{minlat},{maxlon},{maxlat}", "limit": page_size,
            **_filters(**filters)})

    def spaces(self, *, page_size: int = 500, **filters) -> Iterator[Hit]:
        """Every space that passes the filters, by id."""
        return self._pages("GET", "/v1/spaces", {"limit": page_size, **_filters(**filters)})

    def get(self, space_id: str) -> Space | None:
        """One space by id, or None."""
        try:
            return _hit(self._request("GET", _space_path(space_id), {})).space
        except NotFound:
            return None

    def get_revised(self, space_id: str) -> Revised | None:
        """One space by id and its revision (what a write names), or None; over a
        snapshot, which names no revision, :class:`NoRevision`."""
        try:
            return _revised(self._send("GET", _space_path(space_id)))
        except NotFound:
            return None

    def amenities(self) -> dict[str, int]:
        """The amenity vocabulary with the number of spaces that have each."""
        body = self._request("GET", "/v1/amenities", {})
        return {a["name"]: a["count"] for a in body["amenities"]}

    # -- writes (a key with the scope write; a PostGIS service) ----------------------------

    def create(self, doc: dict) -> Revised:
        """Create a space from a GeoJSON Feature (a Point and the space's properties) or
        its properties alone (then geocoded as a feed row is); an ``id`` is made when it has
        none. :class:`Conflict` (``existing_id``) when the id is taken or the space repeats
        an active one; :class:`Unprocessable` naming each bad field."""
        return _revised(self._send("POST", "/v1/spaces", body=doc, write=True))

    def replace(self, space_id: str, doc: dict, *, revision: int | None = None) -> Revised:
        """Replace the space by ``doc`` (as for :meth:`create`; the same id, if any).
        ``revision``: the one the space must be at (:class:`PreconditionFailed`, with
        ``current_revision``, when it is not); None writes over whatever it is at."""
        return _revised(self._send("PUT", _space_path(space_id), body=doc, write=True,
                                   headers=_if_match(revision)))

    def patch(self, space_id: str, merge_patch: dict, *, revision: int | None = None
              ) -> Revised:
        """Change the space by a JSON Merge Patch (RFC 7396) of its Feature:
        ``{"properties": {"capacity": 12, "price_day": None}}`` sets one field and empties
        another. ``revision`` as for :meth:`replace`."""
        return _revised(self._send("PATCH", _space_path(space_id), body=merge_patch,
                                   media_type=MERGE_PATCH, write=True,
                                   headers=_if_match(revision)))

    def close_space(self, space_id: str, *, revision: int | None = None) -> int:
        """Close the space: it leaves every read, its history stays; its last revision.
        ``revision`` as for :meth:`replace`."""
        response, _ = self._send("DELETE", _space_path(space_id), write=True,
                                 headers=_if_match(revision))
        return _revision(response)

    # -- the change feed (a key with the scope changes) --------------------------------

    def changes(self, since: int = 0, limit: int = 100, wait: int = 0) -> ChangePage:
        """The feed's entries after ``since`` (at most ``limit``, up to 1000) and the
        ``next_since`` to ask from; when there is none yet, the service waits up to
        ``wait`` seconds (at most 30) for the next commit."""
        _, content = self._send("GET", "/v1/changes",
                                {"since": since, "limit": limit, "wait": wait}, wait_s=wait)
        return revisions.page_of(json.loads(content))

    def follow(self, since: int = 0, *, limit: int = 100, wait: int = 25) -> Iterator[Change]:
        """Every entry after ``since`` as it is committed, for ever (break out when done):
        :meth:`changes` asked again from each ``next_since``, waiting ``wait`` s each."""
        return revisions.follow(self.changes, since, limit, wait)

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()
