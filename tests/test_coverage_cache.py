"""The coverage cache: answers kept as bytes per dataset and rounded options, bounded in
bytes, never answering for another dataset; and the reuse behind it (a reach measured
once serves every walk_m and min_population) changes no number."""

from __future__ import annotations

import json
import math
from collections import Counter

import h3
import numpy as np
import pytest
from flask import Flask

from geosearch.api import create_app
from geosearch.api.coverage import MAX_HEX_CELLS, ByteLRU, coverage_blueprint
from geosearch.api.responses import Encoded
from geosearch.backends.memory import MemoryBackend
from geosearch.model import Amenity
from geosearch.reports.coverage import (
    POPULATION_LADDER,
    WALK_STEP_M,
    Coverage,
    CoverageOptions,
)
from geosearch.reports.grid import cell_rows, city_grid
from geosearch.reports.reach import Reach
from geosearch.settings import Settings


@pytest.fixture
def app(memory_feed):
    return create_app(Settings(heavy_rate_limit="", client_budget=0), backend=memory_feed)


def plain(value):
    """A body or a table row as JSON reads it: NaN as None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def test_options_are_rounded_to_documented_steps():
    assert POPULATION_LADDER[0] == 50_000 and POPULATION_LADDER[-1] == 100_000_000
    for walk, rounded in [(1, 50), (74.9, 50), (75, 100), (990, 1000), (1024, 1000),
                          (1030, 1050), (49_990, 50_000)]:
        assert CoverageOptions(walk_m=walk).rounded().walk_m == rounded
    for population, rounded in [(50_000, 50_000), (99_999, 50_000), (100_000, 100_000),
                                (150_000, 100_000), (999_999, 500_000),
                                (100_000_000, 100_000_000)]:
        assert CoverageOptions(min_population=population).rounded().min_population == rounded
    on_steps = CoverageOptions(min_population=200_000, walk_m=2 * WALK_STEP_M)
    assert on_steps.rounded() == on_steps


def test_cached_bytes_equal_a_fresh_computation(app, memory_feed):
    """The second answer is the first one's bytes, and both are what a new app, and the
    library alone, compute for the rounded options; the reach they come from was
    measured before for other walk_m, min_population, views and countries."""
    client = app.test_client()
    for url in ("/v1/coverage/countries?res=7&amenities=wifi&walk_m=3000",
                "/v1/coverage/hexes?country=NZ&res=7&amenities=wifi&min_population=50000",
                "/v1/coverage/cities?country=DE&res=7&amenities=wifi&walk_m=500"):
        assert client.get(url).status_code == 200
    url = "/v1/coverage/cities?country=DE&res=7&amenities=wifi"
    first, again = (client.get(f"{url}&walk_m=1234&min_population=234567") for _ in range(2))
    assert first.status_code == again.status_code == 200
    assert again.data == first.data
    rounded = f"{url}&walk_m=1250&min_population=200000"
    fresh = create_app(Settings(heavy_rate_limit=""), backend=memory_feed).test_client()
    assert fresh.get(rounded).data == first.data

    options = CoverageOptions(min_population=200_000, walk_m=1250, res=7,
                              amenities=frozenset({Amenity.WIFI}))
    table = Coverage(memory_feed.active_frame(), options).city_table("DE")
    assert json.loads(first.data)["cities"] == plain(table.to_dict(orient="records"))


def test_hexes_from_the_cache_equal_the_library(app, memory_feed):
    client = app.test_client()
    client.get("/v1/coverage/countries?res=7")  # measures every cell's chord first
    url = "/v1/coverage/hexes?country=NZ&res=7&walk_m=777"
    first = client.get(url)
    assert client.get(url).data == first.data
    body = json.loads(first.data)
    cells = Coverage(memory_feed.active_frame(), CoverageOptions(walk_m=800, res=7)
                     ).country_cells("NZ")
    assert [f["id"] for f in body["features"]] == list(cells["h3"])
    assert [f["properties"]["covered"] for f in body["features"]] == list(cells["covered"])
    assert [f["properties"]["nearest_m"] for f in body["features"]] == [
        round(d, 1) for d in cells["nearest_m"]]


def test_values_within_one_step_share_one_entry(app):
    client = app.test_client()
    cache = app.extensions["coverage.cache"]
    first = client.get("/v1/coverage/cities?country=NZ&res=7&walk_m=990&min_population=120000")
    entries, computed = len(cache.entries), cache.computed
    for near in ("walk_m=1010&min_population=199999", "walk_m=1024&min_population=100000",
                 "walk_m=975&min_population=150000"):
        again = client.get(f"/v1/coverage/cities?country=NZ&res=7&{near}")
        assert again.data == first.data
    assert (len(cache.entries), cache.computed) == (entries, computed)
    other = client.get("/v1/coverage/cities?country=NZ&res=7&walk_m=1030&min_population=120000")
    assert json.loads(other.data)["options"]["walk_m"] == 1050
    assert len(cache.entries) == entries + 1 and cache.computed == computed  # same reach


def test_the_rounding_is_reported(app, memory_feed):
    client = app.test_client()
    for view in ("countries", "cities?country=NZ", "hexes?country=NZ"):
        sep = "&" if "?" in view else "?"
        resp = client.get(f"/v1/coverage/{view}{sep}res=6&walk_m=1234.5&min_population=345678")
        assert resp.status_code == 200
        assert json.loads(resp.data)["options"] == {
            "min_population": 200_000, "walk_m": 1250.0, "res": 6, "amenities": []}
        assert resp.headers["X-Dataset-Version"] == memory_feed.dataset_version()


def test_the_cache_never_exceeds_its_byte_bound(memory_feed):
    app = create_app(Settings(heavy_rate_limit=""), backend=memory_feed)
    client = app.test_client()
    cache = app.extensions["coverage.cache"]
    cache.entries.max_bytes = bound = 2_000_000
    seen = 0
    for country in ("DE", "GB", "FR", "NZ", "DE", "IT", "ES"):
        for walk in (500, 1000):
            resp = client.get(f"/v1/coverage/hexes?country={country}&res=7&walk_m={walk}")
            assert resp.status_code == 200
            kept = [v for v, _ in cache.entries._items.values()]
            assert cache.entries.nbytes == sum(v.nbytes for v in kept) <= bound
            seen += 1
    assert len(cache.entries) < seen  # some were dropped to stay within the bound


def test_an_answer_larger_than_the_bound_is_sent_not_kept(memory_feed):
    app = create_app(Settings(heavy_rate_limit=""), backend=memory_feed)
    cache = app.extensions["coverage.cache"]
    cache.entries.max_bytes = 100_000
    big = app.test_client().get("/v1/coverage/hexes?country=DE&res=7")
    assert big.status_code == 200 and len(big.data) > 100_000
    assert len(cache.entries) == 0 and cache.entries.nbytes == 0


def test_byte_lru_drops_the_least_recently_used():
    lru = ByteLRU(100)
    for key, size in [("a", 40), ("b", 40), ("c", 10)]:
        lru.put(key, Encoded(b"x" * size, ""))
    assert lru.get("a") is not None  # a is now more recent than b
    lru.put("d", Encoded(b"x" * 30, ""))
    assert lru.get("b") is None and all(lru.get(k) is not None for k in "acd")
    assert lru.nbytes == 80
    lru.put("e", Encoded(b"x" * 101, ""))
    assert lru.get("e") is None and lru.nbytes == 80


class Reloading:
    """A backend whose dataset can be replaced while it serves (the coverage API reads
    only the version and the active spaces)."""

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend
        self.next: MemoryBackend | None = None  # swapped in by the next frame read

    def dataset_version(self) -> str:
        return self.backend.dataset_version()

    def data_stamp(self) -> tuple[str, int]:
        return self.backend.data_stamp()

    def active_frame(self):
        frame = self.backend.active_frame()
        if self.next is not None:  # a new dataset arrives while the spaces are read
            self.backend, self.next = self.next, None
        return frame


def tiny(memory_feed, rows: int, version: str) -> MemoryBackend:
    return MemoryBackend.from_frame(memory_feed.active_frame().assign(
        name="", address="", postcode=None, capacity=None, price_day=None, currency=None,
        status="active", h3_r7="", h3_r8="", h3_r9="", geocode_precision="input").head(rows),
        version)


def test_a_new_dataset_is_never_answered_from_the_old_entry(memory_feed):
    backend = Reloading(tiny(memory_feed, 10, "v1"))
    app = Flask(__name__)
    app.register_blueprint(coverage_blueprint(backend), url_prefix="/v1")
    client = app.test_client()
    url = "/v1/coverage/countries?res=6"

    def spaces(resp) -> int:
        return sum(r["spaces"] for r in json.loads(resp.data)["countries"])

    old = client.get(url)
    assert (old.headers["X-Dataset-Version"], spaces(old)) == ("v1", 10)
    backend.backend = tiny(memory_feed, 20, "v2")
    new = client.get(url)
    assert (new.headers["X-Dataset-Version"], spaces(new)) == ("v2", 20)
    # a dataset replaced while its spaces are read (a new stamp: the spaces kept for v2
    # do not answer for it): they are read again, and the answer is the new dataset's
    backend.backend, backend.next = tiny(memory_feed, 25, "v3"), tiny(memory_feed, 30, "v4")
    during = client.get("/v1/coverage/countries?res=7")
    assert (during.headers["X-Dataset-Version"], spaces(during)) == ("v4", 30)
    assert spaces(client.get(url)) == 30


def test_hexes_over_the_cell_limit_are_refused_naming_res(app):
    client = app.test_client()
    assert len(cell_rows(8, 100_000, "IN")) > MAX_HEX_CELLS >= len(cell_rows(7, 100_000, "IN"))
    refused = client.get("/v1/coverage/hexes?country=IN")
    assert refused.status_code == 400
    assert refused.content_type == "application/problem+json"
    assert [e["param"] for e in refused.get_json()["errors"]] == ["res"]
    lower = client.get("/v1/coverage/hexes?country=IN&res=7")
    assert lower.status_code == 200
    assert json.loads(lower.data)["numberReturned"] == len(cell_rows(7, 100_000, "IN"))


@pytest.mark.parametrize("res", [6, 7])
def test_covered_from_chords_is_the_exact_geodesic_rule(memory_feed, res):
    """Covered cells decided by chord bounds, exactly as by the measured geodesic: at
    walks equal to a cell's own distance, and just below it."""
    frame = memory_feed.active_frame()
    amenities = frozenset({Amenity.WIFI})
    rows = cell_rows(res, 50_000)
    metres = Reach(frame, res, amenities).metres(rows)
    finite = np.sort(metres[np.isfinite(metres)])
    for walk in [*finite[:: max(1, len(finite) // 12)], 1000.0]:
        for w in (walk, np.nextafter(walk, 0)):
            covered = Reach(frame, res, amenities).covered(rows, float(w))
            assert np.array_equal(covered, metres <= w)


@pytest.mark.parametrize("res", [6, 7, 8])
def test_spaces_per_cell_equal_each_space_counted_in_its_own_cell(memory_feed, res):
    """A country's cells count the spaces found near them exactly as every space's own
    H3 cell does, and asking for every cell at once counts the same."""
    frame = memory_feed.active_frame()
    amenities = frozenset({Amenity.WIFI})
    counted = frame[[{a.value for a in amenities} <= set(x) for x in frame["amenities"]]]
    own = Counter(h3.latlng_to_cell(lat, lon, res)
                  for lat, lon in zip(counted["lat"], counted["lon"], strict=True))
    grid = city_grid(res)
    for country in ("DE", "GB", "NZ"):
        rows = cell_rows(res, 50_000, country)
        expected = [own.get(h, 0) for h in grid["h3"].to_numpy()[rows]]
        assert sum(expected) > 0
        assert Reach(frame, res, amenities).spaces_in(rows).tolist() == expected
        every = Reach(frame, res, amenities).spaces_in(np.arange(len(grid)))
        assert every[rows].tolist() == expected
