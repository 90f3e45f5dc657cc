"""OGC API - Features - Part 4 at /ogc/collections/spaces/items, over PostGIS: create,
replace, update (JSON Merge Patch) and delete by the /v1 write views and rules (keys,
If-Match, 422, 409, 412, 428), with Part 4's own answers (400 for a body without
Content-Type or in another CRS, 404 before 428 for an id that is not there, OPTIONS with
Allow, Accept-Post and Accept-Patch); the conformance classes declared over a database
only; a server over a snapshot answers 405 and declares none.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import psycopg
import pytest
from openapi_spec_validator import validate

from geosearch.api import create_app
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import libpq_url, make_engine
from geosearch.keys import KeyStore
from geosearch.settings import Settings
from geosearch.store import load

ITEMS = "/ogc/collections/spaces/items"
MERGE = "application/merge-patch+json"
GEOJSON = "application/geo+json"
PAGE = "https://maps.example.com"  # an origin allowed by CORS
PART_4 = {f"http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/{name}"
          for name in ("create-replace-delete", "update", "optimistic-locking-etags",
                       "features")}


@pytest.fixture(scope="module")
def live(pg_database, feed_result):
    """The app over a loaded database (CORS on for :data:`PAGE`), with a key of the
    scope write and one of the scope changes."""
    url = pg_database("ogc_writes")
    engine = make_engine(Settings(database_url=url))
    try:
        load(feed_result.frame, feed_result.meta(), engine)
    finally:
        engine.dispose()
    settings = Settings(database_url=url, write_rate_limit="", cors_origins=(PAGE,))
    backend = PostgisBackend(settings)
    app = create_app(settings, backend=backend)
    keys = KeyStore(settings)
    auth = {name: {"Authorization": f"Bearer {keys.create(name, scopes)}"}
            for name, scopes in (("ogc-writer", ["write"]), ("ogc-follower", ["changes"]))}
    yield SimpleNamespace(url=url, app=app, auth=auth, client=app.test_client())
    app.extensions["geosearch.writes"].close()
    keys.close()
    backend.close()


@pytest.fixture(scope="module")
def snapshot_client(memory_feed):
    return create_app(Settings(), backend=memory_feed).test_client()


def feature(name: str, coordinates=(13.3777, 52.5163), **properties) -> dict:
    """A space in Berlin as a GeoJSON Feature."""
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(coordinates)},
            "properties": {"name": name, "address": "Unter den Linden 1", "city": "Berlin",
                           "country": "DE", "amenities": ["wifi"], "capacity": 10,
                           "price_day": 20.0, "currency": "EUR", **properties}}


def _send(live, method: str, path: str, doc=None, content_type: str | None = GEOJSON,
          key: str | None = "ogc-writer", **headers):
    """A request with a key, a JSON body of ``content_type`` (None: no Content-Type)."""
    sent = dict(live.auth[key]) if key else {}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    data = None if doc is None else json.dumps(doc).encode()
    return live.client.open(path, method=method, data=data, headers=sent,
                            content_type=content_type if data is not None else None)


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def _seq(live) -> int:
    with psycopg.connect(libpq_url(live.url)) as conn:
        return conn.execute("SELECT seq FROM change_counter").fetchone()[0]


def _create(live, space_id: str, name: str, coordinates=(13.3777, 52.5163)) -> str:
    """Create a space through the OGC API; its ETag."""
    created = _send(live, "POST", ITEMS, {**feature(name, coordinates), "id": space_id})
    assert created.status_code == 201, created.get_data(as_text=True)
    return created.headers["ETag"]


# -- the conformance declaration and the documents --------------------------------------

def test_part_4_is_declared_over_a_database_and_not_over_a_snapshot(live, snapshot_client):
    declared = set(live.client.get("/ogc/conformance").get_json()["conformsTo"])
    assert declared >= PART_4
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in declared
    on_snapshot = set(snapshot_client.get("/ogc/conformance").get_json()["conformsTo"])
    assert not PART_4 & on_snapshot
    assert on_snapshot == declared - PART_4


def test_the_openapi_documents_list_the_write_routes_over_a_database_only(live,
                                                                          snapshot_client):
    ogc = live.client.get("/ogc/api").get_json()
    validate(ogc)
    assert {"get", "post"} <= set(ogc["paths"]["/collections/spaces/items"])
    item = ogc["paths"]["/collections/spaces/items/{id}"]
    assert {"get", "put", "patch", "delete"} == set(item)
    assert item["patch"]["requestBody"]["content"].keys() == {MERGE}
    assert ogc["paths"]["/collections/spaces/items"]["post"]["responses"].keys() >= {
        "201", "409", "422"}
    assert {"412", "428"} <= item["put"]["responses"].keys()
    assert [p["name"] for p in item["delete"]["parameters"]] == ["id"]
    whole = live.client.get("/openapi.json").get_json()
    validate(whole)
    assert {"put", "patch", "delete"} <= set(whole["paths"][f"{ITEMS}/{{id}}"])
    on_snapshot = snapshot_client.get("/ogc/api").get_json()
    assert set(on_snapshot["paths"]["/collections/spaces/items/{id}"]) == {"get"}
    assert set(on_snapshot["paths"]["/collections/spaces/items"]) == {"get"}


def test_options_say_what_each_path_takes(live, snapshot_client):
    items = live.client.options(ITEMS)
    assert items.status_code == 200
    assert {"GET", "POST"} <= {m.strip() for m in items.headers["Allow"].split(",")}
    assert GEOJSON in items.headers["Accept-Post"]
    one = live.client.options(f"{ITEMS}/sd-de-00232")
    assert {"GET", "PUT", "PATCH", "DELETE"} <= {m.strip() for m in one.headers["Allow"].split(",")}
    assert one.headers["Accept-Patch"] == MERGE
    for path in (ITEMS, f"{ITEMS}/sd-de-00232"):
        answer = snapshot_client.options(path)
        assert {m.strip() for m in answer.headers["Allow"].split(",")} == {
            "GET", "HEAD", "OPTIONS"}
        assert "Accept-Post" not in answer.headers and "Accept-Patch" not in answer.headers


# -- create, replace, update, delete ------------------------------------------------------

def test_a_post_to_the_items_creates_a_feature_the_ogc_api_and_v1_serve(live):
    before = _seq(live)
    created = _send(live, "POST", ITEMS, {**feature("Zaunkoenig Loft"), "id": "ogc-1"},
                    Origin=PAGE)

    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.headers["Location"] == f"{ITEMS}/ogc-1"
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Access-Control-Allow-Origin"] == PAGE
    assert "Location" in created.headers["Access-Control-Expose-Headers"]
    body = created.get_json()
    assert body["id"] == "ogc-1" and body["properties"]["geocode_precision"] == "input"
    got = live.client.get(created.headers["Location"])
    assert got.status_code == 200 and got.headers["ETag"] == '"1"'
    item = got.get_json()
    assert {k: item[k] for k in ("type", "id", "geometry", "properties")} == body
    assert {link["rel"] for link in item["links"]} == {"self", "collection"}
    assert next(link["href"] for link in item["links"] if link["rel"] == "self").endswith(
        f"{ITEMS}/ogc-1")
    assert live.client.get("/v1/spaces/ogc-1").headers["ETag"] == '"1"'
    found = live.client.get(f"{ITEMS}?q=zaunkoenig").get_json()
    assert [f["id"] for f in found["features"]] == ["ogc-1"]
    assert _seq(live) == before + 1


def test_replace_update_and_delete_need_the_current_etag(live):
    _create(live, "ogc-rev", "Revision Eins", (13.41, 52.52))
    path = f"{ITEMS}/ogc-rev"
    patch = {"properties": {"capacity": 12, "amenities": ["wifi", "coffee"]}}

    _problem(_send(live, "PATCH", path, patch, MERGE), 428)
    stale = _problem(_send(live, "PATCH", path, patch, MERGE, If_Match='"0"'), 412)
    assert stale["current_revision"] == 1
    _problem(_send(live, "PATCH", path, patch, "application/json", If_Match='"1"'), 415)
    patched = _send(live, "PATCH", path, patch, MERGE, If_Match='"1"')
    assert patched.status_code == 200 and patched.headers["ETag"] == '"2"'
    assert patched.get_json()["properties"]["capacity"] == 12
    assert live.client.get(path).headers["ETag"] == '"2"'

    # the revisions are the space's, whichever API wrote it: an ETag of /v1 holds here
    on_v1 = _send(live, "PATCH", "/v1/spaces/ogc-rev", {"properties": {"capacity": 13}},
                  MERGE, If_Match='"2"')
    assert on_v1.headers["ETag"] == '"3"'
    _problem(_send(live, "PUT", path, feature("Revision Zwei", (13.41, 52.52)),
                   If_Match='"2"'), 412)
    replaced = _send(live, "PUT", path, feature("Revision Zwei", (13.41, 52.52)),
                     If_Match='"3"')
    assert replaced.status_code == 200 and replaced.headers["ETag"] == '"4"'
    assert live.client.get(path).get_json()["properties"]["name"] == "Revision Zwei"
    renamed = {**feature("Andere Id"), "id": "ogc-other"}
    assert _problem(_send(live, "PUT", path, renamed, If_Match='"4"'), 422)["errors"][0][
        "param"] == "/id"
    _problem(_send(live, "DELETE", path), 428)
    _problem(_send(live, "DELETE", path, If_Match='W/"4"'), 412)  # weak: never matches

    closed = _send(live, "DELETE", path, If_Match='"4"')
    assert closed.status_code == 204 and closed.headers["ETag"] == '"5"'
    _problem(live.client.get(path), 404)
    near = live.client.get(f"{ITEMS}?bbox=13.40,52.51,13.42,52.53&limit=500").get_json()
    assert "ogc-rev" not in {f["id"] for f in near["features"]}


def test_part_4_answers_a_body_without_content_type_or_in_another_crs_400(live):
    before = _seq(live)
    untyped = _problem(_send(live, "POST", ITEMS, feature("Ohne Typ"), None), 400)
    assert [e["param"] for e in untyped["errors"]] == ["Content-Type"]
    assert _seq(live) == before
    _create(live, "ogc-typed", "Mit Typ", (13.30, 52.45))
    before = _seq(live)
    _problem(_send(live, "PUT", f"{ITEMS}/ogc-typed", feature("Ohne Typ"), None,
                   If_Match='"1"'), 400)
    _problem(_send(live, "PATCH", f"{ITEMS}/ogc-typed", {"properties": {"capacity": 3}},
                   None, If_Match='"1"'), 400)
    mercator = _problem(_send(live, "POST", ITEMS, feature("Mercator"),
                              Content_Crs="<http://www.opengis.net/def/crs/EPSG/0/3857>"),
                        400)
    assert [e["param"] for e in mercator["errors"]] == ["Content-Crs"]
    assert _seq(live) == before
    crs84 = _send(live, "POST", ITEMS, feature("Lon Lat", (13.31, 52.46)),
                  Content_Crs="<http://www.opengis.net/def/crs/OGC/1.3/CRS84>")
    assert crs84.status_code == 201, crs84.get_data(as_text=True)


def test_a_write_to_an_id_that_is_not_there_is_404_with_or_without_if_match(live):
    before = _seq(live)
    for headers in ({}, {"If_Match": '"1"'}, {"If_Match": "*"}):
        _problem(_send(live, "PUT", f"{ITEMS}/ogc-nowhere", feature("Nirgends"), **headers),
                 404)
        _problem(_send(live, "PATCH", f"{ITEMS}/ogc-nowhere", {"properties": {}}, MERGE,
                       **headers), 404)
        _problem(_send(live, "DELETE", f"{ITEMS}/ogc-nowhere", **headers), 404)
    _problem(live.client.get(f"{ITEMS}/ogc-nowhere"), 404)  # none was made by PUT
    assert _seq(live) == before


def test_keys_scopes_conflicts_and_invalid_spaces_as_on_v1(live):
    _create(live, "ogc-taken", "Besetzt", (13.35, 52.50))
    before = _seq(live)
    _problem(_send(live, "POST", ITEMS, feature("Ohne Schluessel"), key=None), 401)
    _problem(_send(live, "POST", ITEMS, feature("Folger"), key="ogc-follower"), 403)
    taken = _problem(_send(live, "POST", ITEMS, {**feature("Anders", (13.2, 52.4)),
                                                  "id": "ogc-taken"}), 409)
    assert taken["existing_id"] == "ogc-taken"
    invalid = _problem(_send(live, "POST", ITEMS, feature("Falsch", capacity=-1,
                                                          h3_r9="89", sofa=True)), 422)
    assert {e["param"] for e in invalid["errors"]} == {
        "/properties/capacity", "/properties/h3_r9", "/properties/sofa"}
    for etag in ("garbage", '"1", ' * 30):
        _problem(_send(live, "DELETE", f"{ITEMS}/ogc-taken", If_Match=etag), 400)
    assert _seq(live) == before
    assert live.client.get(f"{ITEMS}/ogc-taken").headers["ETag"] == '"1"'


def test_the_snapshot_answers_405_with_allow_on_every_ogc_write(snapshot_client):
    for method, path in (("POST", ITEMS), ("PUT", f"{ITEMS}/sd-de-00232"),
                         ("PATCH", f"{ITEMS}/x"), ("DELETE", f"{ITEMS}/x")):
        answer = snapshot_client.open(path, method=method, json={})
        assert "--database" in _problem(answer, 405)["detail"]
        assert {m.strip() for m in answer.headers["Allow"].split(",")} == {
            "GET", "HEAD", "OPTIONS"}
    got = snapshot_client.get(f"{ITEMS}/sd-de-00232")
    assert got.status_code == 200 and "ETag" not in got.headers


def test_number_matched_counts_the_spaces_as_written(live):
    """numberMatched is counted again once a write changed the data (not kept per dataset
    version)."""
    query = f"{ITEMS}?bbox=13.2,52.4,13.6,52.6&limit=1"
    before = live.client.get(query).get_json()["numberMatched"]
    assert live.client.get(query).get_json()["numberMatched"] == before
    created = _send(live, "POST", ITEMS, feature("Zählwerk Mitte", address="Zählweg 3"))
    assert created.status_code == 201, created.get_data(as_text=True)
    assert live.client.get(query).get_json()["numberMatched"] == before + 1
