"""Vector tiles of spaces: Web Mercator keys built once per dataset, clusters, encoders.

Every active space inside the Web Mercator square (``|lat| <= 85.0511°``; the square's
tiles cover nothing beyond it) gets, once per dataset, its world position ``(x, y)`` in
``[0, 1)`` (``y`` down, as tiles count) and the Morton key of its pixel at zoom
:data:`KEY_LEVEL`: the bits of the two pixel coordinates interleaved. Sorting the spaces
by (key, id) puts every tile, and every cell of a tile's cluster grid, in one contiguous
run, so that

- a tile's spaces are a range of the sorted keys (two binary searches), and
- below :data:`~geosearch.model.POINT_ZOOM`, with no filter, each of a tile's
  ``8 x 8`` cluster cells is counted and located from prefix sums (the number of spaces
  and the sums of their positions before each one in that order), whatever the number of
  spaces in the tile: a world tile at a million spaces reads 65 positions, not a million
  rows. A filtered tile groups the tile's rows that pass.

A space belongs to exactly one tile per zoom (pixel edges are half-open), and to one cell
of it: a cell holding one space is drawn as that space (``id``, ``name``, ``amenities``),
a cell holding more as a cluster with its ``count`` at its spaces' mean position.

Both backends build these columns with :class:`TileIndex` (the memory backend at load,
PostGIS in columns written by the loader) and compute positions with the same float
arithmetic, so that their tiles agree space for space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import orjson

EXTENT = 4096
EXTENT_BITS = 12
KEY_LEVEL = 24
CLUSTER_BITS = 3  # a tile below POINT_ZOOM clusters on a 2**3 x 2**3 grid
MAX_MERCATOR_LAT = 85.05112877980659
LAYER = "spaces"
MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
_MOVE_TO_ONE = 9  # MVT geometry command: MoveTo (1), repeated once


def world_xy(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Web Mercator world positions in ``[0, 1)`` (``y`` down); NaN outside the square.

    >>> [float(v) for v in np.concatenate(world_xy(np.array([0.0]), np.array([0.0])))]
    [0.5, 0.5]
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    inside = np.abs(lat) <= MAX_MERCATOR_LAT
    phi = np.radians(np.where(inside, lat, 0.0))
    x = (lon + 180.0) / 360.0
    y = 0.5 - np.log(np.tan(math.pi / 4 + phi / 2)) / (2 * math.pi)
    below_one = np.nextafter(1.0, 0.0)
    x = np.clip(x, 0.0, below_one)
    y = np.clip(y, 0.0, below_one)
    return np.where(inside, x, np.nan), np.where(inside, y, np.nan)


def lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`world_xy`: longitudes and latitudes of world positions."""
    lon = np.asarray(x, dtype=float) * 360.0 - 180.0
    lat = np.degrees(np.arctan(np.sinh(math.pi * (1.0 - 2.0 * np.asarray(y, dtype=float)))))
    return lon, lat


# Integers whose bits are moved: uint64 arrays, or one Python int
_Bits = TypeVar("_Bits", int, np.ndarray)


def _spread(v: _Bits) -> _Bits:
    """The bits of 32-bit integers (uint64 arrays, or one Python int) moved to the even
    bit positions of 64-bit ones."""
    for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF),
                        (4, 0x0F0F0F0F0F0F0F0F), (2, 0x3333333333333333),
                        (1, 0x5555555555555555)):
        v = (v | (v << shift)) & mask
    return v


def _interleave(px: _Bits, py: _Bits) -> _Bits:
    """x bits even, y bits odd (uint64 arrays, or Python ints: one point's key without
    numpy's cost per call)."""
    return _spread(px) | (_spread(py) << 1)


def morton(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Morton codes of pixel (or tile) coordinates: x bits even, y bits odd.

    >>> morton(np.array([1, 0, 3]), np.array([0, 1, 3])).tolist()
    [1, 2, 15]
    """
    return _interleave(np.asarray(px).astype(np.uint64),
                       np.asarray(py).astype(np.uint64)).astype(np.int64)


_KEY_SCALE = float(1 << KEY_LEVEL)


def world_keys(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The keys (Morton codes of the pixels at :data:`KEY_LEVEL`) of world positions
    inside the square."""
    return morton((x * _KEY_SCALE).astype(np.int64), (y * _KEY_SCALE).astype(np.int64))


def point_tile(lat: float, lon: float) -> tuple[int, float, float] | None:
    """The key and world position ``(key, x, y)`` of one point, by the arithmetic of
    :class:`TileIndex` (a space written alone gets what a load gives it: the same
    doubles, the pixel truncated as ``astype`` does); None outside the square.

    >>> point_tile(0.0, 0.0) == (int(world_keys(np.array([0.5]), np.array([0.5]))[0]),
    ...                          0.5, 0.5)
    True
    """
    xs, ys = world_xy(np.array([lat]), np.array([lon]))
    x, y = float(xs[0]), float(ys[0])
    if math.isnan(x):
        return None
    return _interleave(int(x * _KEY_SCALE), int(y * _KEY_SCALE)), x, y


def tile_span(z: int, x: int, y: int) -> tuple[int, int]:
    """The keys of tile ``z/x/y``: ``[low, high)``."""
    shift = 2 * (KEY_LEVEL - z)
    code = int(morton(np.array([x]), np.array([y]))[0])
    return code << shift, (code + 1) << shift


def cell_bounds(z: int, x: int, y: int) -> np.ndarray:
    """The key bounds of the tile's cluster cells: cell ``i`` is ``[b[i], b[i + 1])``."""
    code = int(morton(np.array([x]), np.array([y]))[0])
    first = code << (2 * CLUSTER_BITS)
    cells = np.arange(first, first + (1 << (2 * CLUSTER_BITS)) + 1, dtype=np.int64)
    return cells << np.int64(2 * (KEY_LEVEL - z - CLUSTER_BITS))


def cell_shift(z: int) -> int:
    """Right shift that turns a key into its cluster cell at zoom ``z``."""
    return 2 * (KEY_LEVEL - z - CLUSTER_BITS)


def pixels(world: np.ndarray, z: int, tile: int) -> np.ndarray:
    """Tile pixel coordinates (0 .. EXTENT - 1) of world coordinates along one axis.

    Exact float arithmetic (powers of two), written the same way in SQL."""
    scale = float(1 << (z + EXTENT_BITS))
    return np.clip(np.floor(world * scale) - tile * EXTENT, 0, EXTENT - 1).astype(np.int64)


class TileIndex:
    """The tile columns of one dataset: every space's world position and key, and the
    active spaces inside the square in (key, id) order with prefix sums of positions.

    ``order`` holds row numbers; ``prefix_x[i]`` is the sum of the ``x`` of the first
    ``i``. ``ids`` break ties of keys as the ids sort (None: the rows are in id order).
    """

    def __init__(self, lat: np.ndarray, lon: np.ndarray, ids: np.ndarray | None,
                 active: np.ndarray) -> None:
        self.x, self.y = world_xy(lat, lon)
        inside = ~np.isnan(self.x)
        key = np.full(len(self.x), -1, dtype=np.int64)
        key[inside] = world_keys(self.x[inside], self.y[inside])
        self.key = key
        served = np.flatnonzero(inside & np.asarray(active, dtype=bool))
        by_key = (np.argsort(key[served], kind="stable") if ids is None else
                  np.lexsort((np.asarray(ids)[served], key[served])))
        self.order = served[by_key]
        self.keys = key[self.order]
        self.prefix_x = np.concatenate(([0.0], np.cumsum(self.x[self.order])))
        self.prefix_y = np.concatenate(([0.0], np.cumsum(self.y[self.order])))

    def ranks(self) -> np.ndarray:
        """Each row's place in ``order`` (-1 for a space in no tile)."""
        rank = np.full(len(self.key), -1, dtype=np.int64)
        rank[self.order] = np.arange(len(self.order))
        return rank

    @property
    def count(self) -> int:
        """Spaces in some tile (active, inside the square)."""
        return len(self.order)

    def span(self, z: int, x: int, y: int) -> tuple[int, int]:
        """Positions in ``order`` of the tile's spaces: ``[start, stop)``."""
        low, high = tile_span(z, x, y)
        start, stop = np.searchsorted(self.keys, [low, high])
        return int(start), int(stop)

    def cells(self, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray]:
        """The tile's non-empty cluster cells, unfiltered: position in ``order`` of each
        cell's first space, its count, and its spaces' mean world position."""
        bounds = np.searchsorted(self.keys, cell_bounds(z, x, y))
        first, last = bounds[:-1], bounds[1:]
        count = last - first
        full = count > 0
        first, last, count = first[full], last[full], count[full]
        mean_x = (self.prefix_x[last] - self.prefix_x[first]) / count
        mean_y = (self.prefix_y[last] - self.prefix_y[first]) / count
        return first, count, mean_x, mean_y


@dataclass
class TileFeatures:
    """The features of one tile: clusters (``count`` > 1, no id) and spaces (``count``
    1, with ``id``, ``name`` and ``amenities``), each at a world position; ``version``:
    the dataset version they were read from."""

    z: int
    x: int
    y: int
    world_x: np.ndarray
    world_y: np.ndarray
    count: np.ndarray
    ids: list
    names: list
    amenities: list
    version: str | None = None

    def __len__(self) -> int:
        return len(self.count)

    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """Each feature's position in tile coordinates (0 .. EXTENT - 1)."""
        return pixels(self.world_x, self.z, self.x), pixels(self.world_y, self.z, self.y)

    def mvt(self) -> bytes:
        """Mapbox Vector Tile 2.1 bytes: one layer ``spaces`` of points (empty bytes for
        an empty tile, as PostGIS' ``ST_AsMVT`` gives)."""
        if not len(self):
            return b""
        from mapbox_vector_tile.Mapbox import vector_tile_pb2

        tile = vector_tile_pb2.tile()
        layer = tile.layers.add()
        layer.name, layer.version, layer.extent = LAYER, 2, EXTENT
        layer.keys.extend(("id", "name", "amenities", "count"))
        values: dict[tuple[type, str | int], int] = {}

        def value(v: str | int) -> int:
            index = values.get((type(v), v))
            if index is None:
                index = values[(type(v), v)] = len(values)
                slot = layer.values.add()
                if isinstance(v, str):
                    slot.string_value = v
                else:
                    slot.uint_value = v
            return index

        px, py = self.pixels()
        zigzag_x = (px << 1).tolist()  # coordinates are never negative: zigzag is 2n
        zigzag_y = (py << 1).tolist()
        for i, n in enumerate(self.count.tolist()):
            feature = layer.features.add()
            feature.type = vector_tile_pb2.tile.Point
            if n == 1:
                feature.tags.extend((0, value(self.ids[i]), 1, value(self.names[i]),
                                     2, value(self.amenities[i])))
            else:
                feature.tags.extend((3, value(n)))
            feature.geometry.extend((_MOVE_TO_ONE, zigzag_x[i], zigzag_y[i]))
        return tile.SerializeToString()

    def geojson(self) -> bytes:
        """The same features as a GeoJSON FeatureCollection in lon/lat (for pages that
        draw markers rather than vector tiles)."""
        lon, lat = lonlat(self.world_x, self.world_y)
        features = []
        for i, n in enumerate(self.count.tolist()):
            properties = ({"count": n} if n > 1 else
                          {"id": self.ids[i], "name": self.names[i],
                           "amenities": self.amenities[i]})
            features.append({"type": "Feature", **({"id": self.ids[i]} if n == 1 else {}),
                             "geometry": {"type": "Point",
                                          "coordinates": [round(float(lon[i]), 7),
                                                          round(float(lat[i]), 7)]},
                             "properties": properties})
        return orjson.dumps({"type": "FeatureCollection", "features": features})


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The tile's lon/lat bounds: ``(west, south, east, north)``.

    >>> tile_bounds(1, 1, 0)[0], round(tile_bounds(1, 1, 0)[3], 4)
    (0.0, 85.0511)
    """
    n = float(1 << z)
    (west, east), (north, south) = lonlat(np.array([x / n, (x + 1) / n]),
                                          np.array([y / n, (y + 1) / n]))
    return float(west), float(south), float(east), float(north)
