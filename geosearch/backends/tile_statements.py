"""The SQL of a map tile (:mod:`geosearch.tiles`): the tile's rows, then ``ST_AsMVT`` of
them or the rows themselves, with the dataset version, built without a database.

The rows are every space once: from POINT_ZOOM up, the spaces themselves; below, one row
per cluster cell (a cell of one space is that space), from prefix sums when nothing is
filtered. Each has an id, name and amenities (null for a cluster), a count (null for a
space), a world position (wx, wy) and its rank in the tile (k, the order of the MVT).
"""

from __future__ import annotations

from functools import lru_cache

from geosearch.backends.statements import SEQ, Statement, filter_sql, versioned
from geosearch.model import POINT_ZOOM, TileQuery
from geosearch.tiles import EXTENT, EXTENT_BITS, LAYER, cell_bounds, cell_shift, tile_span

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


# Unfiltered clusters: for each cell bound, the load's count and position sums of every
# space before it: those of the first loaded space at or after it (one index probe), or of
# the first ghost of one that a write moved or closed (geosearch.tiledeltas), whichever
# comes first; past the last, the totals in dataset_state. The next bound's minus this
# one's, plus the writes' deltas in the cell, are the cell's. A cell of one space is the
# space probed when no write touched the cell, else the one space found in it.
_TILE_CELLS_SQL = (
    "WITH p AS (SELECT b.i, b.low, COALESCE(s.tile_rank, d.tile_count) AS r, "
    "COALESCE(s.tile_sum_x, d.tile_sum_x) AS sx, COALESCE(s.tile_sum_y, d.tile_sum_y) AS sy, "
    "s.id, s.name, s.amenities, s.tile_x, s.tile_y "
    "FROM unnest(%(bounds)s::bigint[]) WITH ORDINALITY AS b(low, i) CROSS JOIN dataset_state d "
    "LEFT JOIN LATERAL (SELECT * FROM ((SELECT tile_key, tile_rank, tile_sum_x, tile_sum_y, "
    "id, name, amenities, tile_x, tile_y FROM spaces WHERE tile_rank IS NOT NULL "
    "AND tile_sum_x IS NOT NULL AND tile_key >= b.low ORDER BY tile_key, tile_rank LIMIT 1) "
    "UNION ALL (SELECT tile_key, tile_rank, tile_sum_x, tile_sum_y, NULL, NULL, NULL, NULL, "
    "NULL FROM tile_ghosts WHERE tile_key >= b.low ORDER BY tile_key, tile_rank LIMIT 1)) u "
    "ORDER BY tile_key, tile_rank LIMIT 1) s ON true), "
    "w AS (SELECT width_bucket(tile_key, %(bounds)s::bigint[]) AS i, sum(n) AS n, "
    "sum(sum_x) AS sx, sum(sum_y) AS sy FROM tile_deltas "
    "WHERE tile_key >= %(low)s AND tile_key < %(high)s GROUP BY 1), "
    "c AS (SELECT p.*, lead(p.low) OVER o AS high, w.i IS NOT NULL AS written, "
    "lead(r) OVER o - r + COALESCE(w.n, 0) AS n, "
    "lead(p.sx) OVER o - p.sx + COALESCE(w.sx, 0) AS dx, "
    "lead(p.sy) OVER o - p.sy + COALESCE(w.sy, 0) AS dy "
    "FROM p LEFT JOIN w ON w.i = p.i WINDOW o AS (ORDER BY p.i)), "
    "one AS (SELECT c.*, COALESCE(f.id, c.id) AS one_id, COALESCE(f.name, c.name) AS one_name, "
    "COALESCE(f.amenities, c.amenities) AS one_amenities, COALESCE(f.tile_x, c.tile_x) AS ox, "
    "COALESCE(f.tile_y, c.tile_y) AS oy, COALESCE(f.tile_rank, c.r) AS k FROM c "
    "LEFT JOIN LATERAL (SELECT id, name, amenities, tile_x, tile_y, tile_rank FROM spaces "
    "WHERE c.n = 1 AND c.written AND tile_rank IS NOT NULL AND tile_key >= c.low "
    "AND tile_key < c.high ORDER BY tile_key, tile_rank LIMIT 1) f ON true) "
    "SELECT CASE WHEN n = 1 THEN one_id END AS id, CASE WHEN n = 1 THEN one_name END AS name, "
    "CASE WHEN n = 1 THEN array_to_string(one_amenities, ',') END AS amenities, "
    "CASE WHEN n > 1 THEN n END AS count, CASE WHEN n = 1 THEN ox ELSE dx / n END AS wx, "
    "CASE WHEN n = 1 THEN oy ELSE dy / n END AS wy, k FROM one WHERE n > 0")

_PIXEL = "LEAST(GREATEST(floor({w} * %(scale)s) - %(o{a})s, 0), {last})"


@lru_cache(maxsize=128)
def _tile_sql(rows: str, mvt: bool) -> str:
    """A tile's rows as one MVT (``ST_AsMVT``) or as rows, with the dataset version and
    the seq (as :func:`.statements.versioned` has them)."""
    if not mvt:
        return versioned(f"SELECT {_TILE_ROWS} FROM ({rows}) t", "p.k")
    last = EXTENT - 1
    px = _PIXEL.format(w="wx", a="x", last=last)
    py = _PIXEL.format(w="wy", a="y", last=last)
    geom = (f"ST_AsMVTGeom(ST_MakePoint({px}, {EXTENT} - {py}), "
            f"ST_MakeEnvelope(0, 0, {EXTENT}, {EXTENT}), {EXTENT}, 0, false)")
    return (f"SELECT v.version, {SEQ}, (SELECT ST_AsMVT(m, '{LAYER}', {EXTENT}, 'geom') FROM "
            f"(SELECT id, name, amenities, count, {geom} AS geom FROM ({rows}) t "
            f"ORDER BY k) m) FROM dataset_state v")


def tile_statement(query: TileQuery, mvt: bool) -> Statement:
    """The SQL and parameters of a tile. Rows, with ``mvt``: one, of the version and the
    tile's MVT bytes (empty or null for
    an empty tile); else :func:`.statements.versioned` rows of
    the version, id, name, amenities, count, wx, wy, k."""
    z, x, y = query.z, query.x, query.y
    low, high = tile_span(z, x, y)
    params: dict = {"low": low, "high": high, "scale": float(1 << (z + EXTENT_BITS)),
                    "ox": x * EXTENT, "oy": y * EXTENT}
    if z < POINT_ZOOM and query.filters.is_empty:
        params["bounds"] = cell_bounds(z, x, y).tolist()  # low first, high last
        return _tile_sql(_TILE_CELLS_SQL, mvt), params
    # A space with a tile rank is active: the covering index answers the filters alone.
    where, filters = filter_sql(query.filters, ordered_scan=True, active="TRUE")
    params.update(filters)
    if z >= POINT_ZOOM:
        return _tile_sql(_tile_points_sql(where), mvt), params
    params["shift"] = cell_shift(z)
    return _tile_sql(_tile_groups_sql(where), mvt), params
