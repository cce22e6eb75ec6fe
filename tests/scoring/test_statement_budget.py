"""Statement budget of event intake: how many SQL statements one ``POST /api/events`` with
a batch of 100 events sends to the database.

Counted by ``tests/fixtures/statements.py`` at the driver: every statement the database
executes for the app, ``BEGIN``/``COMMIT``/``ROLLBACK`` included (each parameter set of
an ``executemany`` counts as one), connection set-up excluded. The app runs with its API
key cache on (the suite's settings turn it off); one batch warms the path (pool, caches,
the leads' scoring rows), then the next batch is counted.

The budget is today's count. A budget may only be lowered (when a change makes the path
cheaper, lower it in the same commit), or raised with the reason in the commit message.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fixtures.statements import StatementCounter
from tests.scoring.conftest import counts, grant, ts
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings

# 100 events, 4 for each of 25 leads who permit profiling, none seen before.
BATCH_OF_100 = {"sqlite": 110, "postgresql": 12}
LEADS = [f"lead{n:02d}@example.com" for n in range(25)]
TYPES = ("pricing_page_viewed", "webinar_attended", "email_opened", "case_study_downloaded")


@pytest.fixture
def api(
    settings: Settings, database: Database, api_key: str, statement_counter: StatementCounter
) -> Iterator[TestClient]:
    cached = dataclasses.replace(settings, api_key_cache_seconds=600)
    app = create_app(cached, database)
    with TestClient(statement_counter.wrap(app)) as client:
        client.headers["Authorization"] = f"Bearer {api_key}"
        yield client


def batch() -> dict[str, Any]:
    at = ts(utcnow())
    return {
        "events": [
            {"id": uuid.uuid4().hex, "email": email, "type": kind, "occurred_at": at}
            for email in LEADS
            for kind in TYPES
        ]
    }


def test_batch_of_100(
    api: TestClient, database: Database, statement_counter: StatementCounter
) -> None:
    for email in LEADS:
        grant(database, email)
    warm = api.post("/api/events", json=batch())
    assert warm.status_code == 201, warm.text
    assert warm.json()["accepted"] == 100
    before = counts(database)
    body = batch()
    with statement_counter.count() as sql:
        response = api.post("/api/events", json=body)
    assert response.status_code == 201, response.text
    assert response.json() == {"accepted": 100, "duplicates": 0, "dropped": 0}
    budget = BATCH_OF_100[sql.dialect]
    assert len(sql) <= budget, (
        f"POST /api/events (100 events): {len(sql)} statements, budget {budget}\n"
        + sql.report("POST /api/events (100 events)")
    )
    assert sql.after_response == [], sql.report("POST /api/events")
    after = counts(database)
    assert {table: after[table] - before[table] for table in after} == {
        "scoring_leads": 0,  # made by the first batch
        "scoring_attributes": 0,
        "scoring_events": 100,
        "scoring_points": 0,  # saturated rules: the stored points carry on unchanged
        "scoring_stage_changes": 0,
        "scoring_webhooks": 0,
        "scoring_dropped_events": 0,
    }
