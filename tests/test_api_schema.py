"""Property-based run against the OpenAPI schema: every operation, generated parameters (valid
and invalid), zero 5xx, and every 2xx body conforms to its documented response model.

Driven through hypothesis directly (schemathesis' pytest plugin does not load on pytest 9).
"""

import duckdb
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from ubap_api.main import create_app
from ubap_api.sample import publish_sample, sample_warehouse
from ubap_api.settings import Settings

SNAPSHOT_ID = "schema-run"
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.status_code_conformance,
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, tiny_spec):
    directory = tmp_path_factory.mktemp("schema") / "snapshots"
    with duckdb.connect(str(sample_warehouse(tiny_spec))) as con:
        publish_sample(con, directory, SNAPSHOT_ID)
    return schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(Settings(snapshot_dir=directory))
    )


def _operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_documented_responses(api_schema, mode):
    operations = _operations(api_schema)
    assert len(operations) >= 23
    seen: dict[int, int] = {}
    for operation in operations:

        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def exercise(case) -> None:
            response = case.call()
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query}: {response.text}"
            )
            case.validate_response(response, checks=CHECKS)
            if response.status_code == 200:
                assert response.headers["x-ubap-snapshot"] == [SNAPSHOT_ID]

        try:
            exercise()
        except Unsatisfiable:
            # No parameter to make invalid (e.g. /health): nothing negative to generate.
            assert mode == GenerationMode.NEGATIVE, operation.label
    assert not any(code >= 500 for code in seen)
    expected = 200 if mode == GenerationMode.POSITIVE else 422
    assert seen.get(expected, 0) > 0, seen
