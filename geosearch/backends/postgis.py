"""``PostgisBackend``: the same questions answered by PostGIS through SQLAlchemy.

Radius uses ``ST_DWithin`` on geography (GiST) and then the exact spheroid distance;
nearest uses the KNN operator ``<->`` to bound the k-th distance and ``ST_DWithin`` to
collect every space within it, so that filters apply before k and the order is by exact
distance; areas use ``ST_Covers`` on the planar geometry column (edges are straight in
lon/lat, as the contract says). Every value is a bound parameter.
"""

from __future__ import annotations

import pandas as pd
import shapely
import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from geosearch.backends.base import BackendUnavailable, NoDataset
from geosearch.model import (
    Amenity,
    Filters,
    Hit,
    ListQuery,
    NearestQuery,
    Page,
    PolygonQuery,
    RadiusQuery,
    Space,
    amenity_mask,
)
from geosearch.settings import Settings
from geosearch.store import make_engine

SPACE_COLUMNS = (
    "id, name, address, city, postcode, country, lat, lon, amenities, capacity, "
    "price_day, currency, status, h3_r7, h3_r8, h3_r9, geocode_precision"
)
ORIGIN = "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography"
AREA = "ST_GeomFromWKB(:area, 4326)"
# ST_DWithin's own spheroid test may differ from ST_Distance in the last bits: widen the
# indexed pre-filter by a hair and decide with ST_Distance.
DWITHIN_MARGIN_M = 0.01


def _filter_sql(f: Filters, params: dict, for_knn: bool = False) -> str:
    """WHERE fragments for the filters (fixed SQL text; values go to ``params``).

    Amenities are tested on the ``text[]`` column (GIN-indexable), or, ``for_knn``, on
    the bitmask, which no index serves: the planner then keeps the distance-ordered GiST
    scan and filters as it goes, instead of sorting every space that has the amenity.
    """
    parts = ["status = 'active'"]
    if f.all_amenities:
        if for_knn:
            parts.append("amenity_mask & :all_mask = :all_mask")
            params["all_mask"] = amenity_mask(f.all_amenities)
        else:
            parts.append("amenities @> CAST(:all_amenities AS text[])")
            params["all_amenities"] = sorted(a.value for a in f.all_amenities)
    if f.any_amenities:
        if for_knn:
            parts.append("amenity_mask & :any_mask <> 0")
            params["any_mask"] = amenity_mask(f.any_amenities)
        else:
            parts.append("amenities && CAST(:any_amenities AS text[])")
            params["any_amenities"] = sorted(a.value for a in f.any_amenities)
    if f.countries:
        parts.append("country = ANY(CAST(:countries AS text[]))")
        params["countries"] = sorted(f.countries)
    if f.city_key is not None:
        parts.append("city_key = :city_key")
        params["city_key"] = f.city_key
    if f.min_capacity is not None:
        parts.append("capacity >= :min_capacity")
        params["min_capacity"] = f.min_capacity
    return " AND ".join(parts)


def _space(row: RowMapping) -> Space:
    values = {k: row[k] for k in SPACE_COLUMNS.split(", ")}
    values["amenities"] = tuple(sorted(values["amenities"], key=[a.value for a in Amenity].index))
    return Space(**values)


class PostgisBackend:
    """Answers from the ``spaces`` table of a PostGIS database.

    Connection failures and timeouts surface as :class:`BackendUnavailable` (HTTP 503);
    the pool pre-pings, so the backend recovers by itself when the database returns.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgisBackend:
        """A backend on ``settings.database_url`` with its pool and statement timeout."""
        return cls(make_engine(settings))

    def _run(self, sql: str, params: dict) -> list[RowMapping]:
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(sa.text(sql), params).mappings())
        except DBAPIError as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise BackendUnavailable(type(exc.orig).__name__) from exc
            raise

    # -- the protocol -------------------------------------------------------------------

    def dataset_version(self) -> str:
        """The version in ``dataset_state``; NoDataset when nothing was loaded."""
        try:
            rows = self._run("SELECT version FROM dataset_state", {})
        except ProgrammingError as exc:
            raise NoDataset("the schema is missing: run geosearch ingest --database") from exc
        if not rows:
            raise NoDataset("no dataset was loaded into this database")
        return rows[0]["version"]

    def radius(self, query: RadiusQuery) -> Page:
        """``ST_DWithin`` pre-filter, exact ``ST_Distance`` decision and order."""
        return self._page(query, statement(query), distances=True)

    def nearest(self, query: NearestQuery) -> list[Hit]:
        """KNN bounds the k-th distance; every space within the bound is then ranked."""
        sql, params = statement(query)
        return [Hit(_space(r), float(r["d"])) for r in self._run(sql, params)]

    def polygon(self, query: PolygonQuery) -> Page:
        """``ST_Covers`` on geometry; by id, or by distance from the origin."""
        return self._page(query, statement(query), distances=query.origin is not None)

    def list(self, query: ListQuery) -> Page:
        """Every active space that passes the filters, by id."""
        return self._page(query, statement(query), distances=False)

    def explain(self, query: Query) -> str:
        """PostgreSQL's plan for a query object (``EXPLAIN``), e.g. to check index use."""
        sql, params = statement(query)
        return "\n".join(r["QUERY PLAN"] for r in self._run(f"EXPLAIN {sql}", params))

    def get(self, space_id: str) -> Space | None:
        """One active space by id."""
        rows = self._run(
            f"SELECT {SPACE_COLUMNS} FROM spaces WHERE id = :id AND status = 'active'",
            {"id": space_id},
        )
        return _space(rows[0]) if rows else None

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity."""
        rows = self._run(
            "SELECT a, count(*) AS n FROM spaces, unnest(amenities) a "
            "WHERE status = 'active' GROUP BY a",
            {},
        )
        counts = {r["a"]: int(r["n"]) for r in rows}
        return {a.value: counts.get(a.value, 0) for a in Amenity}

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: id, lat, lon, country, city, amenities."""
        rows = self._run(
            "SELECT id, lat, lon, country, city, amenities FROM spaces "
            "WHERE status = 'active' ORDER BY id",
            {},
        )
        return pd.DataFrame(rows, columns=["id", "lat", "lon", "country", "city", "amenities"])

    def close(self) -> None:
        """Close the pool."""
        self.engine.dispose()

    # -- paging -------------------------------------------------------------------------

    def _page(self, query: Query, stmt: tuple[str, dict], distances: bool) -> Page:
        """Run a paged statement (it fetches limit + 1 rows to know whether more exist),
        reading the dataset version in the same statement."""
        sql, params = stmt
        rows = self._run(f"WITH v AS (SELECT version FROM dataset_state) "
                         f"SELECT q.*, (SELECT version FROM v) AS _version FROM ({sql}) q",
                         params)
        version = rows[0]["_version"] if rows else self.dataset_version()
        limit = query.limit
        hits = [Hit(_space(r), float(r["d"]) if distances else None) for r in rows[:limit]]
        if len(rows) <= limit:
            return Page(hits, None, version)
        last = hits[-1]
        return Page(hits, (last.distance_m, last.space.id) if distances else (last.space.id,),
                    version)


Query = RadiusQuery | NearestQuery | PolygonQuery | ListQuery


def _keyset(after: tuple | None, params: dict, distances: bool) -> str:
    """The condition "after this (distance, id) or id" of keyset paging."""
    if after is None:
        return ""
    if distances:
        params.update(d0=float(after[0]), id0=str(after[1]))
        return "AND (d > :d0 OR (d = :d0 AND id > :id0))"
    params["id0"] = str(after[-1])
    return "AND id > :id0"


def statement(query: Query) -> tuple[str, dict]:
    """The SQL and bound parameters that answer a query object.

    The SQL text is made of fixed fragments only; every value is a parameter.
    """
    params: dict = {}
    if isinstance(query, NearestQuery):
        knn_where = _filter_sql(query.filters, params, for_knn=True)
        params.update(lat=query.origin.lat, lon=query.origin.lon, k=query.k,
                      margin=DWITHIN_MARGIN_M)
        cap = ""
        if query.max_distance_m is not None:
            params["max_d"] = query.max_distance_m
            cap = "AND d <= :max_d"
        return (f"WITH knn AS (SELECT ST_Distance(geog, {ORIGIN}) AS d FROM spaces "
                f"WHERE {knn_where} ORDER BY geog <-> {ORIGIN} LIMIT :k), "
                f"bound AS (SELECT max(d) AS d FROM knn) "
                f"SELECT * FROM (SELECT {SPACE_COLUMNS}, ST_Distance(geog, {ORIGIN}) AS d "
                f"FROM spaces WHERE {knn_where} AND ST_DWithin(geog, {ORIGIN}, "
                f"(SELECT d FROM bound) + :margin)) s WHERE d <= (SELECT d FROM bound) {cap} "
                f"ORDER BY d, id LIMIT :k"), params
    where = _filter_sql(query.filters, params)
    params["n"] = query.limit + 1
    if isinstance(query, RadiusQuery):
        params.update(lat=query.origin.lat, lon=query.origin.lon, r=query.radius_m,
                      r_index=query.radius_m + DWITHIN_MARGIN_M)
        where += f" AND ST_DWithin(geog, {ORIGIN}, :r_index)"
        keep = "d <= :r"
    elif isinstance(query, PolygonQuery):
        params["area"] = shapely.to_wkb(query.area)
        where += f" AND ST_Covers({AREA}, geom)"
        keep = "TRUE"
        if query.origin is not None:
            params.update(lat=query.origin.lat, lon=query.origin.lon)
        else:
            return _by_id(where, params, query.after)
    else:
        return _by_id(where, params, query.after)
    keyset = _keyset(query.after, params, distances=True)
    return (f"SELECT * FROM (SELECT {SPACE_COLUMNS}, ST_Distance(geog, {ORIGIN}) AS d "
            f"FROM spaces WHERE {where}) s WHERE {keep} {keyset} ORDER BY d, id LIMIT :n"), params


def _by_id(where: str, params: dict, after: tuple | None) -> tuple[str, dict]:
    keyset = _keyset(after, params, distances=False)
    return (f"SELECT {SPACE_COLUMNS} FROM spaces WHERE {where} {keyset} "
            f"ORDER BY id LIMIT :n"), params
