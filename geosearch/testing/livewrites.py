"""Live writes driven through the API and their answers checked against the oracle
(tests of the writes on PostGIS and of the memory index that follows them).

:func:`service` serves a loaded database (PostGIS, or the memory follower of it) with
keys of each scope; :func:`random_writes` makes random creates, patches and closes
through the API and keeps a model of the spaces as the answers say; :func:`check_searches`
and :func:`check_tiles_where_written` hold a backend's answers to the brute-force oracle
over that model (:mod:`geosearch.testing.oracle`). Plain asserts, so that any test runner
reports them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import SimpleNamespace

import pandas as pd

from geosearch.api import create_app
from geosearch.backends.base import Backend
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import make_engine
from geosearch.geo import bbox_area
from geosearch.keys import KeyStore
from geosearch.model import (
    Amenity,
    Filters,
    ListQuery,
    NearestQuery,
    Point,
    PolygonQuery,
    RadiusQuery,
)
from geosearch.settings import Settings
from geosearch.store import load
from geosearch.testing import oracle
from geosearch.testing.tilecheck import FILTERS, ZOOMS, check_tile, tile_of
from geosearch.text import query_terms

BERLIN = [13.3777, 52.5163]  # lon, lat: in DE, far from its border
MERGE = "application/merge-patch+json"
WORDS = ["Hub", "Loft", "Werk", "Atelier", "Garage", "Kontor", "Studio", "Quelle"]


def loaded(make_database: Callable[[str], str], result, name: str) -> str:
    """The URL of a new database (``make_database(name)``) with ``result`` loaded."""
    url = make_database(name)
    engine = make_engine(Settings(database_url=url))
    try:
        load(result.frame, result.meta(), engine)
    finally:
        engine.dispose()
    return url


def service(url: str, backend: Callable[[PostgisBackend], Backend] | None = None
            ) -> SimpleNamespace:
    """The app over the database at ``url`` (its backend PostGIS, or made of it by
    ``backend``), a test client, and keys of each scope (``auth``: headers)."""
    settings = Settings(database_url=url, write_rate_limit="")
    primary = PostgisBackend(settings)
    served = primary if backend is None else backend(primary)
    app = create_app(settings, backend=served)
    keys = KeyStore(settings)
    auth = {name: {"Authorization": f"Bearer {keys.create(name, scopes)}"}
            for name, scopes in (("writer", ["write"]), ("follower", ["changes"]))}
    return SimpleNamespace(url=url, app=app, backend=served, keys=keys, auth=auth,
                           client=app.test_client())


def close(served: SimpleNamespace) -> None:
    """Close what :func:`service` opened."""
    served.app.extensions["geosearch.writes"].close()
    served.keys.close()
    served.backend.close()


def feature(name: str, coordinates=None, **properties) -> dict:
    """A write's body: a space in Berlin unless told otherwise."""
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": coordinates or BERLIN},
            "properties": {"name": name, "address": "Unter den Linden 1", "city": "Berlin",
                           "country": "DE", "amenities": ["wifi"], "capacity": 10,
                           "price_day": 20.0, "currency": "EUR", **properties}}


def model(result) -> dict[str, dict]:
    """id -> the fields the oracle reads, of the active spaces of a result."""
    frame = result.frame[result.frame["status"] == "active"]
    return {row.id: {"id": row.id, "lat": row.lat, "lon": row.lon, "name": row.name,
                     "address": row.address, "city": row.city, "country": row.country,
                     "amenities": list(row.amenities),
                     "capacity": None if pd.isna(row.capacity) else int(row.capacity)}
            for row in frame.itertuples()}


def fields(body: dict) -> dict:
    """The fields the oracle reads, of a Feature the API answered."""
    props = body["properties"]
    lon, lat = body["geometry"]["coordinates"]
    return {"id": body["id"], "lat": lat, "lon": lon,
            **{k: props[k] for k in ("name", "address", "city", "country", "capacity")},
            "amenities": list(props["amenities"])}


def frame_of(spaces: dict[str, dict]) -> pd.DataFrame:
    """The model as the oracle reads it: a frame by id."""
    return pd.DataFrame(sorted(spaces.values(), key=lambda s: s["id"]))


def random_writes(served: SimpleNamespace, spaces: dict[str, dict], rng: random.Random,
                  count: int) -> int:
    """``count`` random creates, patches and closes through the API, the model
    ``spaces`` kept as each answer says; how many were written."""
    anchors = [s for s in spaces.values() if s["country"] in ("DE", "GB", "FR", "ES")]
    writer = served.auth["writer"]
    written = 0
    for i in range(count):
        kind = rng.choice(["create", "create", "patch", "patch", "close"])
        if kind == "create":
            at = rng.choice(anchors)
            doc = feature(f"{rng.choice(WORDS)} Live{i} {rng.choice(WORDS)}",
                          [at["lon"] + rng.uniform(-0.01, 0.01),
                           at["lat"] + rng.uniform(-0.01, 0.01)],
                          country=at["country"], city=at["city"],
                          amenities=rng.sample([a.value for a in Amenity], 3),
                          capacity=rng.choice([None, 5, 20, 80]))
            answer = served.client.post("/v1/spaces", json=doc, headers=writer)
        else:
            space_id = rng.choice(sorted(spaces))
            got = served.client.get(f"/v1/spaces/{space_id}")
            etag = got.headers["ETag"]
            if kind == "close":
                answer = served.client.delete(f"/v1/spaces/{space_id}",
                                              headers={**writer, "If-Match": etag})
                assert answer.status_code == 204
                del spaces[space_id]
                written += 1
                continue
            old = got.get_json()
            patch = rng.choice([
                {"properties": {"capacity": rng.choice([None, 1, 30, 300])}},
                {"properties": {"amenities": rng.sample([a.value for a in Amenity], 2)}},
                {"properties": {"name": f"{rng.choice(WORDS)} Neu{i}"}},
                {"geometry": {"type": "Point", "coordinates": [
                    old["geometry"]["coordinates"][0] + rng.uniform(-0.005, 0.005),
                    old["geometry"]["coordinates"][1] + rng.uniform(-0.005, 0.005)]}},
            ])
            answer = served.client.patch(f"/v1/spaces/{space_id}", json=patch,
                                         headers={**writer, "If-Match": etag,
                                                  "Content-Type": MERGE})
        if answer.status_code in (200, 201):
            body = answer.get_json()
            spaces[body["id"]] = fields(body)
            written += 1
        else:  # a duplicate or a point just outside its country: nothing written
            assert answer.status_code in (409, 422), answer.get_data(as_text=True)
    return written


def ids(hits) -> list[str]:
    """The ids of hits, in order."""
    return [h.space.id for h in hits]


def walk(search, query) -> list:
    """Every hit of a paged query, page after page."""
    hits, after = [], None
    while True:
        page = search(replace(query, after=after))
        hits += list(page.hits)
        if page.next_after is None:
            return hits
        after = page.next_after


def with_text(filters: Filters, rng: random.Random) -> Filters:
    """The filters and a ``q`` of a word the writes use."""
    return Filters(filters.all_amenities, filters.any_amenities, filters.countries,
                   filters.city, filters.min_capacity,
                   query_terms(rng.choice([*WORDS, "live", "neu"])))


def check_searches(backends: Sequence[Backend], frame: pd.DataFrame, rng: random.Random,
                   nearest_text: bool = False, origins: int = 25) -> None:
    """Radius, areas (by id and by distance) and nearest around ``origins`` spaces of the
    data, with and without text, the list and the counts: each backend's answers equal to
    the oracle over ``frame``; nearest with text only when ``nearest_text`` (PostGIS:
    see docs/deploy.md on the word plane's counts)."""
    for _ in range(origins):
        at = frame.iloc[rng.randrange(len(frame))]
        origin = Point(float(at["lat"]), float(at["lon"]))
        f = Filters(all_amenities=frozenset(rng.sample(list(Amenity), rng.choice([0, 1]))),
                    min_capacity=rng.choice([None, 10]),
                    countries=rng.choice([frozenset(), frozenset({at["country"]})]))
        area = bbox_area(origin.lon - 0.3, origin.lat - 0.2, origin.lon + 0.3,
                         origin.lat + 0.2)
        text = with_text(f, rng)
        for filters in (f, text):
            want = [i for i, _ in oracle.radius(frame, origin.lat, origin.lon, 20_000, filters)]
            want_area = [i for i, _ in oracle.area(frame, area, filters)]
            want_by_distance = [i for i, _ in oracle.area(frame, area, filters,
                                                          (origin.lat, origin.lon))]
            for backend in backends:
                assert ids(walk(backend.radius, RadiusQuery(origin, 20_000, filters, 100))) == want
                assert ids(walk(backend.polygon, PolygonQuery(area, filters, None, 100))
                           ) == want_area
                assert ids(walk(backend.polygon, PolygonQuery(area, filters, origin, 100))
                           ) == want_by_distance
                assert backend.count(PolygonQuery(area, filters)) == len(want_area)
        for filters in (f, text) if nearest_text else (f,):
            want_k = [i for i, _ in oracle.nearest(frame, origin.lat, origin.lon, 10, None,
                                                   filters)]
            for backend in backends:
                assert ids(backend.nearest(NearestQuery(origin, 10, None, filters))) == want_k
    for filters in (Filters(), with_text(Filters(), rng), Filters(countries=frozenset({"DE"}))):
        want_list = [i for i, _ in oracle.area(frame, bbox_area(-180, -90, 180, 90), filters)]
        for backend in backends:
            assert ids(walk(backend.list, ListQuery(filters, 500))) == want_list
            assert backend.count(ListQuery(filters)) == len(want_list)


def check_tiles_where_written(backend: Backend, before: dict[str, dict],
                              after: dict[str, dict], rng: random.Random) -> None:
    """The tiles at every zoom around spaces created, changed and closed count each space
    of their bbox query once."""
    changed = [s for i, s in sorted(after.items()) if before.get(i) != s]
    closed = [s for i, s in sorted(before.items()) if i not in after]
    assert changed and closed
    for space in rng.sample(changed, 3) + rng.sample(closed, 2):
        for z in ZOOMS:
            for filters in FILTERS.values():
                check_tile(backend, *tile_of(space["lat"], space["lon"], z), filters)
