"""Stages reached by an event (``[scoring.stage_events]``): a demo request makes a lead
an SQL at once, whatever its score, recorded with the event and handed off; forward only,
only with live consent. Bad tables are refused by ``site load`` with the key path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.scoring.conftest import rows
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database

ANCHOR = '[[scoring.quiz]]\nname = "terabytes"'
STAGE_EVENTS = '[scoring.stage_events]\nSQL = ["demo_requested"]\n\n'
FIT = {"company_size": "201-1000", "job_title": "Chief Data Officer"}  # 35 points


def _stage(database: Database) -> Any:
    return rows(database, "SELECT stage, score FROM scoring_leads")[0]


def test_a_demo_request_makes_an_sql(
    load_model: Callable[..., list[str]],
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
    database: Database,
) -> None:
    load_model((ANCHOR, STAGE_EVENTS + ANCHOR))
    submit("demo@example.com", **FIT)
    assert tuple(_stage(database)) == ("Lead", 35)
    events("demo@example.com", "demo_requested")
    assert tuple(_stage(database)) == ("SQL", 35), "whatever the score"
    change = rows(database, "SELECT * FROM scoring_stage_changes ORDER BY id DESC")[0]
    assert (change.from_stage, change.to_stage, change.actor) == ("Lead", "SQL", "system:event")
    assert change.reason.startswith("event demo_requested (")
    hooks = rows(database, "SELECT stage FROM scoring_webhooks")
    assert [h.stage for h in hooks] == ["SQL"], "handed off like a threshold"
    # Forward only: a later demo request of an SQL moves nothing.
    events("demo@example.com", "demo_requested", "pricing_page_viewed")
    assert _stage(database).stage == "SQL"
    assert rows(database, "SELECT count(*) AS n FROM scoring_stage_changes")[0].n == 1


def test_without_consent_an_event_moves_nobody(
    load_model: Callable[..., list[str]], api: TestClient, database: Database
) -> None:
    from tests.scoring.conftest import grant

    load_model((ANCHOR, STAGE_EVENTS + ANCHOR))
    grant(database, "other@example.com", "product_updates")
    response = api.post(
        "/api/events",
        json={"events": [{"id": "e1", "email": "other@example.com", "type": "demo_requested",
                          "occurred_at": "2026-01-01T00:00:00Z"}]},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["dropped"] == 1
    assert rows(database, "SELECT count(*) AS n FROM scoring_stage_changes")[0].n == 0


BAD = [
    ('[scoring.stage_events]\nProspect = ["demo_requested"]\n', "scoring.stage_events.Prospect",
     "not a stage an event can reach"),
    ('[scoring.stage_events]\nLead = ["demo_requested"]\n', "scoring.stage_events.Lead",
     "not a stage an event can reach"),
    ("[scoring.stage_events]\nSQL = []\n", "scoring.stage_events.SQL", "non-empty list"),
    ('[scoring.stage_events]\nSQL = ["Demo Requested"]\n', "scoring.stage_events.SQL",
     "event type names"),
    ('[scoring.stage_events]\nMQL = ["demo_requested"]\nSQL = ["demo_requested"]\n',
     "scoring.stage_events.SQL", "already moves leads to MQL"),
]  # fmt: skip


@pytest.mark.parametrize(("declared", "where", "why"), BAD)
def test_bad_stage_events_are_refused(
    load_model: Callable[..., list[str]],
    database: Database,
    declared: str,
    where: str,
    why: str,
) -> None:
    before = rows(database, "SELECT count(*) AS n FROM scoring_models")[0].n
    with pytest.raises(SiteConfigError) as raised:
        load_model((ANCHOR, declared + "\n" + ANCHOR))
    problems = dict(raised.value.problems)
    assert why in problems.get(f"site.toml: {where}", ""), problems
    assert rows(database, "SELECT count(*) AS n FROM scoring_models")[0].n == before
