"""The vector tiles kept exact under writes, at the cost of one space per write.

A load ranks the spaces of the Web Mercator square in (key, id) order and writes, on each,
the prefix sums of positions before it; an unfiltered cluster cell is counted from the sums
at its two bounds (:mod:`geosearch.backends.tile_statements`). Rewriting the sums after a
write would cost the dataset. A write instead leaves the loaded sums as they are and
records what it changed (migration 0008):

- a loaded space that moves or closes leaves a **ghost**: its rank and sums as the load
  wrote them (``tile_ghosts``), so that the sums at a bound stay those of the load: the
  first of the loaded spaces in place and the ghosts at or after it;
- each write adds **deltas** (``tile_deltas``): -1 space and its position where a space
  left a key, +1 where one came; a cell's count and sums are the load's plus its deltas;
- a created or moved space gets a **written rank** of its own (``tile_written_rank``,
  above every load's) and no sums: it is drawn in the point tiles and counted by the
  filtered clusters as any space is, and the cells' sums skip it (the deltas count it).

A load that replaces the dataset ranks everything again and empties both tables
(:func:`clear`), in its swap: that is the compaction.
"""

from __future__ import annotations

import psycopg

# The tile columns of a space's row as a write leaves it
_LEAVE_SQL = (
    "WITH s AS (SELECT tile_key, tile_rank, tile_sum_x, tile_sum_y, tile_x, tile_y "
    "FROM spaces WHERE id = %(id)s AND tile_rank IS NOT NULL), "
    "g AS (INSERT INTO tile_ghosts (tile_key, tile_rank, tile_sum_x, tile_sum_y) "
    "SELECT tile_key, tile_rank, tile_sum_x, tile_sum_y FROM s WHERE tile_sum_x IS NOT NULL) "
    "INSERT INTO tile_deltas (seq, tile_key, n, sum_x, sum_y) "
    "SELECT %(seq)s, tile_key, -1, -tile_x, -tile_y FROM s")
_ARRIVE_SQL = (
    "WITH r AS (SELECT nextval('tile_written_rank') AS rank), "
    "d AS (INSERT INTO tile_deltas (seq, tile_key, n, sum_x, sum_y) "
    "VALUES (%(seq)s, %(key)s, 1, %(x)s, %(y)s)) SELECT rank FROM r")


def leave(cur: psycopg.Cursor, space_id: str, seq: int) -> None:
    """The space (its row as it is, before the write of ``seq`` moves or closes it) leaves
    its tile: a ghost when a load ranked it, a delta of -1 when it was in a tile."""
    cur.execute(_LEAVE_SQL, {"id": space_id, "seq": seq})


def arrive(cur: psycopg.Cursor, values: dict[str, object], seq: int) -> int | None:
    """A space whose row will hold ``values`` comes into its tile with the write of
    ``seq``: a delta of +1; its written rank (None outside the Web Mercator square, which
    no tile covers)."""
    if values["tile_key"] is None:
        return None
    found = cur.execute(_ARRIVE_SQL, {"seq": seq, "key": values["tile_key"],
                                      "x": values["tile_x"], "y": values["tile_y"]}).fetchone()
    assert found is not None  # nextval answers one row
    return int(found[0])


def clear(cur: psycopg.Cursor) -> None:
    """Forget the writes' ghosts and deltas: the dataset was ranked again."""
    cur.execute("TRUNCATE tile_ghosts, tile_deltas")
