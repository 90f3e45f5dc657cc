"""The SQL of a map tile (:mod:`geosearch.tiles`): the tile's rows, then ``ST_AsMVT`` of
them or the rows themselves, with the dataset version, built without a database.

The rows are every space once: from POINT_ZOOM up, the spaces themselves; below, one row
per cluster cell (a cell of one space is that space), from prefix sums when nothing is
filtered. Each has an id, name and amenities (null for a cluster), a count (null for a
space), a world position (wx, wy) and its rank in the tile (k, the order of the MVT).
"""

from __future__ import annotations

from functools import lru_cache

from geosearch.backends.statements import Statement, filter_sql, versioned
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
        return versioned(f"SELECT {_TILE_ROWS} FROM ({rows}) t", "p.k")
    last = EXTENT - 1
    px = _PIXEL.format(w="wx", a="x", last=last)
    py = _PIXEL.format(w="wy", a="y", last=last)
    geom = (f"ST_AsMVTGeom(ST_MakePoint({px}, {EXTENT} - {py}), "
            f"ST_MakeEnvelope(0, 0, {EXTENT}, {EXTENT}), {EXTENT}, 0, false)")
    return (f"SELECT v.version, (SELECT ST_AsMVT(m, '{LAYER}', {EXTENT}, 'geom') FROM "
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
        params["bounds"] = cell_bounds(z, x, y).tolist()
        return _tile_sql(_TILE_CELLS_SQL, mvt), params
    # A space with a tile rank is active: the covering index answers the filters alone.
    where, filters = filter_sql(query.filters, ordered_scan=True, active="TRUE")
    params.update(filters)
    if z >= POINT_ZOOM:
        return _tile_sql(_tile_points_sql(where), mvt), params
    params["shift"] = cell_shift(z)
    return _tile_sql(_tile_groups_sql(where), mvt), params
