"""Property-based run against the OpenAPI schema: every operation, generated parameters (valid
and invalid), zero 5xx, and every 2xx body conforms to its documented response model.

Driven through hypothesis directly (schemathesis' pytest plugin does not load on pytest 9).
``UBAP_API_TEST_SNAPSHOT_DIR`` fuzzes an existing snapshot folder instead of the sample (for
example ``data/snapshots`` after ``make up``), so the same run checks the real pipeline's data.
"""

import os
from pathlib import Path

import duckdb
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.api_sample import publish_sample, sample_warehouse
from ubap_api.main import create_app
from ubap_api.settings import Settings

SNAPSHOT_ID = "schema-run"
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.status_code_conformance,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_spec) -> tuple[Path, str]:
    existing = os.environ.get("UBAP_API_TEST_SNAPSHOT_DIR")
    if existing:
        directory = Path(existing)
        return directory, (directory / "CURRENT").read_text().strip()
    directory = tmp_path_factory.mktemp("schema") / "snapshots"
    with duckdb.connect(str(sample_warehouse(tiny_spec))) as con:
        publish_sample(con, directory, SNAPSHOT_ID)
    return directory, SNAPSHOT_ID


@pytest.fixture(scope="module")
def api_schema(served):
    app = create_app(Settings(snapshot_dir=served[0]))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_documented_responses(api_schema, served, mode):
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
                assert response.headers["x-ubap-snapshot"] == [served[1]]

        try:
            exercise()
        except Unsatisfiable:
            # No parameter to make invalid (e.g. /health): nothing negative to generate.
            assert mode == GenerationMode.NEGATIVE, operation.label
    assert not any(code >= 500 for code in seen)
    expected = 200 if mode == GenerationMode.POSITIVE else 422
    assert seen.get(expected, 0) > 0, seen
