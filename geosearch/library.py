"""The library API: open a snapshot or a database, ask questions, get typed hits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from geosearch.backends.base import Backend
from geosearch.geo import bbox_area
from geosearch.model import (
    MAX_LIMIT,
    Amenity,
    Filters,
    Hit,
    ListQuery,
    NearestQuery,
    Page,
    Point,
    PolygonQuery,
    RadiusQuery,
    Space,
)
from geosearch.settings import Settings
from geosearch.text import query_terms


def make_filters(amenities: Iterable[str] | None = None,
                 amenities_any: Iterable[str] | None = None,
                 country: Iterable[str] | str | None = None, city: str | None = None,
                 min_capacity: int | None = None, q: str | None = None) -> Filters:
    """Filters from plain values; an unknown amenity raises ValueError listing the valid,
    a ``q`` over 200 characters or 10 words one saying so.

    >>> make_filters(amenities=["wifi"], country="de").countries
    frozenset({'DE'})
    >>> make_filters(q="Café MÜNCHEN").text
    ('cafe', 'munchen')
    """
    countries = [country] if isinstance(country, str) else list(country or [])
    return Filters(all_amenities=frozenset(Amenity.parse(a) for a in amenities or []),
                   any_amenities=frozenset(Amenity.parse(a) for a in amenities_any or []),
                   countries=frozenset(c.strip().upper() for c in countries),
                   city=city, min_capacity=min_capacity, text=query_terms(q or ""))


class Geosearch:
    """Search coworking spaces in-process, over any :class:`~geosearch.backends.Backend`.

    Every search returns all matches as a list of :class:`~geosearch.model.Hit`, each
    with its ``space`` and its WGS84 geodesic ``distance_m`` (None without an origin).
    Filters are keyword arguments: ``amenities`` (all of), ``amenities_any``,
    ``country`` (codes), ``city``, ``min_capacity``, ``q`` (text: every word of it is the
    start of a word of the space's name, address or city; accents and case ignored).

    Examples
    --------
    >>> from geosearch import Geosearch
    >>> gs = Geosearch.open(snapshot="var/snapshot")               # doctest: +SKIP
    >>> [h.space.id for h in gs.nearest(52.52, 13.405, k=3, amenities=["wifi"])]
    ... # doctest: +SKIP
    ['sd-de-00003', 'sd-de-00125', 'sd-de-00220']
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def open(cls, snapshot: str | Path | None = None,
             database_url: str | None = None) -> Geosearch:
        """Open a snapshot file or folder (``geosearch ingest --snapshot``) or a PostGIS
        database (``geosearch ingest --database``)."""
        if (snapshot is None) == (database_url is None):
            raise ValueError("give exactly one of snapshot or database_url")
        if snapshot is not None:
            from geosearch.backends.memory import MemoryBackend

            return cls(MemoryBackend.from_snapshot(snapshot))
        from geosearch.backends.postgis import PostgisBackend

        return cls(PostgisBackend.from_settings(Settings(database_url=database_url)))

    def __enter__(self) -> Geosearch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def version(self) -> str:
        """The dataset version."""
        return self.backend.dataset_version()

    @staticmethod
    def _all(fetch: Callable[[tuple | None, str | None], Page]) -> list[Hit]:
        """Every page of a query, all from the dataset version of the first page
        (:class:`~geosearch.backends.base.StaleVersion` when it was replaced meanwhile)."""
        hits: list[Hit] = []
        after = version = None
        while True:
            page = fetch(after, version)
            hits += page.hits
            if page.next_after is None:
                return hits
            after, version = page.next_after, page.version

    def radius(self, lat: float, lon: float, radius_m: float, **filters) -> list[Hit]:
        """Spaces within ``radius_m`` metres (0 < r <= 100 km), nearest first."""
        origin, f = Point(lat, lon), make_filters(**filters)
        return self._all(lambda after, version: self.backend.radius(
            RadiusQuery(origin, radius_m, f, MAX_LIMIT, after, version)))

    def nearest(self, lat: float, lon: float, k: int = 10,
                max_distance_m: float | None = None, **filters) -> list[Hit]:
        """The ``k`` (1..100) nearest spaces that pass the filters."""
        return list(self.backend.nearest(NearestQuery(Point(lat, lon), k, max_distance_m,
                                                      make_filters(**filters))))

    def polygon(self, area: dict | BaseGeometry, origin: tuple[float, float] | None = None,
                **filters) -> list[Hit]:
        """Spaces covered by a (Multi)Polygon, GeoJSON or shapely; by id, or by distance
        from ``origin`` = (lat, lon)."""
        geom = area if isinstance(area, BaseGeometry) else shape(
            area.get("geometry", area) if area.get("type") == "Feature" else area)
        point = None if origin is None else Point(*origin)
        f = make_filters(**filters)
        return self._all(lambda after, version: self.backend.polygon(
            PolygonQuery(geom, f, point, MAX_LIMIT, after, version)))

    def bbox(self, minlon: float, minlat: float, maxlon: float, maxlat: float,
             origin: tuple[float, float] | None = None, **filters) -> list[Hit]:
        """Spaces in a box; ``minlon > maxlon`` crosses the antimeridian."""
        return self.polygon(bbox_area(minlon, minlat, maxlon, maxlat), origin, **filters)

    def spaces(self, **filters) -> list[Hit]:
        """Every space that passes the filters, by id."""
        f = make_filters(**filters)
        return self._all(lambda after, version: self.backend.list(
            ListQuery(f, MAX_LIMIT, after, version)))

    def get(self, space_id: str) -> Space | None:
        """One space by id, or None."""
        return self.backend.get(space_id)

    def close(self) -> None:
        """Release the backend's resources."""
        self.backend.close()
