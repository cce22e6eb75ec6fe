"""Statement budgets of the consent API: how many SQL statements ``GET /api/consent`` (the
site backend's look-up) and ``POST /api/consent`` send to the database.

Counted by ``tests/fixtures/statements.py`` at the driver: every statement the database
executes for the app, ``BEGIN``/``COMMIT``/``ROLLBACK`` included, the ledger's raw
appends included, connection set-up excluded. The app runs with its API key cache on
(the suite's settings turn it off), and each path is warmed by one request of the same
kind first, so the key is cached when the counted request comes.

The budgets are today's counts. A budget may only be lowered (when a change makes the
path cheaper, lower it in the same commit), or raised with the reason in the commit
message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.consent_ledger.test_api_consent import grant_body, row_counts
from tests.factories import record
from tests.fixtures.statements import StatementCounter, Statements
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

# GET /api/consent?email=…&purpose=… for a lead with a live grant, the key cached.
LOOKUP = {"sqlite": 1, "postgresql": 1}
# POST /api/consent: a grant with evidence for an address never seen before.
RECORD = {"sqlite": 11, "postgresql": 6}


@pytest.fixture
def api(
    settings: Settings, database: Database, api_key: str, statement_counter: StatementCounter
) -> Iterator[TestClient]:
    cached = dataclasses.replace(settings, api_key_cache_seconds=600)
    app = create_app(cached, database)
    with TestClient(statement_counter.wrap(app)) as client:
        client.headers["Authorization"] = f"Bearer {api_key}"
        yield client


def within(budget: dict[str, int], statements: Statements, what: str) -> None:
    assert len(statements) <= budget[statements.dialect], (
        f"{what}: {len(statements)} statements, budget {budget[statements.dialect]}\n"
        + statements.report(what)
    )


def test_lookup(api: TestClient, database: Database, statement_counter: StatementCounter) -> None:
    record(database, "warm@example.com", "profiling")
    record(database, "ann@example.com", "profiling")
    warm = api.get("/api/consent", params={"email": "warm@example.com", "purpose": "profiling"})
    assert warm.status_code == 200, warm.text
    with statement_counter.count() as sql:
        response = api.get(
            "/api/consent", params={"email": "ann@example.com", "purpose": "profiling"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["permitted"] is True
    within(LOOKUP, sql, "GET /api/consent")
    assert sql.after_response == []


def test_record(api: TestClient, database: Database, statement_counter: StatementCounter) -> None:
    def post(email: str) -> Any:
        body = grant_body(database, email, "profiling")  # read before the counted block
        return lambda: api.post("/api/consent", json=body)

    assert post("warm@example.com")().status_code == 201
    before = row_counts(database)
    send = post("ann@example.com")
    with statement_counter.count() as sql:
        response = send()
    assert response.status_code == 201, response.text
    within(RECORD, sql, "POST /api/consent")
    assert sql.after_response == []
    after = row_counts(database)
    assert {table: after[table] - before[table] for table in after} == {
        "consent_events": 1,
        "consent_evidence": 1,
        "consent_state": 1,
        "subjects": 1,
        "subject_profiles": 1,
    }
