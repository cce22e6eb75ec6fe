"""Next best action per lead from ``[[scoring.next_action]]`` rules (first match wins),
in the lead API and the hand-off; rules on unknown names, or that can never match, are
refused by ``site load`` with the key path and nothing changes."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from scoring import console_adapters
from scoring.webhooks import DispatchConfig, dispatch_pending
from tests.fixtures.webhooks import WebhookReceiver
from tests.scoring.conftest import rows, withdraw
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.settings import Settings

ANCHOR = '[[scoring.quiz]]\nname = "terabytes"'
ACTIONS = """[[scoring.next_action]]
name = "call-now"
action = "Call within the SLA"
stages = ["SQL"]
unacknowledged = true

[[scoring.next_action]]
name = "forecasting-case-study"
action = "Send the forecasting case study"
stages = ["MQL"]
tags = ["forecasting"]

[[scoring.next_action]]
name = "nurture"
action = "Keep nurturing"

"""
FIT = {"company_size": "201-1000", "job_title": "Chief Data Officer", "industry": "software"}
TOKEN_RE = re.compile(r'name="_rt" value="([^"]+)"')


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


def _action(api: TestClient, email: str) -> str | None:
    response = api.get("/api/leads/score", params={"email": email})
    assert response.status_code == 200, response.text
    found = response.json()["next_action"]
    return None if found is None else str(found["rule"])


def test_the_first_matching_rule_is_the_next_action(
    load_model: Callable[..., list[str]],
    take_quiz: Callable[..., None],
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    load_model((ANCHOR, ACTIONS + ANCHOR))
    email = "next@example.com"
    take_quiz(email, goal="prediction", volume="large")  # tag forecasting; 10 points
    assert _action(api, email) == "nurture"
    submit(email, **FIT)
    events(email, "pricing_page_viewed")  # 75: MQL, interested in forecasting
    assert _action(api, email) == "forecasting-case-study"
    events(email, "case_study_downloaded")  # 85: SQL, not contacted yet
    assert _action(api, email) == "call-now"
    [listed] = api.get("/api/leads", params={"stage": "SQL"}).json()["leads"]
    assert listed["next_action"] == {"rule": "call-now", "action": "Call within the SLA"}
    assert dispatch_pending(database, dispatch_config).delivered == 2
    sent = [orjson.loads(h.body)["data"] for h in webhook_receiver.received]
    assert sent[-1]["next_action"] == {"rule": "call-now", "action": "Call within the SLA"}
    assert api.post("/api/leads/ack", json={"email": email}).status_code == 201
    assert _action(api, email) == "nurture", "contacted: the SLA call is done"
    [listed] = api.get("/api/leads", params={"stage": "SQL"}).json()["leads"]
    assert listed["next_action"]["rule"] == "nurture"
    with database.read() as session:
        subject_id = rows(database, "SELECT subject_id FROM scoring_leads")[0].subject_id
        shown = console_adapters.lead_intent(session, subject_id)
    assert shown is not None
    assert shown.next_action == {"rule": "nurture", "action": "Keep nurturing"}
    withdraw(database, email)
    assert _action(api, email) is None


def test_without_rules_there_is_no_next_action(submit: Callable[..., Any], api: TestClient) -> None:
    submit("plain@example.com", **FIT)
    assert _action(api, "plain@example.com") is None


def _rule(**keys: object) -> str:
    body = "\n".join(f"{key} = {orjson.dumps(value).decode()}" for key, value in keys.items())
    return f"[[scoring.next_action]]\n{body}\n\n"


BAD = [
    (_rule(name="a", action="x", stages=["Prospect"]), "scoring.next_action[0].stages",
     "no stage 'Prospect'"),
    (_rule(name="a", action="x", tags=["astrology"]), "scoring.next_action[0].tags",
     "carries tag 'astrology'"),
    (_rule(name="a", action="x", lead_types=["PQL"]), "scoring.next_action[0].lead_types",
     "no lead type 'PQL'"),
    (_rule(name="a", action="x", temperature="hot"), "scoring.next_action[0].temperature",
     "no temperature band"),
    (_rule(name="a", action="x", min_score=100000), "scoring.next_action[0].min_score",
     "can never match"),
    (_rule(name="a", action="x") + _rule(name="b", action="y", stages=["SQL"]),
     "scoring.next_action[1]", "can never match: rule 'a'"),
    (_rule(name="a"), "scoring.next_action[0].action", "required"),
    (_rule(name="a", action="x", colour="red"), "scoring.next_action[0].colour", "unknown key"),
    (_rule(name="a", action="x", stages=["SQL"]) + _rule(name="a", action="y"),
     "scoring.next_action", "more than once"),
]  # fmt: skip


@pytest.mark.parametrize(("declared", "where", "why"), BAD)
def test_bad_rules_are_refused(
    load_model: Callable[..., list[str]],
    database: Database,
    declared: str,
    where: str,
    why: str,
) -> None:
    before = rows(database, "SELECT count(*) AS n FROM scoring_models")[0].n
    with pytest.raises(SiteConfigError) as raised:
        load_model((ANCHOR, declared + ANCHOR))
    problems = dict(raised.value.problems)
    assert why in problems.get(f"site.toml: {where}", ""), problems
    assert rows(database, "SELECT count(*) AS n FROM scoring_models")[0].n == before


def test_explain_prints_types_band_and_next_action(
    load_model: Callable[..., list[str]],
    submit: Callable[..., Any],
    cli_env: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zeroparty.cli import main

    types = (
        "[scoring.temperature]\ncold = 0\nwarm = 30\n\n"
        '[[scoring.lead_type]]\nname = "IQL"\nmin_score = 30\n\n'
    )
    load_model((ANCHOR, types + ACTIONS + ANCHOR))
    submit("cli@example.com", **FIT)
    capsys.readouterr()
    assert main(["score", "--explain", "cli@example.com"]) == 0
    out = capsys.readouterr().out
    assert "  lead types: IQL\n" in out
    assert "  temperature: warm\n" in out
    assert "  next best action: Keep nurturing (rule nurture)\n" in out
