"""Property-based tests of the HTTP API from its own OpenAPI document (schemathesis):
no 5xx, and every response conforms to the documented status codes, content types and
schemas."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from synthetic import synthetic_frame

from geosearch.api import create_app
from geosearch.backends.memory import MemoryBackend
from geosearch.settings import Settings

app = create_app(Settings(), backend=MemoryBackend.from_frame(synthetic_frame(400), "schema"))
schema = schemathesis.openapi.from_wsgi("/openapi.json", app)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
# Positive-data acceptance is left out: constraints across values (minlat < maxlat, a
# ring that closes) cannot be written in JSON Schema, so a schema-valid request can rightly
# get a 400. Every response must still be documented and well formed.
COVERAGE = "^/v1/coverage/"


@schema.exclude(path_regex=COVERAGE).parametrize()
@settings(max_examples=40, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    case.call_and_validate(checks=CHECKS)


# Each new (res, min_population) builds the H3 grid of every city: fewer examples here.
@schema.include(path_regex=COVERAGE).parametrize()
@settings(max_examples=6, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_coverage_conforms_to_its_openapi_document(case):
    case.call_and_validate(checks=CHECKS)
