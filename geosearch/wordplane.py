"""The word plane: every (active space, word) pair as a point, each word in a tile of
its own, so that one GiST index finds a word's spaces near an origin.

PostGIS indexes a space once, by its position, and its words apart (GIN): nearest with
``q`` must then walk outwards past every space until k of them match, about k over the
term's share of the spaces. In the plane, a word's spaces are a tile
``[tile * PITCH, tile * PITCH + 360] x [-90, 90]`` (longitude + 180, latitude): walking
outwards within the rarest term's tiles meets only its spaces. PostgreSQL's ``point``
opclass builds its GiST index by sorting (a ``(word, geog)`` index through btree_gist is
built by insertion, many times slower) and keeps float8 coordinates, so that tiles a
thousand apart stay exact.

A word in at least :data:`MAX_SHARE` of the active spaces gets no tile: walking outwards
meets k of its spaces within k / share, and leaving such words out keeps the plane at
about two thirds of the pairs.
"""

from __future__ import annotations

import numpy as np

PITCH = 1000
MAX_SHARE = 1 / 8


def tiles(spaces: np.ndarray, active: int) -> np.ndarray:
    """Each word's tile (words in code point order, ``spaces`` their active spaces), -1
    for a word in at least MAX_SHARE of the ``active`` spaces or in none; tiles number
    the others in order.

    >>> tiles(np.array([3, 40, 0, 1]), 100).tolist()
    [0, -1, -1, 1]
    """
    tiled = (spaces > 0) & (spaces < MAX_SHARE * active)
    return np.where(tiled, np.cumsum(tiled) - 1, -1)


def plane_x(tile: np.ndarray | int, lon: np.ndarray | float) -> np.ndarray | float:
    """The plane's x of a position in a word's tile: ``tile * PITCH + lon + 180`` (the
    load's points and a write's, the same doubles)."""
    return tile * float(PITCH) + lon + 180.0


# A row of PostgreSQL's binary COPY of (point, integer): the field count, then each
# field's length and value (a point is two float8), big-endian
_COPY_ROW = np.dtype([("fields", ">i2"), ("pt_size", ">i4"), ("x", ">f8"), ("y", ">f8"),
                      ("place_size", ">i4"), ("place", ">i4")])
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no extension
_COPY_TRAILER = b"\xff\xff"


def points_copy(row: np.ndarray, tile: np.ndarray, lon: np.ndarray, lat: np.ndarray
                ) -> bytes:
    """The ``word_points`` rows in PostgreSQL's binary COPY format, written by numpy: for
    each (row, tile) pair, the point ``(tile * PITCH + lon + 180, lat)`` of the row's
    position and ``place``, the row itself."""
    rows = np.empty(len(row), dtype=_COPY_ROW)
    rows["fields"], rows["pt_size"], rows["place_size"] = 2, 16, 4
    rows["x"] = plane_x(tile, lon[row])
    rows["y"] = lat[row]
    rows["place"] = row
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER
