"""An HTTP client for geosearch, for services in other processes.

>>> from geosearch.client import Client
>>> client = Client("http://127.0.0.1:8000")          # doctest: +SKIP
>>> for hit in client.radius(52.52, 13.405, 2000, amenities=["wifi"]):  # doctest: +SKIP
...     print(hit.space.name, round(hit.distance_m))

Search methods that page (radius, polygon, bbox, spaces) return iterators that follow the
``next`` cursor for the caller. Problem responses become typed exceptions; a 503 (and a
connection failure of a GET) is retried with back-off, honouring ``Retry-After``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import quote

import requests

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
    timeout : seconds for each request.
    retries : how many times a 503 or a failed connection is tried again.
    backoff : seconds before the first retry; doubles each time (Retry-After wins,
        up to ``max_wait``).
    session : a ``requests.Session`` to reuse (default: a new one).
    """

    def __init__(self, base_url: str, timeout: float = 10.0, retries: int = 3,
                 backoff: float = 0.5, max_wait: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.backoff, self.max_wait = (timeout, retries, backoff,
                                                                   max_wait)
        self.session = session or requests.Session()

    # -- transport ----------------------------------------------------------------------

    def _request(self, method: str, path: str, params: dict, body: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        wait = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.session.request(
                    method, url, params=params, timeout=self.timeout,
                    data=None if body is None else json.dumps(body),
                    headers=None if body is None else {"Content-Type": "application/json"})
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
            return self._decode(response)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _decode(response: requests.Response) -> dict:
        if response.ok:
            return response.json()
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        kind = _ERRORS.get(response.status_code, GeosearchError)
        raise kind(response.status_code, problem.get("title", response.reason),
                   problem.get("detail", response.text[:200]), problem.get("errors"))

    def _pages(self, method: str, path: str, params: dict,
               body: dict | None = None) -> Iterator[Hit]:
        params = dict(params)
        while True:
            page = self._request(method, path, params, body)
            yield from (_hit(f) for f in page["features"])
            if "next" not in page:
                return
            params["cursor"] = page["next"]

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
