"""Vector tiles on both backends: every space of a tile counted once, against the bbox
query of the tile's bounds, the same tiles from both backends, and the HTTP endpoint."""

from __future__ import annotations

import math

import orjson
import pytest

from geosearch.model import Amenity, Filters, TileQuery
from geosearch.testing.tilecheck import FILTERS, ZOOMS, bbox_ids, check_tile, decode, tile_of
from geosearch.tiles import MVT_MEDIA_TYPE

# From the world to a street over: a dense city, both sides of the antimeridian, the
# Mercator square's northern edge, the southern hemisphere.
PLACES = {"berlin": (52.52, 13.40), "suva-east": (-17.8, 179.7), "suva-west": (-17.8, -179.7),
          "north-edge": (84.9, 20.0), "sao-paulo": (-23.55, -46.63), "paris": (48.8566, 2.3522)}


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("filters", sorted(FILTERS))
def test_tiles_count_each_space_once_against_the_bbox_query(synthetic_backend, feed_backend,
                                                             place, filters):
    lat, lon = PLACES[place]
    for backend in (synthetic_backend, feed_backend):
        for z in ZOOMS:
            check_tile(backend, *tile_of(lat, lon, z), FILTERS[filters])


def test_a_tile_counts_what_its_four_children_count(synthetic_backend):
    """Cells nest: a tile's clusters and points hold exactly its children's spaces."""
    def total(z, x, y):
        tile = synthetic_backend.tile(TileQuery(z, x, y))
        return int(tile.count.sum())

    for z in range(0, 13):
        z, x, y = tile_of(*PLACES["berlin"], z)
        children = sum(total(z + 1, 2 * x + dx, 2 * y + dy) for dx in (0, 1) for dy in (0, 1))
        assert total(z, x, y) == children


def test_the_world_tile_clusters_every_space_in_the_square(synthetic_backend,
                                                           synthetic_result):
    frame = synthetic_result.frame
    inside = frame[(frame["status"] == "active") & (frame["lat"].abs() <= 85.0511287798)]
    features = decode(synthetic_backend.tile_mvt(TileQuery(0, 0, 0))[0])
    assert sum(f["properties"].get("count", 1) for f in features) == len(inside)
    assert len(features) <= 64


@pytest.mark.postgis  # asks for its PostGIS backend by name
@pytest.mark.parametrize("dataset", ["feed", "synthetic"])
def test_both_backends_give_the_same_tiles(request, dataset):
    memory = request.getfixturevalue(f"memory_{dataset}")
    postgis = request.getfixturevalue(f"postgis_{dataset}")
    for place, (lat, lon) in sorted(PLACES.items()):
        for name, filters in sorted(FILTERS.items()):
            for z in ZOOMS:
                z, x, y = tile_of(lat, lon, z)
                query = TileQuery(z, x, y, filters)
                mine = decode(memory.tile_mvt(query)[0])
                theirs = decode(postgis.tile_mvt(query)[0])
                where = f"{place} {name} {z}/{x}/{y}"
                assert len(mine) == len(theirs), where
                for a, b in zip(mine, theirs, strict=True):
                    assert a["properties"] == b["properties"], where
                    for p, q in zip(a["geometry"]["coordinates"], b["geometry"]["coordinates"],
                                    strict=True):
                        # a cluster's mean may round to the neighbouring pixel
                        assert abs(p - q) <= (0 if "id" in a["properties"] else 1), where
                assert memory.tile(query).ids == postgis.tile(query).ids, where


def test_tile_features_carry_positions_and_attributes(memory_feed, feed_result):
    frame = feed_result.frame.set_index("id")
    z, x, y = tile_of(*PLACES["paris"], 13)
    tile = memory_feed.tile(TileQuery(z, x, y))
    assert len(tile) > 0
    doc = orjson.loads(tile.geojson())
    for feature in doc["features"]:
        space = frame.loc[feature["id"]]
        lon, lat = feature["geometry"]["coordinates"]
        assert math.isclose(lon, space["lon"], abs_tol=1e-6)
        assert math.isclose(lat, space["lat"], abs_tol=1e-6)
        assert feature["properties"]["name"] == space["name"]
        assert feature["properties"]["amenities"] == ",".join(space["amenities"])


# -- HTTP -----------------------------------------------------------------------------------

def test_the_tile_endpoint_serves_mvt_with_an_etag(client):
    z, x, y = tile_of(*PLACES["berlin"], 10)
    url = f"/v1/tiles/{z}/{x}/{y}.mvt"
    response = client.get(url)
    assert response.status_code == 200
    assert response.mimetype == MVT_MEDIA_TYPE
    assert "max-age" in response.headers["Cache-Control"]
    etag = response.headers["ETag"]
    assert decode(response.data)
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.data
    filtered = client.get(url + "?amenities=wifi")
    assert filtered.headers["ETag"] != etag
    assert client.get(url + "?amenities=wifi",
                      headers={"If-None-Match": etag}).status_code == 200


def test_the_tile_endpoint_applies_the_filters(client, memory_feed):
    z, x, y = tile_of(*PLACES["paris"], 12)
    response = client.get(f"/v1/tiles/{z}/{x}/{y}.mvt?amenities=wifi,parking&min_capacity=5")
    ids = sorted(f["properties"]["id"] for f in decode(response.data))
    filters = Filters(all_amenities=frozenset({Amenity.WIFI, Amenity.PARKING}), min_capacity=5)
    assert ids == sorted(bbox_ids(memory_feed, z, x, y, filters))


def test_the_json_tile_has_the_same_features(client):
    z, x, y = tile_of(*PLACES["berlin"], 6)
    mvt = decode(client.get(f"/v1/tiles/{z}/{x}/{y}.mvt").data)
    doc = client.get(f"/v1/tiles/{z}/{x}/{y}.json").get_json()
    assert len(doc["features"]) == len(mvt)
    assert [f["properties"] for f in doc["features"]] == [f["properties"] for f in mvt]


@pytest.mark.parametrize(("path", "param"), [
    ("/v1/tiles/23/0/0.mvt", "z"),
    ("/v1/tiles/3/8/0.mvt", "x"),
    ("/v1/tiles/3/0/99999999999999999999999.mvt", "y"),
    ("/v1/tiles/3/0/0.mvt?amenities=sauna", "amenities"),
    ("/v1/tiles/3/0/0.mvt?min_capacity=-1", "min_capacity"),
])
def test_bad_tile_requests_are_400s_naming_the_parameter(client, path, param):
    response = client.get(path)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert param in {e["param"] for e in response.get_json()["errors"]}


def test_unknown_tile_formats_are_404(client):
    response = client.get("/v1/tiles/3/0/0.png")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
