"""The server's OpenAPI schema fuzzed by Schemathesis against the running server (a tiny model with adapters, so
every route has a head to run on): no 5xx, and every response, errors included, matches the schema."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.integration.serve_util import serve_in_thread, tiny_base_with_adapters

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

GENERATION_MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
"""Requests the schema allows, and requests it forbids (those must be refused with a documented 4xx)."""
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

from bertforge.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base, adapters = tiny_base_with_adapters(tmp_path_factory.mktemp("schema_models"))
    with serve_in_thread(create_app(model=str(base), adapters=adapters, max_wait_ms=0)) as url:
        yield url


def test_no_server_error_and_every_response_matches_the_schema(served):
    """The checks the server promises: no 5xx; status codes, content types and bodies as documented. (A
    schema-valid request may still be refused: a text with no [MASK], a route the model has no head for.)"""
    api = schemathesis.openapi.from_url(served + "/openapi.json")
    checked = []
    for found, mode in itertools.product(api.get_all_operations(), GENERATION_MODES):
        operation = found.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(checks=CHECKS)

        try:
            check()
        except Unsatisfiable:  # nothing to make invalid: a GET without parameters
            assert mode is schemathesis.GenerationMode.NEGATIVE
            continue
        checked.append(operation.label)
    checked = sorted(set(checked))
    assert {"POST /embed", "POST /predict", "POST /rerank", "POST /v1/embeddings", "POST /ner"} <= set(checked)
