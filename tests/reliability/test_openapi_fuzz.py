"""schemathesis against ``/openapi.json``: generated requests, no 5xx, answers as described.

Every operation of the published schema gets generated requests (valid ones and,
where the schema allows, invalid ones) through the ASGI app in-process, with an API
key, on a fresh database. Every answer must be no server error, and must conform to
the schema: status code, content type, headers and body.

The number of examples per operation is bounded for CI (``ZEROPARTY_FUZZ_EXAMPLES``,
default 25); ``make fuzz-api`` runs thousands.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

EXAMPLES = int(os.environ.get("ZEROPARTY_FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_survives_generated_requests(api: TestClient, api_key: str) -> None:
    operations = _operations(api.app)
    assert len(operations) >= 10
    headers = {"Authorization": f"Bearer {api_key}"}
    failures: list[str] = []
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            suppress_health_check=list(HealthCheck),
            deadline=None,
            database=None,
        )
        @given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            exercise()
        except Exception as exc:  # collected: one report naming every failing operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("path", ["/api/notices", "/api/consent?email=a@b.example&purpose=x"])
def test_api_without_a_key_is_401_json(app_client: TestClient, path: str) -> None:
    answer = app_client.get(path)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
