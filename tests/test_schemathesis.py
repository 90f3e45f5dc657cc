"""Property-based tests of the HTTP API from its own OpenAPI document (schemathesis), on
both backends: no 5xx, and every response conforms to the documented status codes,
content types and schemas, for valid and for invalid (negative) requests. The operations
a server over a database adds (the writes, the change feed) run over PostGIS with a key
of the scopes write and changes.

Each operation is its own test item (an id per backend and operation), so that pytest-xdist
distributes and reports every one. ``GEOSEARCH_FUZZ_EXAMPLES`` sets the examples per
operation (``make fuzz`` runs many more than ``make test``).
"""

from __future__ import annotations

import os
from functools import cache
from types import SimpleNamespace

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from geosearch.api import create_app
from geosearch.api.openapi import document
from geosearch.backends.postgis import PostgisBackend
from geosearch.database import make_engine
from geosearch.keys import KeyStore
from geosearch.settings import Settings
from geosearch.store import load

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, negative_data_rejection]
# Positive data (valid by the document) must be accepted wherever the document can say
# what is valid. Not where a required input has a constraint across values that JSON
# Schema cannot write (the request can rightly get a 400):
UNEXPRESSED = {
    ("/v1/spaces/bbox", "GET"): "minlat < maxlat",
    ("/v1/spaces/polygon", "POST"): "a ring closes and does not cross itself; lat with lon",
    ("/v1/tiles/{z}/{x}/{y}.mvt", "GET"): "x and y at most 2^z - 1",
    ("/v1/tiles/{z}/{x}/{y}.json", "GET"): "x and y at most 2^z - 1",
    ("/v1/coverage/hexes", "GET"): "at most 10,000 cells: a large country at a fine res is "
                                   "refused (the cells depend on the data)",
}
# and elsewhere the positive cases leave out the optional parameters whose validity no
# schema can say: a cursor is issued by the server, q's ten words are counted after
# Unicode folding, a filter is CQL2, an OGC bbox needs minlat < maxlat.
UNEXPRESSED_OPTIONAL = ("cursor", "q", "filter", "bbox")
EXAMPLES = int(os.environ.get("GEOSEARCH_FUZZ_EXAMPLES", "25"))
# Each new (res, min_population) of a coverage request computes a report: fewer there.
COVERAGE_EXAMPLES = max(3, EXAMPLES // 6)


def _operations(settings: Settings) -> list[tuple[str, str]]:
    """(path, method) of every operation the document of an app over ``settings``
    declares (the app is built, nothing is connected)."""
    return [(path, method.upper()) for path, item in
            document(create_app(settings))["paths"].items() for method in item]


OPERATIONS = _operations(Settings(snapshot="does/not/exist"))
WRITE_OPERATIONS = [op for op in _operations(Settings(
    database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")) if op not in OPERATIONS]


@cache
def _schema(backend):
    app = create_app(Settings(heavy_rate_limit=""), backend=backend)
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_operation_conforms_to_the_openapi_document(synthetic_backend, path, method):
    operation = _schema(synthetic_backend)[path][method]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))
    examples = COVERAGE_EXAMPLES if "/coverage/" in path else EXAMPLES

    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case):
        checks = CHECKS
        if case.meta.generation.mode.is_positive and (path, method) not in UNEXPRESSED:
            for name in UNEXPRESSED_OPTIONAL:
                (case.query or {}).pop(name, None)
            checks = [*CHECKS, positive_data_acceptance]
        case.call_and_validate(checks=checks)

    check()


@pytest.fixture(scope="module")
def writable(pg_database, synthetic_result):
    """The app over the synthetic spaces in a database of its own (the writes change
    it), its schema, a key with the scopes write and changes, the ids of its spaces."""
    url = pg_database("schemathesis_writes")
    engine = make_engine(Settings(database_url=url))
    try:
        load(synthetic_result.frame, synthetic_result.meta(), engine)
    finally:
        engine.dispose()
    settings = Settings(database_url=url, heavy_rate_limit="", write_rate_limit="")
    backend = PostgisBackend(settings)
    app = create_app(settings, backend=backend)
    keys = KeyStore(settings)
    secret = keys.create("schemathesis", ["write", "changes"])
    yield SimpleNamespace(schema=schemathesis.openapi.from_wsgi("/openapi.json", app),
                          auth={"Authorization": f"Bearer {secret}"},
                          ids=sorted(synthetic_result.frame["id"])[:50])
    app.extensions["geosearch.writes"].close()
    keys.close()
    backend.close()


@pytest.mark.parametrize("path, method", WRITE_OPERATIONS,
                         ids=[f"{m} {p}" for p, m in WRITE_OPERATIONS])
def test_write_operation_conforms_to_the_openapi_document(writable, path, method):
    """The writes and the change feed with a valid key. A valid request of the document
    may still be refused (its space or revision unknown, a field's rules beyond JSON
    Schema), so only the checks of every answer run. Half the valid requests to one
    space aim at a space that exists, with ``If-Match: *``, so that their bodies are
    read; a feed's wait is 0 (a long poll is not what is tested here)."""
    operation = writable.schema[path][method]
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy, aim=st.sampled_from([None, *writable.ids]))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case, aim):
        headers = dict(writable.auth)
        if case.meta.generation.mode.is_positive:
            if "wait" in (case.query or {}):
                case.query["wait"] = 0
            if aim is not None and "id" in (case.path_parameters or {}):
                case.path_parameters["id"] = aim
                headers["If-Match"] = "*"
        case.call_and_validate(checks=CHECKS, headers=headers)

    check()
