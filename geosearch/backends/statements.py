"""The SQL of the PostGIS backend: each query's statement text and the parameters it
binds, built from query objects without a database (tiles: :mod:`.tile_statements`).

Radius uses ``ST_DWithin`` on geography (GiST) and then the exact spheroid distance;
nearest uses the KNN operator ``<->`` to bound the k-th distance and ``ST_DWithin`` to
collect every space within it, so that filters apply before k and the order is by exact
distance (with text, in the word plane: :mod:`geosearch.wordplane`); areas use
``ST_Covers`` on the planar geometry column (edges are straight in lon/lat, as the
contract says).

The SQL text depends only on a query's shape (which filters, a cursor or not), so that
each shape is one prepared statement on the server, its text built once; every value is
a bound ``%(name)s`` parameter, never written into the text. Each builder says what its
rows are; the backend reads them by name.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import shapely
from shapely.geometry.base import BaseGeometry

from geosearch import predicate
from geosearch.backends.base import ACTIVE_FRAME_COLUMNS
from geosearch.geo import BOX_PAD, R_LOW, lon_lat_boxes, parallel
from geosearch.model import (
    Filters,
    ListQuery,
    NearestQuery,
    PolygonQuery,
    RadiusQuery,
    amenity_mask,
)
from geosearch.text import tsquery
from geosearch.wordplane import PITCH

Query = RadiusQuery | NearestQuery | PolygonQuery | ListQuery
Statement = tuple[str, dict]
ORIGIN = "ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography"
AREA = "ST_GeomFromWKB(%(area)s, 4326)"
# ST_DWithin's own spheroid test may differ from ST_Distance in the last bits: widen the
# indexed pre-filter by a hair and decide with ST_Distance.
DWITHIN_MARGIN_M = 0.01
# A walk outwards from the origin checks the text on at most this many spaces
WALK_MAX = 5_000
# The WGS84 geodesic exceeds the sphere's great-circle distance (<->) by under 0.6%.
SPHERE_MARGIN = 1.01
# The reach up to which one longitude-latitude box around the origin is read in the word
# plane; beyond, the boxes of geo.lon_lat_boxes (strips that follow the cap)
BOX_REACH_M = 500_000.0

# The change feed's last committed seq in the statement's snapshot (0 before any write):
# a search statement reads it beside its rows (:func:`versioned`), so that what answered
# is known exactly, on the primary or on a replica replaying it.
SEQ = "coalesce((SELECT seq FROM change_counter), 0)"
# One row: the seq a node has applied (a replica: replayed).
APPLIED_SEQ_SQL = f"SELECT {SEQ}"
# Rows: the version and the seq, in one snapshot (none when no dataset is loaded).
DATA_STAMP_SQL = f"SELECT version, {SEQ} AS seq FROM dataset_state"
# Rows: ACTIVE_FRAME_COLUMNS of every active space, by id.
ACTIVE_FRAME_SQL = (f"SELECT {', '.join(ACTIVE_FRAME_COLUMNS)} FROM spaces "
                    "WHERE status = 'active' ORDER BY id")
# One row: a node's dataset version, the seq it has applied and its WAL position (the
# primary's current one, a replica's replayed one).
NODE_STATE_SQL = (
    f"SELECT (SELECT version FROM dataset_state), {SEQ}, CASE WHEN pg_is_in_recovery() "
    "THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text")
# Rows, on the primary: each seq of %(seqs)s and the seconds since its change committed
# (the first change a replica lacks: how far behind it is in time).
CHANGE_AGES_SQL = ("SELECT seq, extract(epoch FROM clock_timestamp() - at)::float8 FROM "
                   "changes WHERE seq = ANY(%(seqs)s::bigint[])")


def filter_sql(f: Filters, ordered_scan: bool, active: str = "status = 'active'",
               text_index: bool | None = None) -> Statement:
    """WHERE fragments for the filters (SQL fixed by the filters' shape) and their values.

    Amenities (and text) are tested on the ``text[]`` column (the ``tsvector``), both
    GIN-indexable, or, for an ``ordered_scan`` (radius, KNN, tile ranges), on the bitmask
    (with ``ts_match_vq``), which no index serves: the planner then keeps the GiST scan
    around the origin (or the tile key range) and filters as it goes, instead of reading
    every space that has a common amenity (through the amenities' GIN index, a small
    radius with a common amenity costs many times more). ``active``: the condition that
    selects active spaces; ``text_index``: whether text may use its index (by default,
    when the scan is not ordered).
    """
    text_index = not ordered_scan if text_index is None else text_index
    parts: list[str] = [active]
    params: dict[str, object] = {}
    # every amenity asked for (the bitmask holds them all; the array contains them), or
    # any of them (the bitmask shares a bit; the arrays overlap)
    for kind, wanted, mask_test, array_op in (
            ("all", f.all_amenities, "= %(all_mask)s", "@>"),
            ("any", f.any_amenities, "<> 0", "&&")):
        if not wanted:
            continue
        if ordered_scan:
            parts.append(f"amenity_mask & %({kind}_mask)s {mask_test}")
            params[f"{kind}_mask"] = amenity_mask(wanted)
        else:
            parts.append(f"amenities {array_op} %({kind}_amenities)s::text[]")
            params[f"{kind}_amenities"] = sorted(a.value for a in wanted)
    if f.countries:
        parts.append("country = ANY(%(countries)s::text[])")
        params["countries"] = sorted(f.countries)
    if f.city_key is not None:
        parts.append("city_key = %(city_key)s")
        params["city_key"] = f.city_key
    if f.min_capacity is not None:
        parts.append("capacity >= %(min_capacity)s::int")
        params["min_capacity"] = f.min_capacity
    if f.where is not None:
        parts.append(predicate.to_sql(f.where, params))
    if f.text:  # ts_match_vq is @@ written as a function: no index serves it
        parts.append("search @@ %(q)s::tsquery" if text_index
                     else "ts_match_vq(search, %(q)s::tsquery)")
        params["q"] = tsquery(f.text)
    return " AND ".join(parts), params


def _covered(where: str, params: dict, area: BaseGeometry) -> str:
    """``where`` restricted to the spaces the area covers (its WKB into ``params``)."""
    params["area"] = shapely.to_wkb(area)
    return f"{where} AND ST_Covers({AREA}, geom)"


def versioned(inner: str, order: str) -> str:
    """``inner`` (a page of rows) with the dataset version and the seq (:data:`SEQ`), in
    one statement: rows of the version, the seq, then the page's columns; one row of
    nulls but the version and seq when the page is empty, no row when no dataset is
    loaded. The nodes take the seq out (:meth:`.nodes.Nodes.read_stamped`), so that the
    rows of each builder are the version and the page's columns; read them with
    :func:`versioned_page`."""
    return (f"SELECT v.version, {SEQ} AS seq, p.* FROM dataset_state v LEFT JOIN LATERAL "
            f"({inner}) p ON true ORDER BY {order}")


# Rows: the version, the seq and the feature of an active space (of nulls: no such space).
SPACE_SQL = versioned("SELECT feature FROM spaces WHERE id = %(id)s AND status = 'active'",
                      "v.version")
# Rows: the version, the seq, an amenity and its active spaces.
AMENITY_COUNTS_SQL = versioned("SELECT a, count(*) AS n FROM spaces, unnest(amenities) a "
                               "WHERE status = 'active' GROUP BY a", "p.a")


def versioned_page(rows: list[tuple]) -> tuple[str, list[tuple]]:
    """The dataset version and the page of a :func:`versioned` statement's rows (at least
    one: a dataset is loaded); the rows themselves, or none for the row of an empty page.
    Statements whose rows start with the version and have no page (``(version,)``) read
    the same way."""
    version, *columns = rows[0]
    empty = columns.count(None) == len(columns)
    return version, [] if empty else rows


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

    Rows: :func:`versioned` rows of the version, id, distance, feature.
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
    return versioned(f"WITH knn AS ({knn}), bound AS ({bound}) "
                     f"SELECT id, d, feature FROM (SELECT id, feature, "
                     f"ST_Distance(geog, {ORIGIN}) AS d FROM spaces WHERE {where} AND {near}) s "
                     f"WHERE d <= (SELECT d FROM bound) {cap} ORDER BY d, id LIMIT %(k)s",
                     "p.d, p.id")


# -- nearest with q in the word plane (geosearch.wordplane) ----------------------------------

# The tiles of the rarest term's words, those from %(word_low)s up to %(word_high)s
# (search_words.word is in "C", code point, order), read in the statement's snapshot: a
# word that a write added since the process's copy of the words (termcounts) is walked too
_TILES = ("unnest(ARRAY(SELECT tile FROM search_words WHERE word >= %(word_low)s "
          "AND word < %(word_high)s AND tile IS NOT NULL)) t(tile)")
_TILE_X = f"t.tile * {PITCH}::float8"


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
    - when it is at most ``%(box_reach)s``, every match in the one box that holds the
      disk (the latitudes within reach over b²/a, the least radius of curvature of a
      meridian; the longitudes within asin(reach / ρ0), ρ0 the origin's distance from
      the axis, as a chord of at most ``reach`` projects onto the equator's plane; both
      sides of ±180°), ranked.

    Rows (with the seq second, as :func:`versioned` has it): the version, the k-th
    distance, ``near`` (false: a walk's match; true: a ranked match), id, distance,
    feature; one row with the version and the k-th distance alone when there is no match.
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
            f"SELECT v.version, {SEQ}, (SELECT kth FROM box), r.* FROM dataset_state v LEFT JOIN "
            f"LATERAL ("
            f"SELECT false AS near, * FROM found UNION ALL SELECT true, * FROM ({ranked}) n "
            f"WHERE (SELECT kth FROM box) <= %(box_reach)s) r ON true")


@lru_cache(maxsize=256)
def _plane_far_sql(where: str) -> str:
    """Every match within ``reach`` in the plane boxes of the strips that follow its cap
    (:func:`geosearch.geo.lon_lat_boxes`), ranked; with the dataset version
    (:func:`versioned`: the version, id, distance, feature)."""
    boxes = ("unnest(%(west)s::float8[], %(south)s::float8[], %(east)s::float8[], "
             "%(north)s::float8[]) b(west, south, east, north)")
    return versioned(_plane_ranked(_plane_places(boxes), where), "p.d, p.id")


def plane_statement(query: NearestQuery, words: tuple[str, str]) -> Statement:
    """Nearest with text among the word plane's tiles of the ``words`` between their
    bounds (:func:`_plane_sql`); the spaces within ``params["box_reach"]`` of the origin
    are ranked in the same statement, a bound beyond it needs :func:`plane_far_statement`."""
    where, params = filter_sql(query.filters, ordered_scan=True)
    rho, _ = parallel(query.origin.lat)
    params.update(lat=query.origin.lat, lon=query.origin.lon, k=query.k,
                  word_low=words[0], word_high=words[1], margin=DWITHIN_MARGIN_M, rho=rho,
                  box_reach=BOX_REACH_M, pad=BOX_PAD)
    return _plane_sql(where), params


def plane_far_statement(query: NearestQuery, words: tuple[str, str], reach: float
                        ) -> Statement:
    """The k nearest matches within ``reach`` among the word plane's tiles of the
    ``words`` between their bounds, read in the strips of the cap (:func:`_plane_far_sql`)."""
    where, params = filter_sql(query.filters, ordered_scan=True)
    lat, lon = query.origin.lat, query.origin.lon
    boxes = lon_lat_boxes(lat, lon, reach + DWITHIN_MARGIN_M)
    west, south, east, north = (list(side) for side in zip(*boxes, strict=True))
    params.update(lat=lat, lon=lon, k=query.k, word_low=words[0], word_high=words[1],
                  reach=reach, west=[w + 180 for w in west], south=south,
                  east=[e + 180 for e in east], north=north)
    return _plane_far_sql(where), params


# -- pages -----------------------------------------------------------------------------------

# A walk by distance is read at the change feed's seq of its first page: the seq that the
# page's snapshot has committed (a first page), or the cursor's (the pages after it skip
# every space written since, which may have moved from before the cursor to after it).
_WALK_SEQ = "(SELECT seq FROM change_counter)"


@lru_cache(maxsize=512)
def _distance_sql(where: str, keep: str, keyset: bool) -> str:
    """A page by (distance, id), after the keyset ``(d0, id0, s0)`` (``s0``: the walk's
    seq): :func:`versioned` rows of the version, id, distance, feature, walk seq."""
    after, walk = "", _WALK_SEQ
    if keyset:
        where += " AND changed_seq <= %(s0)s"
        after, walk = "AND (d > %(d0)s OR (d = %(d0)s AND id > %(id0)s))", "%(s0)s"
    inner = (f"SELECT id, d, feature, {walk}::bigint AS walk FROM (SELECT id, feature, "
             f"ST_Distance(geog, {ORIGIN}) AS d FROM spaces WHERE {where}) s "
             f"WHERE {keep} {after} ORDER BY d, id LIMIT %(n)s")
    return versioned(inner, "p.d, p.id")


@lru_cache(maxsize=512)
def _id_sql(where: str, keyset: bool) -> str:
    """A page by id, after the keyset ``id0``: :func:`versioned` rows of the version, id,
    feature."""
    after = "AND id > %(id0)s" if keyset else ""
    inner = f"SELECT id, feature FROM spaces WHERE {where} {after} ORDER BY id LIMIT %(n)s"
    return versioned(inner, "p.id")


def _id_page(where: str, params: dict, after: tuple | None) -> Statement:
    """The page by id of the spaces ``where`` selects, after the keyset ``(id,)``."""
    if after is not None:
        params["id0"] = str(after[-1])
    return _id_sql(where, after is not None), params


def _distance_keyset(after: tuple) -> dict:
    """The parameters of a keyset ``(distance, id, walk seq)``."""
    d0, id0, s0 = after
    return {"d0": float(d0), "id0": str(id0), "s0": int(s0)}


def statement(query: Query, by_text: bool = False) -> Statement:
    """The SQL and bound parameters that answer a query object (``by_text``: a nearest
    query whose rarest text term has few spaces, answered from the text index).

    Nearest: rows of the version, id, distance, feature (:func:`_nearest_sql`); the
    others fetch one page of ``limit + 1`` rows (:func:`_distance_sql`, or
    :func:`_id_sql` for the lists and the areas without an origin).
    """
    if isinstance(query, NearestQuery):
        where, params = filter_sql(query.filters, ordered_scan=True, text_index=by_text)
        params.update(lat=query.origin.lat, lon=query.origin.lon, k=query.k,
                      margin=DWITHIN_MARGIN_M)
        if query.max_distance_m is not None:
            params["max_d"] = query.max_distance_m
        walk = None
        if query.filters.text and not by_text:
            walk, _ = filter_sql(replace(query.filters, text=()), ordered_scan=True)
        return _nearest_sql(where, query.max_distance_m is not None, walk, by_text), params
    where, params = filter_sql(query.filters, ordered_scan=isinstance(query, RadiusQuery))
    params["n"] = query.limit + 1
    if isinstance(query, RadiusQuery):
        params.update(lat=query.origin.lat, lon=query.origin.lon, r=query.radius_m,
                      r_index=query.radius_m + DWITHIN_MARGIN_M)
        where += f" AND ST_DWithin(geog, {ORIGIN}, %(r_index)s)"
        keep = "d <= %(r)s"
    elif isinstance(query, PolygonQuery):
        where = _covered(where, params, query.area)
        keep = "TRUE"
        if query.origin is None:
            return _id_page(where, params, query.after)
        params.update(lat=query.origin.lat, lon=query.origin.lon)
    else:
        return _id_page(where, params, query.after)
    if query.after is not None:
        params.update(_distance_keyset(query.after))
    return _distance_sql(where, keep, query.after is not None), params


def count_statement(query: ListQuery | PolygonQuery) -> Statement:
    """How many spaces a list or area query matches over all its pages: :func:`versioned`
    rows of the version and the count (always one)."""
    where, params = filter_sql(query.filters, ordered_scan=False)
    if isinstance(query, PolygonQuery):
        where = _covered(where, params, query.area)
    return versioned(f"SELECT count(*) AS n FROM spaces WHERE {where}", "p.n"), params
