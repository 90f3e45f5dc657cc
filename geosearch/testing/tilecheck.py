"""Vector tiles checked against the bbox query of their bounds (both backends, and
PostGIS after writes): every space of a tile counted once, as a point or in one cluster's
count; plain asserts, so that any test runner reports them."""

from __future__ import annotations

import mapbox_vector_tile
import numpy as np

from geosearch.backends.base import Backend
from geosearch.geo import bbox_area
from geosearch.model import POINT_ZOOM, Amenity, Filters, PolygonQuery, TileQuery
from geosearch.tiles import EXTENT, tile_bounds, world_xy

# Zooms from the world to a street, and filters of each kind of cluster query
ZOOMS = (0, 1, 3, 5, 8, 10, 11, 12, 14, 16)
FILTERS = {"none": Filters(), "wifi": Filters(all_amenities=frozenset({Amenity.WIFI})),
           "mixed": Filters(any_amenities=frozenset({Amenity.PARKING, Amenity.KITCHEN}),
                            min_capacity=10)}


def tile_of(lat: float, lon: float, z: int) -> tuple[int, int, int]:
    """The tile (z, x, y) that holds the point."""
    x, y = world_xy(np.array([lat]), np.array([lon]))
    return z, int(x[0] * (1 << z)), int(y[0] * (1 << z))


def bbox_ids(backend: Backend, z: int, x: int, y: int, filters: Filters) -> list[str]:
    """The ids the bbox query of the tile's bounds returns, every page."""
    ids, after = [], None
    area = bbox_area(*tile_bounds(z, x, y))
    while True:
        page = backend.polygon(PolygonQuery(area, filters, limit=500, after=after))
        ids += [h.space.id for h in page.hits]
        if page.next_after is None:
            return ids
        after = page.next_after


def decode(data: bytes) -> list[dict]:
    """The features of an MVT's ``spaces`` layer (checks the layer's header)."""
    if not data:
        return []
    layers = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})
    assert set(layers) == {"spaces"}
    assert layers["spaces"]["extent"] == EXTENT and layers["spaces"]["version"] == 2
    return layers["spaces"]["features"]


def check_tile(backend: Backend, z: int, x: int, y: int, filters: Filters) -> list[dict]:
    """The tile's MVT against the bbox query: each space once, as a point with its id or
    in one cluster's count; points from POINT_ZOOM up; every feature inside the extent."""
    features = decode(backend.tile_mvt(TileQuery(z, x, y, filters))[0])
    expected = bbox_ids(backend, z, x, y, filters)
    ids = [f["properties"]["id"] for f in features if "id" in f["properties"]]
    counts = [f["properties"]["count"] for f in features if "count" in f["properties"]]
    assert len(ids) == len(set(ids)) and set(ids) <= set(expected)
    assert len(ids) + sum(counts) == len(expected)
    assert all(n >= 2 for n in counts)
    if z >= POINT_ZOOM:
        assert not counts and sorted(ids) == sorted(expected)
    for f in features:
        assert f["geometry"]["type"] == "Point"
        assert all(0 <= c < EXTENT for c in f["geometry"]["coordinates"])
        if "id" in f["properties"]:
            assert set(f["properties"]) == {"id", "name", "amenities"}
        else:
            assert set(f["properties"]) == {"count"}
    return features
