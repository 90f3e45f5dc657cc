"""An HTTP client for geosearch, for services in other processes.

>>> from geosearch.client import Client
>>> client = Client("http://127.0.0.1:8000")          # doctest: +SKIP
>>> for hit in client.radius(52.52, 13.405, 2000, amenities=["wifi"]):  # doctest: +SKIP
...     print(hit.space.name, round(hit.distance_m))

Search methods that page (radius, polygon, bbox, spaces) return iterators that follow the
``next`` cursor for the caller. Problem responses become typed exceptions; a 503 (and a
connection failure of a GET) is retried with back-off, honouring ``Retry-After``.

The client can be handed a key (``client.session.headers["X-Api-Key"] = ...``): redirects
are followed only within the origin of ``base_url``, so neither the session's headers nor a
body ever go to another host or port; ``timeout`` bounds each request as a whole (connect,
redirects, body); a body past ``max_response_bytes`` is not read further; a walk of pages
ends with :class:`EndlessPages` at a repeated cursor or past ``max_pages``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

import requests

from geosearch.client_watchdog import watched
from geosearch.model import FEATURE_PROPERTIES, Hit, Space


class GeoInterface(Protocol):
    """A geometry that describes itself as GeoJSON (shapely, geopandas, pygeoif...)."""

    @property
    def __geo_interface__(self) -> dict: ...


class GeosearchError(Exception):
    """A problem+json answer: ``status``, ``title``, ``detail`` and the named ``errors``."""

    def __init__(self, status: int, title: str, detail: str,
                 errors: list[dict] | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.errors = errors or []


class BadRequest(GeosearchError):
    """400: a parameter is invalid; ``errors`` names each with what is valid."""


class NotFound(GeosearchError):
    """404: no such space or route."""


class Gone(GeosearchError):
    """410: the dataset changed while paging; start again."""


class PayloadTooLarge(GeosearchError):
    """413: the polygon body is too large."""


class Unavailable(GeosearchError):
    """503: the service has no dataset or its database is down (after the retries)."""


_ERRORS = {400: BadRequest, 404: NotFound, 410: Gone, 413: PayloadTooLarge, 503: Unavailable}


class UnsafeResponse(requests.RequestException):
    """The service answered something the client will not follow or read on; nothing was
    sent elsewhere and nothing more was read."""


class CrossOriginRedirect(UnsafeResponse):
    """A redirect to another scheme, host or port than ``base_url``'s; ``location`` is where
    it pointed. Following it would hand the session's headers (a key) and the body to it."""

    def __init__(self, location: str, source: str) -> None:
        super().__init__(f"{source} redirected to another origin, not followed: {location}")
        self.location = location


class ResponseTooLarge(UnsafeResponse):
    """A body longer than ``max_response_bytes`` (declared, or as read)."""


class EndlessPages(UnsafeResponse):
    """A walk of pages that sent a cursor it had sent before, or went past ``max_pages``."""


class DeadlineExceeded(requests.Timeout):
    """A request (connect, redirects and body together) outlasted the client's ``timeout``."""


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHUNK_BYTES = 64 * 1024


def _origin(url: str) -> tuple[str, str | None, int | None]:
    """Scheme, host and port of ``url`` (the scheme's port when none is written)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # not a number: matches no origin
        port = -1
    return scheme, parts.hostname, port


def _time_left(deadline: float, url: str) -> float:
    """Seconds until ``deadline``, the timeout of the next connect or read."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded(f"{url}: the request's deadline passed")
    return left


def _csv(values: Iterable[str] | str | None) -> str | None:
    if values is None:
        return None
    return values if isinstance(values, str) else ",".join(values)


def _filters(amenities=None, amenities_any=None, country=None, city=None,
             min_capacity=None, q=None) -> dict[str, Any]:
    raw = {"amenities": _csv(amenities), "amenities_any": _csv(amenities_any),
           "country": _csv(country), "city": city, "min_capacity": min_capacity, "q": q}
    return {k: v for k, v in raw.items() if v is not None}


def _hit(feature: dict) -> Hit:
    props = dict(feature["properties"])
    lon, lat = feature["geometry"]["coordinates"][:2]
    distance = props.pop("distance_m", None)
    space = Space(id=feature["id"], lat=lat, lon=lon, status="active",
                  amenities=tuple(props.pop("amenities")),
                  **{k: props[k] for k in FEATURE_PROPERTIES if k != "amenities"})
    return Hit(space, distance)


class Client:
    """A geosearch service at ``base_url`` (e.g. ``http://127.0.0.1:8000``).

    Parameters
    ----------
    timeout : seconds for each request in all: connecting, following redirects and reading
        the body (each retry has its own). Past it: :class:`DeadlineExceeded`, a
        ``requests.Timeout``.
    retries : how many times a 503 or a failed connection is tried again.
    backoff : seconds before the first retry; doubles each time (Retry-After wins,
        up to ``max_wait``).
    session : a ``requests.Session`` to reuse (default: a new one). Redirects are followed
        only to ``base_url``'s own scheme, host and port (up to the session's
        ``max_redirects``); any other is :class:`CrossOriginRedirect`.
    max_pages : the most pages one walk (radius, polygon, bbox, spaces) reads; a longer walk,
        or one whose cursor repeats, ends with :class:`EndlessPages`.
    max_response_bytes : the longest body read (decoded); a longer one is
        :class:`ResponseTooLarge`.
    """

    def __init__(self, base_url: str, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, max_wait: float = 10.0,
                 session: requests.Session | None = None, *, max_pages: int = 10_000,
                 max_response_bytes: int = 16 * 1024 * 1024) -> None:
        if timeout <= 0 or max_pages < 1 or max_response_bytes < 1:
            raise ValueError("timeout, max_pages and max_response_bytes must be positive")
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.backoff, self.max_wait = (timeout, retries, backoff,
                                                                   max_wait)
        self.max_pages, self.max_response_bytes = max_pages, max_response_bytes
        self.session = session or requests.Session()

    # -- transport ----------------------------------------------------------------------

    def _request(self, method: str, path: str, params: dict, body: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        wait = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response, content = self._exchange(method, url, params, body)
            except (requests.ConnectionError, requests.Timeout):
                if last or method != "GET":
                    raise
                time.sleep(wait)
                wait *= 2
                continue
            if response.status_code == 503 and not last:
                retry_after = response.headers.get("Retry-After", "")
                time.sleep(min(self.max_wait, float(retry_after)) if retry_after.isdigit()
                           else wait)
                wait *= 2
                continue
            return self._decode(response, content)
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, method: str, url: str, params: dict | None,
                  body: dict | None) -> tuple[requests.Response, bytes]:
        """One request and its body, all within ``timeout``; a redirect is followed only
        within the origin it came from (303, and 301/302 of a POST, become a GET without
        the body, as in requests)."""
        deadline = time.monotonic() + self.timeout
        data = None if body is None else json.dumps(body)
        headers = None if body is None else {"Content-Type": "application/json"}
        for _ in range(self.session.max_redirects + 1):
            response = self.session.request(
                method, url, params=params, data=data, headers=headers, stream=True,
                allow_redirects=False, timeout=_time_left(deadline, url))
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or location is None:
                return response, self._read(response, deadline)
            response.close()
            target = urljoin(response.url, location)
            if _origin(target) != _origin(response.url):
                raise CrossOriginRedirect(target, response.url)
            if response.status_code == 303 or (method == "POST" and response.status_code < 303):
                method, data, headers = "GET", None, None
            url, params = target, None
        raise requests.TooManyRedirects(f"more than {self.session.max_redirects} redirects "
                                        f"(last to {url})")

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        """The body, unless it passes ``max_response_bytes`` or the deadline."""
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            response.close()
            raise ResponseTooLarge(f"{response.url} declared a body of {declared} bytes; "
                                   f"max_response_bytes is {cap}")
        chunks, size = [], 0
        late = f"{response.url}: the body was still arriving at the deadline ({self.timeout} s)"
        try:
            with watched(response.raw, deadline) as watch:
                try:
                    for chunk in response.iter_content(_CHUNK_BYTES):
                        size += len(chunk)
                        if size > cap:
                            raise ResponseTooLarge(f"{response.url} sent more than {cap} bytes "
                                                   "(max_response_bytes); the rest was not read")
                        chunks.append(chunk)
                except requests.RequestException as exc:
                    if watch.cut:
                        raise DeadlineExceeded(late) from exc
                    raise
        finally:
            response.close()
        if watch.cut:  # the body ended early because the deadline shut the socket
            raise DeadlineExceeded(late)
        return b"".join(chunks)

    @staticmethod
    def _decode(response: requests.Response, content: bytes) -> dict:
        if response.ok:
            return json.loads(content)
        try:
            problem = json.loads(content)
        except ValueError:
            problem = {}
        kind = _ERRORS.get(response.status_code, GeosearchError)
        raise kind(response.status_code, problem.get("title", response.reason),
                   problem.get("detail", content[:200].decode("utf-8", "replace")),
                   problem.get("errors"))

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
            path = f"/v1/spaces/{quote(space_id, safe='')}"
            return _hit(self._request("GET", path, {})).space
        except NotFound:
            return None

    def amenities(self) -> dict[str, int]:
        """The amenity vocabulary with the number of spaces that have each."""
        body = self._request("GET", "/v1/amenities", {})
        return {a["name"]: a["count"] for a in body["amenities"]}

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()
