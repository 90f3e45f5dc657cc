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


def _filter_sql(f: Filters, params: dict) -> str:
    """WHERE fragments for the filters (fixed SQL text; values go to ``params``)."""
    parts = ["status = 'active'"]
    if f.all_amenities:
        parts.append("amenities @> CAST(:all_amenities AS text[])")
        params["all_amenities"] = sorted(a.value for a in f.all_amenities)
    if f.any_amenities:
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

    def _versioned(self, sql: str, params: dict) -> tuple[str, list[RowMapping]]:
        """Rows of ``sql`` with the dataset version read in the same statement."""
        rows = self._run(
            f"WITH v AS (SELECT version FROM dataset_state) "
            f"SELECT q.*, (SELECT version FROM v) AS _version FROM ({sql}) q",
            params,
        )
        return (rows[0]["_version"] if rows else self.dataset_version()), rows

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
        params = {
            "lat": query.origin.lat,
            "lon": query.origin.lon,
            "r": query.radius_m,
            "r_index": query.radius_m + DWITHIN_MARGIN_M,
            "n": query.limit + 1,
        }
        where = _filter_sql(query.filters, params)
        inner = (
            f"SELECT {SPACE_COLUMNS}, ST_Distance(geog, {ORIGIN}) AS d FROM spaces "
            f"WHERE {where} AND ST_DWithin(geog, {ORIGIN}, :r_index)"
        )
        return self._distance_page(inner, "d <= :r", params, query.limit, query.after)

    def nearest(self, query: NearestQuery) -> list[Hit]:
        """KNN bounds the k-th distance; every space within the bound is then ranked."""
        params = {
            "lat": query.origin.lat,
            "lon": query.origin.lon,
            "k": query.k,
            "margin": DWITHIN_MARGIN_M,
        }
        where = _filter_sql(query.filters, params)
        cap = ""
        if query.max_distance_m is not None:
            params["max_d"] = query.max_distance_m
            cap = "AND d <= :max_d"
        sql = (
            f"WITH knn AS (SELECT ST_Distance(geog, {ORIGIN}) AS d FROM spaces WHERE {where} "
            f"ORDER BY geog <-> {ORIGIN} LIMIT :k), "
            f"bound AS (SELECT max(d) AS d FROM knn) "
            f"SELECT * FROM (SELECT {SPACE_COLUMNS}, ST_Distance(geog, {ORIGIN}) AS d "
            f"FROM spaces WHERE {where} AND ST_DWithin(geog, {ORIGIN}, "
            f"(SELECT d FROM bound) + :margin)) s WHERE d <= (SELECT d FROM bound) {cap} "
            f"ORDER BY d, id LIMIT :k"
        )
        return [Hit(_space(r), float(r["d"])) for r in self._run(sql, params)]

    def polygon(self, query: PolygonQuery) -> Page:
        """``ST_Covers`` on geometry; by id, or by distance from the origin."""
        params: dict = {"area": shapely.to_wkb(query.area), "n": query.limit + 1}
        where = _filter_sql(query.filters, params) + f" AND ST_Covers({AREA}, geom)"
        if query.origin is None:
            return self._id_page(where, params, query.limit, query.after)
        params.update(lat=query.origin.lat, lon=query.origin.lon)
        inner = (
            f"SELECT {SPACE_COLUMNS}, ST_Distance(geog, {ORIGIN}) AS d FROM spaces WHERE {where}"
        )
        return self._distance_page(inner, "TRUE", params, query.limit, query.after)

    def list(self, query: ListQuery) -> Page:
        """Every active space that passes the filters, by id."""
        params: dict = {"n": query.limit + 1}
        return self._id_page(_filter_sql(query.filters, params), params, query.limit, query.after)

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

    def _distance_page(
        self, inner: str, keep: str, params: dict, limit: int, after: tuple | None
    ) -> Page:
        keyset = ""
        if after is not None:
            params.update(d0=float(after[0]), id0=str(after[1]))
            keyset = "AND (d > :d0 OR (d = :d0 AND id > :id0))"
        sql = f"SELECT * FROM ({inner}) s WHERE {keep} {keyset} ORDER BY d, id LIMIT :n"
        version, rows = self._versioned(sql, params)
        hits = [Hit(_space(r), float(r["d"])) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(hits, (hits[-1].distance_m, hits[-1].space.id) if more else None, version)

    def _id_page(self, where: str, params: dict, limit: int, after: tuple | None) -> Page:
        if after is not None:
            params["id0"] = str(after[-1])
            where += " AND id > :id0"
        sql = f"SELECT {SPACE_COLUMNS} FROM spaces WHERE {where} ORDER BY id LIMIT :n"
        version, rows = self._versioned(sql, params)
        hits = [Hit(_space(r)) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(hits, (hits[-1].space.id,) if more else None, version)
