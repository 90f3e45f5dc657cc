"""The library API: open a snapshot or a database, ask questions, get typed hits; over a
database, write spaces and read the change feed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
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
from geosearch.revisions import (
    Change,
    ChangePage,
    Revised,
    change_of,
    checked_revision,
    follow,
    space_of,
)
from geosearch.settings import Settings
from geosearch.text import query_terms

if TYPE_CHECKING:
    from geosearch.backends.postgis import PostgisBackend
    from geosearch.writes import IfMatch, LiveStore, Written


class ReadOnly(RuntimeError):  # noqa: N818 - a state, as BackendUnavailable is
    """A write (or a revision, or the change feed) asked of a snapshot: they need a
    PostGIS database."""


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

    Over a PostGIS database it also writes, one space at a time, as its ``actor`` (the
    name the change feed records each write under): :meth:`create`, :meth:`replace`,
    :meth:`patch` and :meth:`close_space`, each against a revision (:meth:`get_revised`)
    so that no update is lost; and it reads the change feed (:meth:`changes`,
    :meth:`follow`). Over a snapshot these raise :class:`ReadOnly`.

    Examples
    --------
    >>> from geosearch import Geosearch
    >>> gs = Geosearch.open(snapshot="var/snapshot")               # doctest: +SKIP
    >>> [h.space.id for h in gs.nearest(52.52, 13.405, k=3, amenities=["wifi"])]
    ... # doctest: +SKIP
    ['sd-de-00003', 'sd-de-00125', 'sd-de-00220']
    """

    def __init__(self, backend: Backend, actor: str | None = None) -> None:
        self.backend = backend
        self.actor = None if actor is None else _checked_actor(actor)
        self._live: LiveStore | None = None
        self._opening = threading.Lock()

    @classmethod
    def open(cls, snapshot: str | Path | None = None, database_url: str | None = None, *,
             actor: str | None = None) -> Geosearch:
        """Open a snapshot file or folder (``geosearch ingest --snapshot``) or a PostGIS
        database (``geosearch ingest --database``). ``actor``: who this process writes
        as, named in the change feed with each write (as a key's name is; writes need
        one)."""
        if (snapshot is None) == (database_url is None):
            raise ValueError("give exactly one of snapshot or database_url")
        if snapshot is not None:
            from geosearch.backends.memory import MemoryBackend

            return cls(MemoryBackend.from_snapshot(snapshot), actor)
        from geosearch.backends.postgis import PostgisBackend

        return cls(PostgisBackend.from_settings(Settings(database_url=database_url)), actor)

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

    # -- over a database: revisions, writes and the change feed --------------------------

    def _database(self) -> PostgisBackend:
        """The PostGIS backend; ReadOnly over a snapshot."""
        from geosearch.backends.postgis import PostgisBackend

        if not isinstance(self.backend, PostgisBackend):
            raise ReadOnly("this Geosearch reads a snapshot: writes, revisions and the "
                           "change feed need a PostGIS database (Geosearch.open("
                           "database_url=..., actor=...))")
        return self.backend

    def _store(self) -> LiveStore:
        """The database's writes and change feed, opened at the first use."""
        from geosearch.writes import LiveStore

        backend = self._database()
        with self._opening:
            if self._live is None:
                self._live = LiveStore(backend)
            return self._live

    def _writer(self) -> tuple[LiveStore, str]:
        """The database's writes and the actor they are made as (none: ValueError)."""
        self._database()
        if self.actor is None:
            raise ValueError("a write names who made it: open with an actor "
                             "(Geosearch.open(database_url=..., actor='crm-sync'))")
        return self._store(), self.actor

    def get_revised(self, space_id: str) -> Revised | None:
        """One active space and its revision (what a write names), read on the primary;
        None when there is none."""
        found = self._store().get(space_id)
        return None if found is None else Revised(space_of(orjson.loads(found[0])), found[1])

    def create(self, doc: dict) -> Revised:
        """Create a space from a GeoJSON Feature (a Point and the space's properties) or
        its properties alone (then geocoded as a feed row is); an ``id`` is made when it
        has none. Raises :class:`geosearch.livespace.Invalid` (``errors``: each bad field's
        JSON Pointer and what is valid) and :class:`geosearch.writes.Conflict`
        (``existing``: the id taken, or the active space it repeats)."""
        live, actor = self._writer()
        return _revised(live.create(doc, actor))

    def replace(self, space_id: str, doc: dict, *, revision: int | None = None) -> Revised:
        """Replace the space by ``doc`` (as for :meth:`create`; the same id, if any).
        ``revision``: the one the space must be at (:class:`geosearch.writes.Stale`, whose
        ``revision`` is the current one, when it is not); None writes over whatever it is
        at. :class:`geosearch.writes.NotFound` when no active space has the id."""
        live, actor = self._writer()
        return _revised(live.replace(space_id, doc, _if_match(revision), actor))

    def patch(self, space_id: str, merge_patch: dict, *, revision: int | None = None
              ) -> Revised:
        """Change the space by a JSON Merge Patch (RFC 7396) of its Feature:
        ``{"properties": {"capacity": 12, "price_day": None}}`` sets one field and empties
        another. ``revision`` as for :meth:`replace`."""
        live, actor = self._writer()
        return _revised(live.patch(space_id, merge_patch, _if_match(revision), actor))

    def close_space(self, space_id: str, *, revision: int | None = None) -> int:
        """Close the space: it leaves every read, its history stays; its last revision.
        ``revision`` as for :meth:`replace`."""
        live, actor = self._writer()
        return live.close_space(space_id, _if_match(revision), actor).revision

    def changes(self, since: int = 0, limit: int = 100, wait: float = 0) -> ChangePage:
        """The change feed's entries after ``since`` (at most ``limit``) and the
        ``next_since`` to ask from; when there is none yet, waiting up to ``wait`` seconds
        for the next commit."""
        from geosearch.changes import MAX_LIMIT as MAX_ENTRIES

        if since < 0 or not 1 <= limit <= MAX_ENTRIES:
            raise ValueError(f"since must be at least 0, limit in 1..{MAX_ENTRIES}")
        entries = self._store().feed(since, limit, wait)
        return ChangePage(tuple(change_of(orjson.loads(e.json())) for e in entries),
                          entries[-1].seq if entries else since)

    def follow(self, since: int = 0, *, limit: int = 100, wait: float = 25) -> Iterator[Change]:
        """Every entry after ``since`` as it is committed, for ever (break out when done):
        :meth:`changes` asked again from each ``next_since``, waiting ``wait`` s each."""
        return follow(self.changes, since, limit, wait)

    def close(self) -> None:
        """Release the backend's resources (and the writes' connections)."""
        with self._opening:
            if self._live is not None:
                self._live.close()
                self._live = None
        self.backend.close()


def _checked_actor(actor: str) -> str:
    """``actor``, when it is named as a key is (the feed's actors are one kind of name)."""
    from geosearch.keys import _NAME

    if not isinstance(actor, str) or not _NAME.fullmatch(actor):
        raise ValueError("actor must be named as an API key is: 1 to 64 letters, digits "
                         "and ._- starting with a letter or digit")
    return actor


def _if_match(revision: int | None) -> IfMatch:
    """A write's precondition: the space is at ``revision`` (at any, when None)."""
    from geosearch.writes import IfMatch

    if revision is None:
        return IfMatch(any=True)
    return IfMatch(frozenset({checked_revision(revision)}))


def _revised(written: Written) -> Revised:
    return Revised(space_of(orjson.loads(written.feature)), written.revision)
