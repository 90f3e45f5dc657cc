"""Property-based tests of the HTTP API from its own OpenAPI document (schemathesis), on
both backends: no 5xx, and every response conforms to the documented status codes,
content types and schemas, for valid and for invalid (negative) requests.

Each operation is its own test item (an id per backend and operation), so that pytest-xdist
distributes and reports every one. ``GEOSEARCH_FUZZ_EXAMPLES`` sets the examples per
operation (``make fuzz`` runs many more than ``make test``).
"""

from __future__ import annotations

import os
from functools import cache

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
    response_schema_conformance,
    status_code_conformance,
)

from geosearch.api import create_app
from geosearch.api.openapi import document
from geosearch.settings import Settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
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
OPERATIONS = [(path, method.upper()) for path, item in
              document(create_app(Settings(snapshot="does/not/exist")))["paths"].items()
              for method in item]


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
