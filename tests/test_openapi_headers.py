"""The OpenAPI document's response headers and coverage rows against real answers: each
header an answer is declared to always have, it has; each header of the API's own an
answer has, its operation declares; each coverage answer matches its declared rows."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from geosearch.api import create_app
from geosearch.settings import Settings

# The API's own headers (the ones the document must declare where they are sent)
OWN = ("X-Request-ID", "X-Dataset-Version", "X-Change-Seq", "ETag", "Cache-Control",
       "Retry-After", "X-Consistency-Token", "Location")
BERLIN = "lat=52.52&lon=13.405"
POLYGON = {"type": "Polygon", "coordinates": [[[13.2, 52.4], [13.6, 52.4], [13.6, 52.6],
                                               [13.2, 52.6], [13.2, 52.4]]]}
REQUESTS = [
    ("GET", f"/v1/spaces/radius?{BERLIN}&radius_m=3000&limit=2"),
    ("GET", f"/v1/spaces/nearest?{BERLIN}&k=2"),
    ("GET", f"/v1/spaces/nearest?{BERLIN}&k=2&q=hub"),
    ("GET", "/v1/spaces/bbox?bbox=13,52,14,53&limit=2"),
    ("POST", "/v1/spaces/polygon?limit=2"),
    ("GET", "/v1/spaces?limit=2"),
    ("GET", "/v1/spaces/sd-de-00017"),
    ("GET", "/v1/spaces/no-such-space"),
    ("GET", "/v1/amenities"),
    ("GET", "/v1/tiles/10/550/335.mvt"),
    ("GET", "/v1/tiles/10/550/335.json"),
    ("GET", "/v1/coverage/countries?res=6"),
    ("GET", "/v1/coverage/cities?country=NZ&res=6"),
    ("GET", "/v1/coverage/hexes?country=NZ&res=6"),
    ("GET", "/v1/spaces/radius?lat=91&lon=0&radius_m=1"),
    ("GET", "/ogc/collections/spaces/items?limit=2"),
    ("GET", "/ogc/collections/spaces/items/sd-de-00017"),
    ("GET", "/readyz"),
    ("GET", "/healthz"),
]


@pytest.fixture(scope="module")
def app(memory_feed):
    return create_app(Settings(heavy_rate_limit=""), backend=memory_feed)


@pytest.fixture(scope="module")
def doc(app):
    return app.test_client().get("/openapi.json").get_json()


def _template(template: str) -> re.Pattern:
    """A path template of the document as a pattern of the paths it stands for."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def declared(doc: dict, method: str, path: str, status: int) -> dict:
    """The response the document declares for ``method path`` answering ``status`` (a
    path of its own before a template's)."""
    for template in sorted(doc["paths"], key=lambda t: t.count("{")):
        operations = doc["paths"][template]
        if _template(template).fullmatch(path) and method.lower() in operations:
            responses = operations[method.lower()]["responses"]
            return responses.get(str(status)) or responses[f"{str(status)[0]}XX"]
    raise AssertionError(f"{method} {path} is not in the document")


def _answer(app, method: str, url: str):
    client = app.test_client()
    if method == "POST":
        return client.post(url, data=json.dumps(POLYGON), content_type="application/json")
    return client.get(url)


@pytest.mark.parametrize(("method", "url"), REQUESTS, ids=[u for _, u in REQUESTS])
def test_the_declared_headers_are_the_ones_sent(app, doc, method, url):
    response = _answer(app, method, url)
    headers = declared(doc, method, url.split("?")[0], response.status_code)["headers"]
    always = {name for name, h in headers.items() if h["required"]}
    assert always <= set(response.headers.keys()), (url, always)
    sent = {name for name in OWN if name in response.headers}
    assert sent <= set(headers), (url, sent - set(headers))


def test_a_search_answer_and_an_unavailable_one_declare_their_main_headers(doc):
    radius = doc["paths"]["/v1/spaces/radius"]["get"]["responses"]
    assert {"X-Dataset-Version", "X-Change-Seq"} <= set(radius["200"]["headers"])
    assert radius["503"]["headers"]["Retry-After"]["required"]
    tile = doc["paths"]["/v1/tiles/{z}/{x}/{y}.mvt"]["get"]["responses"]["200"]["headers"]
    assert {"ETag", "Cache-Control"} <= set(tile)
    for path, method in (("/v1/spaces", "post"), ("/v1/spaces/{id}", "put"),
                         ("/v1/spaces/{id}", "patch"), ("/v1/spaces/{id}", "delete")):
        ops = doc["paths"].get(path, {})
        if method in ops:  # the writes, where the app takes them
            ok = next(r for s, r in ops[method]["responses"].items() if s.startswith("2"))
            assert "X-Consistency-Token" in ok["headers"]


def test_readiness_without_a_dataset_declares_its_retry_after(tmp_path):
    app = create_app(Settings(snapshot=tmp_path / "none"))
    response = app.test_client().get("/readyz")
    doc = app.test_client().get("/openapi.json").get_json()
    headers = declared(doc, "GET", "/readyz", response.status_code)["headers"]
    assert response.status_code == 503 and headers["Retry-After"]["required"]
    assert "Retry-After" in response.headers


@pytest.mark.parametrize("url", ["/v1/coverage/countries?res=6",
                                 "/v1/coverage/cities?country=DE&res=6",
                                 "/v1/coverage/hexes?country=NZ&res=6"])
def test_coverage_answers_have_the_rows_the_document_declares(app, doc, url):
    response = app.test_client().get(url)
    schema = declared(doc, "GET", url.split("?")[0], 200)["content"]
    schema = next(iter(schema.values()))["schema"]
    rows = schema["properties"].get("countries") or schema["properties"].get("cities") \
        or schema["properties"]["features"]
    assert rows["items"]["required"]  # rows with their fields, not bare objects
    jsonschema.validate(response.get_json(), schema)
