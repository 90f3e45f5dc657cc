"""``PostgisBackend``: the same questions answered by PostGIS, on psycopg 3 directly.

Radius uses ``ST_DWithin`` on geography (GiST) and then the exact spheroid distance;
nearest uses the KNN operator ``<->`` to bound the k-th distance and ``ST_DWithin`` to
collect every space within it, so that filters apply before k and the order is by exact
distance (with text, in the word plane: :mod:`geosearch.wordplane`); areas use
``ST_Covers`` on the planar geometry column (edges are straight in lon/lat, as the
contract says). Every value is a bound parameter.

The hot path: a ``psycopg_pool`` pool per process (opened after gunicorn forks), the SQL
text built once per query shape and prepared on the server, the dataset version read in
the same round trip as the page, and each result read as the feature bytes stored at
load (:mod:`geosearch.features`), not as a row turned into objects. No round trip checks
a connection before use: a broken one fails its query, is discarded, and the query runs
once more on a fresh connection.

Behind pgbouncer in transaction mode (``database_pooler="transaction"``), prepared
statements are off (pgbouncer 1.18 cannot keep them) and the statement timeout is set
per transaction (``set_config(..., true)``: pgbouncer refuses the ``options`` startup
parameter); so is ``jit``, off for serving.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

import numpy as np
import pandas as pd
import psycopg
import shapely
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout
from shapely.geometry.base import BaseGeometry

from geosearch.backends import prepared
from geosearch.backends.base import BackendUnavailable, NoDataset, NodeStates, StaleVersion
from geosearch.backends.nodes import RECONNECT_WAIT_S, Node, Nodes
from geosearch.backends.prepared import ServingConnection
from geosearch.database import (
    CONNECT_TIMEOUT_S,
    SET_PER_TRANSACTION,
    libpq_url,
    pooled,
    session_options,
)
from geosearch.backends.termcounts import Lookup, Plane, TermCounts
from geosearch.features import Hits, space_from_head
from geosearch.geo import BOX_PAD, R_LOW, lon_lat_boxes, parallel
from geosearch.model import (
    POINT_ZOOM,
    Amenity,
    Filters,
    ListQuery,
    NearestQuery,
    Page,
    PolygonQuery,
    RadiusQuery,
    Space,
    TileQuery,
    amenity_mask,
)
from geosearch.settings import Settings
from geosearch.text import tsquery
from geosearch.tiles import (
    EXTENT,
    EXTENT_BITS,
    LAYER,
    TileFeatures,
    cell_bounds,
    cell_shift,
    tile_span,
)
from geosearch.wordplane import PITCH

Query = RadiusQuery | NearestQuery | PolygonQuery | ListQuery
PagedQuery = RadiusQuery | PolygonQuery | ListQuery
Rows = list  # rows of a statement (the methods named ``list`` shadow the builtin)
ORIGIN = "ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography"
AREA = "ST_GeomFromWKB(%(area)s, 4326)"
# ST_DWithin's own spheroid test may differ from ST_Distance in the last bits: widen the
# indexed pre-filter by a hair and decide with ST_Distance.
DWITHIN_MARGIN_M = 0.01
# A walk outwards from the origin checks the text on at most this many spaces
WALK_MAX = 5_000
# The WGS84 geodesic exceeds the sphere's great-circle distance (<->) by under 0.6%.
SPHERE_MARGIN = 1.01
# A node's dataset version, its WAL position (the primary's current one, a replica's
# replayed one) and, on a replica, the seconds since the last replayed commit.
NODE_STATE_SQL = (
    "SELECT (SELECT version FROM dataset_state), CASE WHEN pg_is_in_recovery() "
    "THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text, "
    "CASE WHEN pg_is_in_recovery() THEN "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END")


def _lsn(text: str) -> int:
    """A WAL position (``16/B374D848``) as a byte offset."""
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class _FeatureHead(Loader):
    """Loads a stored feature (``json``) as its head's bytes, unparsed
    (:mod:`geosearch.features`: the feature without its two closing braces)."""

    def load(self, data: bytes | bytearray | memoryview) -> bytes:
        return bytes(data[:-2])


def _fetch(conn: psycopg.Connection, sql: str, params: dict, rows, prepare: bool | None
           ) -> list:
    """A statement's rows (``rows``: a row factory, None for tuples)."""
    with conn.cursor(row_factory=rows) as cur:
        cur.execute(sql, params, prepare=prepare)
        return cur.fetchall()


# -- SQL, built once per query shape -------------------------------------------------------

def _filter_sql(f: Filters, ordered_scan: bool, active: str = "status = 'active'",
                text_index: bool | None = None) -> tuple[str, dict]:
    """WHERE fragments for the filters (SQL fixed by the filters' shape) and their values.

    Amenities (and text) are tested on the ``text[]`` column (the ``tsvector``), both
    GIN-indexable, or, for an ``ordered_scan`` (radius, KNN, tile ranges), on the bitmask
    (with ``ts_match_vq``), which no index serves: the planner then keeps the GiST scan
    around the origin (or the tile key range) and filters as it goes, instead of reading
    every space that has a common amenity (a 2 km radius with wifi at 1M spaces: 60 ms
    through the amenities' GIN index, under 1 ms without). ``active``: the condition that
    selects active spaces; ``text_index``: whether text may use its index (by default,
    when the scan is not ordered).
    """
    text_index = not ordered_scan if text_index is None else text_index
    parts: list[str] = [active]
    params: dict[str, object] = {}
    if f.all_amenities:
        if ordered_scan:
            parts.append("amenity_mask & %(all_mask)s = %(all_mask)s")
            params["all_mask"] = amenity_mask(f.all_amenities)
        else:
            parts.append("amenities @> %(all_amenities)s::text[]")
            params["all_amenities"] = sorted(a.value for a in f.all_amenities)
    if f.any_amenities:
        if ordered_scan:
            parts.append("amenity_mask & %(any_mask)s <> 0")
            params["any_mask"] = amenity_mask(f.any_amenities)
        else:
            parts.append("amenities && %(any_amenities)s::text[]")
            params["any_amenities"] = sorted(a.value for a in f.any_amenities)
    if f.countries:
        parts.append("country = ANY(%(countries)s::text[])")
        params["countries"] = sorted(f.countries)
    if f.city_key is not None:
        parts.append("city_key = %(city_key)s")
        params["city_key"] = f.city_key
    if f.min_capacity is not None:
        parts.append("capacity >= %(min_capacity)s::int")
        params["min_capacity"] = f.min_capacity
    if f.text:  # ts_match_vq is @@ written as a function: no index serves it
        parts.append("search @@ %(q)s::tsquery" if text_index
                     else "ts_match_vq(search, %(q)s::tsquery)")
        params["q"] = tsquery(f.text)
    return " AND ".join(parts), params


def _covered(where: str, params: dict, area: BaseGeometry) -> str:
    """``where`` restricted to the spaces the area covers (its WKB into ``params``)."""
    params["area"] = shapely.to_wkb(area)
    return f"{where} AND ST_Covers({AREA}, geom)"


def _versioned(inner: str, order: str) -> str:
    """``inner`` (a page of rows) with the dataset version, in one statement: one row of
    nulls but the version when the page is empty, no row when no dataset is loaded."""
    return (f"SELECT v.version, p.* FROM dataset_state v LEFT JOIN LATERAL ({inner}) p "
            f"ON true ORDER BY {order}")


@lru_cache(maxsize=512)
def _nearest_sql(where: str, capped: bool, walk: str | None, by_text: bool) -> str:
    """Nearest in two steps: the k-th distance of k matches bounds the answer, then every
    match within the bound is ranked by exact distance. The k matches come

    - by walking outwards from the origin (KNN), the filters checked on the way;
    - with ``walk`` (the filters without text, when there is text): walking at most
      WALK_MAX spaces, the text checked on those; fewer than k matches give no bound and
      no row (the caller then asks the text index);
    - ``by_text`` (a rare term): from the text index, ranked by the sphere's ``<->``
      (the ``+ 0`` keeps the planner from walking the KNN index instead), which is within
      1% of the spheroid, so that exact distances go to the few that can be within it.
    """
    if by_text:
        knn = (f"SELECT ST_Distance(geog, {ORIGIN}) AS d FROM (SELECT geog FROM spaces "
               f"WHERE {where} ORDER BY (geog <-> {ORIGIN}) + 0 LIMIT %(k)s) s")
        near = f"(geog <-> {ORIGIN}) <= (SELECT d FROM bound) * {SPHERE_MARGIN} + %(margin)s"
    else:
        knn = (f"SELECT ST_Distance(geog, {ORIGIN}) AS d FROM spaces "
               f"WHERE {where} ORDER BY geog <-> {ORIGIN} LIMIT %(k)s")
        if walk is not None:
            knn = (f"SELECT ST_Distance(geog, {ORIGIN}) AS d FROM (SELECT geog, search FROM "
                   f"spaces WHERE {walk} ORDER BY geog <-> {ORIGIN} LIMIT {WALK_MAX}) near "
                   f"WHERE ts_match_vq(search, %(q)s::tsquery) LIMIT %(k)s")
        near = f"ST_DWithin(geog, {ORIGIN}, (SELECT d FROM bound) + %(margin)s)"
    bound = ("SELECT max(d) AS d FROM knn" if walk is None else
             "SELECT CASE WHEN count(*) = %(k)s THEN max(d) END AS d FROM knn")
    cap = "AND d <= %(max_d)s" if capped else ""
    return (f"WITH knn AS ({knn}), bound AS ({bound}) "
            f"SELECT id, d, feature FROM (SELECT id, feature, ST_Distance(geog, {ORIGIN}) "
            f"AS d FROM spaces WHERE {where} AND {near}) s "
            f"WHERE d <= (SELECT d FROM bound) {cap} ORDER BY d, id LIMIT %(k)s")


# -- nearest with q in the word plane (geosearch.wordplane) ----------------------------------

_TILES = "unnest(%(tiles)s::int[]) t(tile)"  # the tiles of the rarest term's words
_TILE_X = f"t.tile * {PITCH}::float8"
# The reach up to which one longitude-latitude box around the origin is read in the word
# plane; beyond, the boxes of geo.lon_lat_boxes (strips that follow the cap)
BOX_REACH_M = 500_000.0


def _plane_places(boxes: str) -> str:
    """The places of the term's words in the plane boxes of ``boxes`` (a FROM item with
    columns west, south, east, north: longitudes + 180 and latitudes)."""
    return (f"SELECT p.place FROM {_TILES}, {boxes}, word_points p WHERE p.pt <@ box("
            f"point({_TILE_X} + b.west, b.south), point({_TILE_X} + b.east, b.north))")


def _plane_ranked(places: str, where: str) -> str:
    """The k nearest of the matches among ``places`` within ``%(reach)s``, by exact
    distance."""
    return (f"SELECT id, d, feature FROM (SELECT id, feature, ST_Distance(geog, {ORIGIN}) "
            f"AS d FROM spaces WHERE place = ANY(ARRAY({places})) AND {where}) s "
            f"WHERE d <= %(reach)s ORDER BY d, id LIMIT %(k)s")


@lru_cache(maxsize=256)
def _plane_sql(where: str) -> str:
    """Nearest with text in the word plane, in one statement, with the dataset version:

    - ``found``: each word's k nearest matches, walking its tile outwards from the origin
      (nearest in longitude and latitude: enough to bound the k-th distance);
    - the bound, ``reach``: the k-th distance among them (infinite below k);
    - when it is at most BOX_REACH_M, every match in the one box that holds the disk
      (the latitudes within reach over b²/a, the least radius of curvature of a meridian;
      the longitudes within asin(reach / ρ0), ρ0 the origin's distance from the axis, as
      a chord of at most ``reach`` projects onto the equator's plane; both sides of
      ±180°), ranked.

    Rows: the version, the k-th distance, ``near`` (false: a walk's match; true: a ranked
    match), id, distance, feature.
    """
    walk = (f"SELECT s.id, ST_Distance(s.geog, {ORIGIN}) AS d, s.feature FROM word_points p "
            f"JOIN spaces s ON s.place = p.place WHERE p.pt <@ box(point({_TILE_X}, -90), "
            f"point({_TILE_X} + 360, 90)) AND {where} "
            f"ORDER BY p.pt <-> point({_TILE_X} + %(lon)s + 180, %(lat)s) LIMIT %(k)s")
    # the k-th distance, the box's latitudes, its half width and its centre (r: the k-th
    # distance with the margin; pad: degrees for rounding in the plane's coordinates)
    kth = ("SELECT coalesce((SELECT d FROM found GROUP BY id, d ORDER BY d OFFSET %(k)s - 1 "
           "LIMIT 1), 'Infinity') AS kth")
    box = (f"SELECT kth, greatest(-90, %(lat)s - degrees(r / {R_LOW}) - %(pad)s) AS south, "
           f"least(90, %(lat)s + degrees(r / {R_LOW}) + %(pad)s) AS north, CASE WHEN "
           f"r < %(rho)s THEN degrees(asin(r / %(rho)s)) + %(pad)s ELSE 180 END AS half, "
           f"%(lon)s + 180 AS x FROM (SELECT kth, kth + %(margin)s AS r FROM kth) r")
    # the box on each side of ±180° (in the plane, longitudes + 180 in [0, 360])
    spans = ("(SELECT s.* FROM box, LATERAL (VALUES (greatest(0, x - half), south, "
             "least(360, x + half), north), (x - half + 360, south, 360, north), "
             "(0, south, x + half - 360, north)) s(west, south, east, north) "
             "WHERE s.west <= s.east) b")
    ranked = _plane_ranked(_plane_places(spans), where).replace(
        "%(reach)s", "(SELECT kth FROM box)")
    return (f"WITH found AS MATERIALIZED (SELECT m.* FROM {_TILES} CROSS JOIN LATERAL "
            f"({walk}) m), kth AS MATERIALIZED ({kth}), box AS MATERIALIZED ({box}) "
            f"SELECT v.version, (SELECT kth FROM box), r.* FROM dataset_state v LEFT JOIN "
            f"LATERAL ("
            f"SELECT false AS near, * FROM found UNION ALL SELECT true, * FROM ({ranked}) n "
            f"WHERE (SELECT kth FROM box) <= %(box_reach)s) r ON true")


@lru_cache(maxsize=256)
def _plane_far_sql(where: str) -> str:
    """Every match within ``reach`` in the plane boxes of the strips that follow its cap
    (:func:`geosearch.geo.lon_lat_boxes`), ranked; with the dataset version."""
    boxes = ("unnest(%(west)s::float8[], %(south)s::float8[], %(east)s::float8[], "
             "%(north)s::float8[]) b(west, south, east, north)")
    return _versioned(_plane_ranked(_plane_places(boxes), where), "p.d, p.id")


@lru_cache(maxsize=512)
def _distance_sql(where: str, keep: str, keyset: bool) -> str:
    after = "AND (d > %(d0)s OR (d = %(d0)s AND id > %(id0)s))" if keyset else ""
    inner = (f"SELECT id, d, feature FROM (SELECT id, feature, ST_Distance(geog, {ORIGIN}) "
             f"AS d FROM spaces WHERE {where}) s WHERE {keep} {after} "
             f"ORDER BY d, id LIMIT %(n)s")
    return _versioned(inner, "p.d, p.id")


@lru_cache(maxsize=512)
def _id_sql(where: str, keyset: bool) -> str:
    after = "AND id > %(id0)s" if keyset else ""
    inner = f"SELECT id, feature FROM spaces WHERE {where} {after} ORDER BY id LIMIT %(n)s"
    return _versioned(inner, "p.id")


# -- tiles: the rows of a tile (geosearch.tiles), then ST_AsMVT or the rows themselves -----

_TILE_ROWS = "id, name, amenities, count, wx, wy, k"
_IN_TILE = "tile_rank IS NOT NULL AND tile_key >= %(low)s AND tile_key < %(high)s"


@lru_cache(maxsize=64)
def _tile_points_sql(where: str) -> str:
    return (f"SELECT id, name, array_to_string(amenities, ',') AS amenities, "
            f"NULL::bigint AS count, tile_x AS wx, tile_y AS wy, tile_rank AS k "
            f"FROM spaces WHERE {_IN_TILE} AND {where}")


@lru_cache(maxsize=64)
def _tile_groups_sql(where: str) -> str:
    # Counted and located on the covering index alone; a cell of one space then reads
    # that space (its min key and rank are its own).
    groups = (f"SELECT count(*) AS n, sum(tile_x) / count(*) AS wx, "
              f"sum(tile_y) / count(*) AS wy, min(tile_key) AS key, min(tile_rank) AS k "
              f"FROM spaces WHERE {_IN_TILE} AND {where} GROUP BY tile_key >> %(shift)s")
    return (f"SELECT s.id, s.name, array_to_string(s.amenities, ',') AS amenities, "
            f"CASE WHEN g.n > 1 THEN g.n END AS count, g.wx, g.wy, g.k FROM ({groups}) g "
            f"LEFT JOIN spaces s ON g.n = 1 AND s.tile_key = g.key AND s.tile_rank = g.k "
            f"AND s.tile_rank IS NOT NULL")


# Unfiltered clusters: for each cell bound, the first space at or after it (one index
# probe) gives the count and position sums of every space before it; the next bound's
# minus this one's are the cell's. Past the last space, the totals in dataset_state.
_TILE_CELLS_SQL = (
    "WITH p AS (SELECT b.i, COALESCE(s.tile_rank, d.tile_count) AS r, "
    "COALESCE(s.tile_sum_x, d.tile_sum_x) AS sx, COALESCE(s.tile_sum_y, d.tile_sum_y) AS sy, "
    "s.id, s.name, s.amenities, s.tile_x, s.tile_y "
    "FROM unnest(%(bounds)s::bigint[]) WITH ORDINALITY AS b(low, i) CROSS JOIN dataset_state d "
    "LEFT JOIN LATERAL (SELECT tile_rank, tile_sum_x, tile_sum_y, id, name, amenities, tile_x, "
    "tile_y FROM spaces WHERE tile_rank IS NOT NULL AND tile_key >= b.low "
    "ORDER BY tile_key, tile_rank LIMIT 1) s ON true), "
    "c AS (SELECT p.*, lead(r) OVER w - r AS n, lead(sx) OVER w - sx AS dx, "
    "lead(sy) OVER w - sy AS dy FROM p WINDOW w AS (ORDER BY i)) "
    "SELECT CASE WHEN n = 1 THEN id END AS id, CASE WHEN n = 1 THEN name END AS name, "
    "CASE WHEN n = 1 THEN array_to_string(amenities, ',') END AS amenities, "
    "CASE WHEN n > 1 THEN n END AS count, CASE WHEN n = 1 THEN tile_x ELSE dx / n END AS wx, "
    "CASE WHEN n = 1 THEN tile_y ELSE dy / n END AS wy, r AS k FROM c WHERE n > 0")

_PIXEL = "LEAST(GREATEST(floor({w} * %(scale)s) - %(o{a})s, 0), {last})"


@lru_cache(maxsize=128)
def _tile_sql(rows: str, mvt: bool) -> str:
    """A tile's rows as one MVT (``ST_AsMVT``) or as rows, with the dataset version."""
    if not mvt:
        return _versioned(f"SELECT {_TILE_ROWS} FROM ({rows}) t", "p.k")
    last = EXTENT - 1
    px = _PIXEL.format(w="wx", a="x", last=last)
    py = _PIXEL.format(w="wy", a="y", last=last)
    geom = (f"ST_AsMVTGeom(ST_MakePoint({px}, {EXTENT} - {py}), "
            f"ST_MakeEnvelope(0, 0, {EXTENT}, {EXTENT}), {EXTENT}, 0, false)")
    return (f"SELECT v.version, (SELECT ST_AsMVT(m, '{LAYER}', {EXTENT}, 'geom') FROM "
            f"(SELECT id, name, amenities, count, {geom} AS geom FROM ({rows}) t "
            f"ORDER BY k) m) FROM dataset_state v")


def tile_statement(query: TileQuery, mvt: bool) -> tuple[str, dict]:
    """The SQL and parameters of a tile (:mod:`geosearch.tiles`): its points from
    POINT_ZOOM up; below, its cluster cells, from prefix sums when nothing is filtered."""
    z, x, y = query.z, query.x, query.y
    low, high = tile_span(z, x, y)
    params: dict = {"low": low, "high": high, "scale": float(1 << (z + EXTENT_BITS)),
                    "ox": x * EXTENT, "oy": y * EXTENT}
    if z < POINT_ZOOM and query.filters.is_empty:
        params["bounds"] = cell_bounds(z, x, y).tolist()
        return _tile_sql(_TILE_CELLS_SQL, mvt), params
    # A space with a tile rank is active: the covering index answers the filters alone.
    where, filters = _filter_sql(query.filters, ordered_scan=True, active="TRUE")
    params.update(filters)
    if z >= POINT_ZOOM:
        return _tile_sql(_tile_points_sql(where), mvt), params
    params["shift"] = cell_shift(z)
    return _tile_sql(_tile_groups_sql(where), mvt), params


def statement(query: Query, by_text: bool = False) -> tuple[str, dict]:
    """The SQL and bound parameters that answer a query object (``by_text``: a nearest
    query whose rarest text term has few spaces, answered from the text index).

    The SQL text depends only on the query's shape (which filters, a cursor or not), so
    each shape is one prepared statement on the server; every value is a parameter.
    """
    if isinstance(query, NearestQuery):
        where, params = _filter_sql(query.filters, ordered_scan=True, text_index=by_text)
        params.update(lat=query.origin.lat, lon=query.origin.lon, k=query.k,
                      margin=DWITHIN_MARGIN_M)
        if query.max_distance_m is not None:
            params["max_d"] = query.max_distance_m
        walk = None
        if query.filters.text and not by_text:
            walk, _ = _filter_sql(replace(query.filters, text=()), ordered_scan=True)
        return _nearest_sql(where, query.max_distance_m is not None, walk, by_text), params
    where, params = _filter_sql(query.filters, ordered_scan=isinstance(query, RadiusQuery))
    params["n"] = query.limit + 1
    after = query.after
    if isinstance(query, RadiusQuery):
        params.update(lat=query.origin.lat, lon=query.origin.lon, r=query.radius_m,
                      r_index=query.radius_m + DWITHIN_MARGIN_M)
        where += f" AND ST_DWithin(geog, {ORIGIN}, %(r_index)s)"
        keep = "d <= %(r)s"
    elif isinstance(query, PolygonQuery):
        where = _covered(where, params, query.area)
        keep = "TRUE"
        if query.origin is None:
            if after is not None:
                params["id0"] = str(after[-1])
            return _id_sql(where, after is not None), params
        params.update(lat=query.origin.lat, lon=query.origin.lon)
    else:
        if after is not None:
            params["id0"] = str(after[-1])
        return _id_sql(where, after is not None), params
    if after is not None:
        params.update(d0=float(after[0]), id0=str(after[-1]))
    return _distance_sql(where, keep, after is not None), params


# -- the backend ---------------------------------------------------------------------------

class PostgisBackend:
    """Answers from the ``spaces`` table of a PostGIS database, and of its hot-standby
    replicas when ``settings.replica_urls`` names them (:mod:`geosearch.backends.nodes`).

    Connection failures and timeouts surface as :class:`BackendUnavailable` (HTTP 503)
    when no node can answer; the backend recovers by itself when the database returns.
    A paged query that names a dataset ``version`` is answered only by a node that serves
    it (:class:`StaleVersion` when none does).
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.database_url:
            raise ValueError("PostgisBackend needs settings.database_url")
        self.settings = settings
        self.dsn = libpq_url(settings.database_url)
        self.pooled = pooled(settings)
        kwargs: dict = {"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": not self.pooled,
                        "options": session_options(settings)}

        # Prepared statements whose custom plans cost more to make than to run (the word
        # plane's: 0.5 ms of planning for 0.4 of work) run on sessions that plan them once,
        # generically; not behind a transaction pooler, where none is prepared.
        generic = None if self.pooled else {
            **kwargs, "options": session_options(settings, "plan_cache_mode=force_generic_plan")}

        def node(url: str, role: str) -> Node:
            return Node(libpq_url(url), role, settings.pool_size, kwargs, self._configure, generic)

        self.cluster = Nodes(node(settings.database_url, "primary"),
                             [node(url, "replica") for url in settings.replica_urls])
        self._term_counts = TermCounts(self._run)

    @classmethod
    def from_settings(cls, settings: Settings) -> PostgisBackend:
        """A backend on ``settings.database_url`` (and its replicas) with its pools and
        statement timeout."""
        return cls(settings)

    # -- connections ------------------------------------------------------------------------

    def _configure(self, conn: ServingConnection) -> None:
        conn.adapters.register_loader("json", _FeatureHead)
        if self.pooled:
            conn.prepare_threshold = None

    def _execute(self, conn: ServingConnection, sql: str, params: dict, rows=None) -> list:
        """One statement's rows (tuples, prepared on the session: :mod:`.prepared`; other
        ``rows`` through a cursor); behind a transaction pooler, in a transaction of its
        own that sets the statement timeout (pgbouncer refuses it as a startup option)."""
        if self.pooled:
            with conn.transaction():
                conn.execute(SET_PER_TRANSACTION, (str(int(self.settings.statement_timeout_ms)),))
                return _fetch(conn, sql, params, rows, prepare=None)  # none survive it
        if rows is None:
            return prepared.run(conn, sql, params)
        return _fetch(conn, sql, params, rows, prepare=True)

    def _on(self, node: Node, sql: str, params: dict, rows=None, generic: bool = False
            ) -> list:
        """Run one statement on one node (``generic``: on a session of generic plans); a
        connection that turns out broken is replaced once. Raises BackendUnavailable when
        the node cannot answer."""
        for attempt in (1, 2):
            try:
                wait = None if attempt == 1 else RECONNECT_WAIT_S
                with node.connection(wait, generic) as conn:
                    return self._execute(conn, sql, params, rows)
            except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
                raise NoDataset("the schema is missing or older than this release: run "
                                "geosearch ingest --database") from exc
            except psycopg.errors.QueryCanceled as exc:
                raise BackendUnavailable("statement timeout") from exc
            except PoolTimeout as exc:
                raise BackendUnavailable("no database connection") from exc
            except psycopg.OperationalError as exc:
                if attempt == 2:
                    raise BackendUnavailable(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def _run(self, sql: str, params: dict, rows=None,
             accept: Callable[[Rows], bool] | None = None, generic: bool = False) -> Rows:
        """Run a read on the first node that answers (and whose answer ``accept`` takes);
        a node that cannot answer is taken out of rotation. ``generic``: see :meth:`_on`."""
        failure: Exception | None = None
        for node in self.cluster.for_read():
            try:
                result = self._on(node, sql, params, rows, generic)
            except BackendUnavailable as exc:
                if "timeout" not in str(exc):
                    self.cluster.mark_down(node)
                failure = exc
                continue
            if accept is None or accept(result):
                return result
        if accept is not None and failure is None:
            raise StaleVersion("no node serves the dataset version asked for")
        raise failure or BackendUnavailable("no node answers")

    # -- the protocol -------------------------------------------------------------------

    def dataset_version(self) -> str:
        """The version in ``dataset_state``; NoDataset when nothing was loaded."""
        rows = self._run("SELECT version FROM dataset_state", {})
        if not rows:
            raise NoDataset("no dataset was loaded into this database")
        return rows[0][0]

    def radius(self, query: RadiusQuery) -> Page:
        """``ST_DWithin`` pre-filter, exact ``ST_Distance`` decision and order."""
        return self._page(query, distances=True)

    def nearest(self, query: NearestQuery) -> Hits:
        """KNN bounds the k-th distance; every space within the bound is then ranked. With
        text, the rarest term's words, when few and all in the word plane, are searched
        there (:meth:`_nearest_in_plane`); else a rare term's spaces are ranked
        (:meth:`_text_driven`), or the walk outwards checks the text as it goes."""
        terms = self._term_counts.lookup(query.filters.text) if query.filters.text else None
        if terms is not None and terms.plane is not None and (
                hits := self._nearest_in_plane(query, terms.plane)) is not None:
            return hits
        by_text = terms is not None and self._text_driven(terms, query.k)
        rows = self._run(*statement(query, by_text))
        if not rows and query.filters.text and not by_text:  # the walk met too few
            rows = self._run(*statement(query, by_text=True))
        return Hits([r[0] for r in rows], [r[2] for r in rows], [r[1] for r in rows])

    def _nearest_in_plane(self, query: NearestQuery, plane: Plane) -> Hits | None:
        """Nearest with text in the word plane (:func:`_plane_sql`); a bound beyond
        BOX_REACH_M reads the strips of its cap in a second statement. None when the
        dataset is not the one whose tiles ``plane`` holds (a load since the term counts
        were read: they are read again)."""
        where, params = _filter_sql(query.filters, ordered_scan=True)
        lat, lon, k = query.origin.lat, query.origin.lon, query.k
        params.update(lat=lat, lon=lon, k=k, tiles=plane.tiles, margin=DWITHIN_MARGIN_M,
                      rho=parallel(lat)[0], box_reach=BOX_REACH_M, pad=BOX_PAD)
        rows = self._run(_plane_sql(where), params, generic=True)
        if not self._serves(rows, plane):
            return None
        kth = rows[0][1]
        cap = math.inf if query.max_distance_m is None else query.max_distance_m
        if math.isinf(kth):  # every word's walk ended: these are all the matches
            found = {r[3]: (r[4], r[5]) for r in rows if r[2] is False}
            kept = sorted((d, space) for space, (d, _) in found.items() if d <= cap)
            return Hits([s for _, s in kept], [found[s][1] for _, s in kept],
                        [d for d, _ in kept])
        if kth <= BOX_REACH_M:  # ranked in the one box
            near = [r for r in rows if r[2] and r[4] <= cap]
            return Hits([r[3] for r in near], [r[5] for r in near], [r[4] for r in near])
        reach = min(kth, cap)
        boxes = lon_lat_boxes(lat, lon, reach + DWITHIN_MARGIN_M)
        west, south, east, north = (list(side) for side in zip(*boxes, strict=True))
        rows = self._run(_plane_far_sql(where), {
            **params, "reach": reach, "west": [w + 180 for w in west], "south": south,
            "east": [e + 180 for e in east], "north": north}, generic=True)
        if not self._serves(rows, plane):
            return None
        rows = [r for r in rows if r[1] is not None]
        return Hits([r[1] for r in rows], [r[3] for r in rows], [r[2] for r in rows])

    def _serves(self, rows: Rows, plane: Plane) -> bool:
        """Whether a statement's rows (the dataset version first) come from the dataset
        whose tiles ``plane`` holds; if not, the term counts are read again."""
        if rows and rows[0][0] == plane.version:
            return True
        self._term_counts.expire()
        return False

    def _text_driven(self, terms: Lookup, k: int) -> bool:
        """Whether the rarest term is rare enough to rank its own spaces first: walking
        outwards meets a share s of matches, about k / s spaces for k of them, against
        the n = s N spaces it has: the walk is cheaper past n = sqrt(k N) (measured at 5k
        and 1M spaces: a looser threshold ranked a few thousand spaces where a walk read
        a few dozen). A walk that meets too few (the matches are far away) gives way to
        the text index after WALK_MAX. The counts are the process's copy
        (:class:`TermCounts`)."""
        return terms.matches <= math.sqrt(k * terms.total)

    def polygon(self, query: PolygonQuery) -> Page:
        """``ST_Covers`` on geometry; by id, or by distance from the origin."""
        return self._page(query, distances=query.origin is not None)

    def list(self, query: ListQuery) -> Page:
        """Every active space that passes the filters, by id."""
        return self._page(query, distances=False)

    def tile_mvt(self, query: TileQuery) -> tuple[bytes, str]:
        """The tile as MVT bytes built by PostGIS (``ST_AsMVT``), and the dataset
        version they were read from."""
        rows = self._run_versioned(*tile_statement(query, mvt=True))
        return bytes(rows[0][1] or b""), rows[0][0]

    def tile(self, query: TileQuery) -> TileFeatures:
        """The tile's features (the rows :meth:`tile_mvt` encodes)."""
        rows = self._run_versioned(*tile_statement(query, mvt=False))
        found = [r for r in rows if r[5] is not None]
        return TileFeatures(query.z, query.x, query.y,
                            np.array([r[5] for r in found], dtype=float),
                            np.array([r[6] for r in found], dtype=float),
                            np.array([r[4] or 1 for r in found], dtype=np.int64),
                            [r[1] for r in found], [r[2] for r in found],
                            [r[3] for r in found], rows[0][0])

    def count(self, query: ListQuery | PolygonQuery) -> int:
        """``count(*)`` of the query's rows (from a node serving ``query.version`` when
        it names one)."""
        where, params = _filter_sql(query.filters, ordered_scan=False)
        if isinstance(query, PolygonQuery):
            where = _covered(where, params, query.area)
        sql = _versioned(f"SELECT count(*) AS n FROM spaces WHERE {where}", "p.n")
        return int(self._run_versioned(sql, params, query.version)[0][1])

    def explain(self, query: Query) -> str:
        """PostgreSQL's plan for a query object (``EXPLAIN``), e.g. to check index use."""
        sql, params = statement(query)
        return "\n".join(r[0] for r in self._run(f"EXPLAIN {sql}", params))

    def get(self, space_id: str) -> Space | None:
        """One active space by id."""
        rows = self._run("SELECT feature FROM spaces WHERE id = %(id)s AND status = 'active'",
                         {"id": space_id})
        return space_from_head(rows[0][0]) if rows else None

    def amenity_counts(self) -> dict[str, int]:
        """Active spaces per amenity."""
        rows = self._run("SELECT a, count(*) FROM spaces, unnest(amenities) a "
                         "WHERE status = 'active' GROUP BY a", {})
        counts = {a: int(n) for a, n in rows}
        return {a.value: counts.get(a.value, 0) for a in Amenity}

    def active_frame(self) -> pd.DataFrame:
        """Active spaces: id, lat, lon, country, city, amenities."""
        rows = self._run("SELECT id, lat, lon, country, city, amenities FROM spaces "
                         "WHERE status = 'active' ORDER BY id", {}, rows=dict_row)
        return pd.DataFrame(rows, columns=["id", "lat", "lon", "country", "city", "amenities"])

    def nodes(self) -> NodeStates:
        """Every node: role, health, dataset version, and each replica's lag behind the
        primary (bytes of WAL not yet replayed, seconds since the last replayed commit)."""
        primary_lsn = None
        out = []
        for node in self.cluster.all():
            state = {"role": node.role, "healthy": False, "dataset_version": None}
            if not node.healthy:  # out of rotation until the prober finds it answering
                out.append(state)
                continue
            try:
                version, lsn, seconds = self._on(node, NODE_STATE_SQL, {})[0]
            except (BackendUnavailable, NoDataset):
                out.append(state)
                continue
            state.update(healthy=True, dataset_version=version)
            if node.role == "primary":
                primary_lsn = lsn
            else:
                state.update(lsn=lsn, lag_seconds=None if seconds is None else float(seconds))
            out.append(state)
        for state in out:
            if "lsn" in state:
                lsn = state.pop("lsn")
                state["lag_bytes"] = (None if primary_lsn is None or lsn is None
                                      else max(0, _lsn(str(primary_lsn)) - _lsn(str(lsn))))
        return out

    def close(self) -> None:
        """Close this process' pools."""
        self.cluster.close()

    # -- paging -------------------------------------------------------------------------

    def _run_versioned(self, sql: str, params: dict, version: str | None = None) -> Rows:
        """Run a statement whose rows start with the dataset version (``_versioned``),
        on a node serving ``version`` when it is given; NoDataset when none is loaded."""
        rows = self._run(sql, params, accept=None if version is None else
                         (lambda rows: bool(rows) and rows[0][0] == version))
        if not rows:
            raise NoDataset("no dataset was loaded into this database")
        return rows

    def _page(self, query: PagedQuery, distances: bool) -> Page:
        """Run a paged statement: it fetches limit + 1 rows to know whether more exist,
        and reads the dataset version in the same statement (from a node that serves
        ``query.version`` when the query names one)."""
        rows = self._run_versioned(*statement(query), query.version)
        version = rows[0][0]
        rows = [r for r in rows if r[1] is not None]
        limit = query.limit
        page = rows[:limit]
        if distances:
            hits = Hits([r[1] for r in page], [r[3] for r in page], [r[2] for r in page])
        else:
            hits = Hits([r[1] for r in page], [r[2] for r in page])
        if len(rows) <= limit:
            return Page(hits, None, version)
        last = page[-1]
        return Page(hits, (last[2], last[1]) if distances else (last[1],), version)
