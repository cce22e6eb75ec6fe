"""The three shipped example site files, loaded and played end to end through HTTP: quiz,
form, events, BANT, thresholds, lead types, temperature and the signed hand-off."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from scoring import webhooks
from scoring.services import active_model
from scoring.stages import Stage
from scoring.upkeep import run_upkeep
from scoring.webhooks import DispatchConfig, dispatch_pending
from tests.fixtures.webhooks import WebhookReceiver
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings
from zeroparty.site import load_site

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN_RE = re.compile(r'name="_rt" value="([^"]+)"')
FIT = {"company_size": "201-1000", "job_title": "Chief Data Officer", "industry": "software"}


@pytest.fixture
def take_quiz(app_client: TestClient, settings: Settings) -> Callable[..., None]:
    tokens = CaptureTokens(settings.secret_keys)

    def take(email: str, **answers: str) -> None:
        match = TOKEN_RE.search(app_client.get("/f/analytics-fit").text)
        assert match is not None
        token = tokens.read_render(match.group(1))
        aged = tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))
        response = app_client.post(
            "/f/analytics-fit",
            data={"_rt": aged, "_action": "submit", **answers, "email": email,
                  "consent": "profiling"},
            follow_redirects=False,
        )  # fmt: skip
        assert response.status_code == 303, response.text[:400]

    return take


def _score(api: TestClient, email: str) -> dict[str, Any]:
    response = api.get("/api/leads/score", params={"email": email})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _handoffs(
    database: Database, config: DispatchConfig, receiver: WebhookReceiver
) -> list[dict[str, Any]]:
    dispatch_pending(database, config)
    found = []
    for hook in receiver.received:
        assert webhooks.verify(config.secret, hook.headers, hook.body, now=utcnow().timestamp())
        found.append(orjson.loads(hook.body)["data"])
    return found


def test_the_points_model_plays_end_to_end(
    database: Database,
    take_quiz: Callable[..., None],
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    load_site(database, EXAMPLES / "points-model.toml")
    with database.read() as session:
        active = active_model(session)
    assert active is not None
    assert dict(active.model.thresholds) == {Stage.MQL: 60, Stage.SQL: 80}
    email = "points@example.com"
    take_quiz(email, goal="prediction", volume="large")  # the terabytes answer: +10
    assert _score(api, email)["score"] == 10
    submit(email, **FIT)  # +20 +15 +10
    assert _score(api, email)["score"] == 55
    events(email, "pricing_page_viewed")  # +20: 75, an MQL
    events(email, "case_study_downloaded")  # +10: 85, an SQL
    body = _score(api, email)
    assert (body["score"], body["stage"]) == (85, "SQL")
    assert [(c["from"], c["to"]) for c in body["stage_changes"]] == [
        ("Lead", "MQL"),
        ("MQL", "SQL"),
    ]
    sent = _handoffs(database, dispatch_config, webhook_receiver)
    assert [(d["stage"], d["email"]) for d in sent] == [("MQL", email), ("SQL", email)]
    ack = api.post("/api/leads/ack", json={"email": email})
    assert ack.status_code == 201, ack.text
    assert ack.json()["within_sla"] is True


def test_the_iql_mql_sql_pql_model_plays_end_to_end(
    database: Database,
    take_quiz: Callable[..., None],
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    changes = load_site(database, EXAMPLES / "iql-mql-sql-pql.toml").changes
    assert any("scoring model" in c for c in changes)
    email = "types@example.com"

    def state() -> tuple[float, str, str | None, list[str]]:
        body = _score(api, email)
        held = [t["type"] for t in body["lead_types"]]
        return body["score"], body["stage"], body["temperature"], held

    # The quiz: 40 quiz points, half of them (20), and the forecasting tag (+5).
    take_quiz(email, goal="prediction", volume="large")
    assert state() == (25, "Lead", "warm", [])
    submit(email, **FIT)  # +15 +10 +5: 55, an MQL
    assert state() == (55, "MQL", "hot", ["MQL"])
    assert _score(api, email)["next_action"]["rule"] == "forecasting-case-study"
    events(email, "case_study_downloaded")  # information given: an IQL
    assert state() == (65, "MQL", "hot", ["MQL", "IQL"])
    bant = {"email": email, "budget": 50000, "authority": "decision_maker"}
    recorded = api.post("/api/leads/qualification", json=bant)
    assert recorded.status_code == 201, recorded.text
    assert state() == (90, "SQL", "hot", ["MQL", "IQL", "SQL"])  # +15 +10, BANT confirmed
    events(email, "usage_limit_reached")  # product-qualified
    assert state()[3] == ["MQL", "IQL", "SQL", "PQL"]
    given = {"email": email, "type": "SQL-from-service", "reason": "support ticket 7"}
    assert api.post("/api/leads/type", json=given).status_code == 201
    assert state()[3][-1] == "SQL-from-service"
    sent = _handoffs(database, dispatch_config, webhook_receiver)
    assert [d["stage"] for d in sent] == ["MQL", "SQL"]
    assert sent[-1]["intent"] == {
        "tags": ["forecasting", "enterprise"],
        "quiz_scores": {"analytics-fit": 40},
    }
    assert sent[-1]["temperature"] == "hot"
    assert sent[-1]["next_action"] == {"rule": "call-now", "action": "Call within the SLA"}
    assert {"IQL", "SQL", "PQL"} <= set(sent[-1]["lead_types"])
    # A demo request from a fresh lead goes to sales at once (a stage by event).
    take_quiz("demo@example.com", goal="browsing")
    events("demo@example.com", "demo_requested")
    assert _score(api, "demo@example.com")["stage"] == "SQL"
    # 90 days without activity: recycled to Lead, with the reason.
    report = run_upkeep(database, now=utcnow() + timedelta(days=91))
    assert report.demoted == 2
    body = _score(api, email)
    assert body["stage"] == "Lead"
    assert body["stage_changes"][-1]["actor"] == "system:inactivity"


def test_the_contact_lead_prospect_sql_lifecycle_plays_end_to_end(
    database: Database,
    take_quiz: Callable[..., None],
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
    app_client: TestClient,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    changes = load_site(database, EXAMPLES / "contact-lead-prospect-sql.toml").changes
    assert any("lifecycle: Contact → Lead → Prospect → SQL" in c for c in changes)
    with database.read() as session:
        active = active_model(session)
    assert active is not None
    assert active.model.lifecycle.stages == ("Contact", "Lead", "Prospect", "SQL")
    assert active.model.handoff == ("Prospect", "SQL")
    email = "chain@example.com"

    def state(who: str = email) -> tuple[float, str]:
        body = _score(api, who)
        return body["score"], body["stage"]

    take_quiz(email, goal="prediction", volume="large")  # the terabytes answer: +10
    assert state() == (10, "Contact")
    submit(email, **FIT)  # +20 +15 +10: 55, a Lead (30)
    assert state() == (55, "Lead")
    events(email, "pricing_page_viewed")  # +20: 75, a Prospect (60)
    assert state() == (75, "Prospect")
    assert _score(api, email)["next_action"]["rule"] == "product-tour"
    events(email, "case_study_downloaded")  # +10: 85, an SQL (80)
    body = _score(api, email)
    assert (body["score"], body["stage"]) == (85, "SQL")
    assert [(c["from"], c["to"], c["actor"]) for c in body["stage_changes"]] == [
        ("Contact", "Lead", "system:threshold"),
        ("Lead", "Prospect", "system:threshold"),
        ("Prospect", "SQL", "system:threshold"),
    ]
    assert body["stage_changes"][-1]["reason"] == "score 85 reached the SQL threshold (80)"
    assert body["next_action"] == {"rule": "call-now", "action": "Call within the SLA"}
    # The hand-offs: the marketing stage and the sales stage, signed.
    sent = _handoffs(database, dispatch_config, webhook_receiver)
    assert [(d["stage"], d["email"]) for d in sent] == [("Prospect", email), ("SQL", email)]
    # The lead API speaks the chain's names, and only them.
    listed = api.get("/api/leads", params={"stage": "sql"})
    assert listed.status_code == 200, listed.text
    assert [lead["email"] for lead in listed.json()["leads"]] == [email]
    refused = api.get("/api/leads", params={"stage": "MQL"})
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"]["stage"] == "is required: one of Lead, Prospect, SQL"
    enums = app_client.get("/openapi.json").json()["components"]["schemas"]
    assert enums["LeadStage"] == {"enum": ["Contact", "Lead", "Prospect", "SQL"]}
    assert enums["HandoffStage"] == {"enum": ["Lead", "Prospect", "SQL"]}
    # Sales acknowledges the SQL within its 24 hours.
    ack = api.post("/api/leads/ack", json={"email": email})
    assert ack.status_code == 201, ack.text
    assert (ack.json()["stage"], ack.json()["within_sla"]) == ("SQL", True)
    # Events: a usage limit makes a Prospect at once, a demo request an SQL.
    take_quiz("pql@example.com", goal="browsing")
    events("pql@example.com", "usage_limit_reached")  # +10, below every threshold
    assert state("pql@example.com") == (10, "Prospect")
    events("pql@example.com", "demo_requested")
    assert state("pql@example.com") == (10, "SQL")
    moved = _score(api, "pql@example.com")["stage_changes"]
    assert [(c["to"], c["actor"]) for c in moved] == [
        ("Prospect", "system:event"),
        ("SQL", "system:event"),
    ]
    # Sales recycles by hand, to a stage of this chain.
    back = {"email": "pql@example.com", "stage": "Lead", "recycle": True, "reason": "no budget"}
    recycled = api.post("/api/leads/stage", json=back)
    assert recycled.status_code == 200, recycled.text
    assert (recycled.json()["from"], recycled.json()["stage"]) == ("SQL", "Lead")
    unknown = api.post("/api/leads/stage", json={**back, "stage": "Opportunity"})
    assert unknown.status_code == 422
    assert "Contact, Lead, Prospect, SQL" in unknown.json()["error"]["fields"]["stage"]
    # 90 days without activity: back to the first stage, Contact, with the reason (the
    # pass rescores first: the pricing page and case study left their 90-day windows).
    report = run_upkeep(database, now=utcnow() + timedelta(days=91))
    assert report.demoted == 2
    body = _score(api, email)
    assert body["stage"] == "Contact"
    assert body["stage_changes"][-1]["actor"] == "system:inactivity"
    assert (
        "recycled to Contact at score 55" in body["stage_changes"][-1]["reason"]
    )  # windows closed
