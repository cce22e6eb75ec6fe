"""Lead types held beside the stage (IQL, PQL, SQL-from-service, ...) and temperature
bands by score: declared in ``[scoring]``, earned by score and rules or given by hand,
shown in the lead API and the hand-off, gone with the gating consent. Bad declarations
are refused by ``site load`` with the key path and nothing changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from scoring import console_adapters
from scoring.webhooks import DispatchConfig, dispatch_pending
from tests.fixtures.webhooks import WebhookReceiver
from tests.scoring.conftest import grant, rows, withdraw
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database

ANCHOR = '[[scoring.quiz]]\nname = "terabytes"'
TYPES = """[scoring.temperature]
cold = 0
warm = 40
hot = 70

[[scoring.lead_type]]
name = "IQL"
min_score = 30

[[scoring.lead_type]]
name = "PQL"
rules = ["usage-limit"]

[[scoring.lead_type]]
name = "SQL-from-service"
by_hand = true

"""
FIT = {"company_size": "201-1000", "job_title": "Chief Data Officer"}  # 35 points


@pytest.fixture
def typed_model(load_model: Callable[..., list[str]]) -> None:
    assert any("version 2" in c for c in load_model((ANCHOR, TYPES + ANCHOR)))


def _score(api: TestClient, email: str) -> dict[str, Any]:
    response = api.get("/api/leads/score", params={"email": email})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_types_are_earned_by_score_and_rules_and_kept(
    typed_model: None,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
    database: Database,
) -> None:
    submit("typed@example.com", **FIT)
    body = _score(api, "typed@example.com")
    assert (body["score"], body["temperature"]) == (35, "cold")
    assert [(t["type"], t["by"], t["reason"]) for t in body["lead_types"]] == [
        ("IQL", "system:threshold", "score 35 reached 30")
    ]
    events("typed@example.com", "usage_limit_reached")
    body = _score(api, "typed@example.com")
    assert (body["score"], body["stage"], body["temperature"]) == (60, "MQL", "warm")
    assert [t["type"] for t in body["lead_types"]] == ["IQL", "PQL"]
    assert body["lead_types"][1]["reason"] == "rules usage-limit scored"
    listed = api.get("/api/leads", params={"stage": "MQL"}).json()["leads"]
    assert [(r["lead_types"], r["temperature"]) for r in listed] == [(["IQL", "PQL"], "warm")]
    events("typed@example.com", "pricing_page_viewed", "webinar_attended")
    assert _score(api, "typed@example.com")["temperature"] == "hot"
    subject_id = listed[0]["lead_id"]
    with database.read() as session:
        shown = console_adapters.lead_intent(session, subject_id)
    assert shown is not None
    assert (shown.lead_types, shown.temperature) == (["IQL", "PQL"], "hot")


def test_a_type_is_given_by_hand_with_a_reason(
    typed_model: None, submit: Callable[..., Any], api: TestClient, database: Database
) -> None:
    submit("service@example.com", **FIT)
    given = {"email": "service@example.com", "type": "SQL-from-service", "reason": "ticket 42"}
    response = api.post("/api/leads/type", json=given)
    assert response.status_code == 201, response.text
    held = {t["type"]: t for t in response.json()["lead_types"]}
    assert held["SQL-from-service"]["by"].startswith("api:")
    assert held["SQL-from-service"]["reason"] == "ticket 42"
    assert api.post("/api/leads/type", json=given).status_code == 200, "held already"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"email": "service@example.com", "type": "VIP", "reason": "x"}, 422, "type"),
        ({"email": "service@example.com", "type": "SQL-from-service"}, 422, "reason"),
        ({"email": "service@example.com", "type": "PQL", "reason": "x", "x": 1}, 422, "x"),
        ({"email": "nobody@example.com", "type": "PQL", "reason": "x"}, 404, "email"),
        ({"email": "noconsent@example.com", "type": "PQL", "reason": "x"}, 409, None),
    ],
)
def test_bad_hand_given_types_are_refused_and_change_nothing(
    typed_model: None,
    submit: Callable[..., Any],
    api: TestClient,
    database: Database,
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    submit("service@example.com", **FIT)
    grant(database, "noconsent@example.com", "product_updates")
    before = rows(database, "SELECT subject_id, lead_types FROM scoring_leads ORDER BY 1")
    response = api.post("/api/leads/type", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if field is not None:
        assert field in error["fields"], error
    after = rows(database, "SELECT subject_id, lead_types FROM scoring_leads ORDER BY 1")
    assert after == before


def test_types_and_temperature_reach_the_hand_off_and_go_with_consent(
    typed_model: None,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    submit("hand@example.com", **FIT)
    events("hand@example.com", "usage_limit_reached")  # 60: MQL
    assert dispatch_pending(database, dispatch_config).delivered == 1
    data = orjson.loads(webhook_receiver.received[0].body)["data"]
    assert (data["lead_types"], data["temperature"]) == (["IQL", "PQL"], "warm")
    withdraw(database, "hand@example.com")
    body = _score(api, "hand@example.com")
    assert (body["lead_types"], body["temperature"]) == ([], None)
    assert rows(database, "SELECT count(*) AS n FROM scoring_leads")[0].n == 0


def test_the_demo_model_has_no_types_and_no_bands(
    submit: Callable[..., Any], api: TestClient
) -> None:
    submit("demo@example.com", **FIT)
    body = _score(api, "demo@example.com")
    assert (body["score"], body["lead_types"], body["temperature"]) == (35, [], None)


BAD = [
    ('[[scoring.lead_type]]\nname = "IQL"\nmin_score = 1\n\n[[scoring.lead_type]]\n'
     'name = "iql"\nmin_score = 2\n', "scoring.lead_type[1].name", "more than once"),
    ('[[scoring.lead_type]]\nname = "PQL"\nrules = ["product-tour"]\n',
     "scoring.lead_type[0].rules", "no rule 'product-tour'"),
    ('[[scoring.lead_type]]\nname = "PQL"\n', "scoring.lead_type[0].name", "by_hand"),
    ('[[scoring.lead_type]]\nname = "SQL"\nby_hand = true\nmin_score = 80\n',
     "scoring.lead_type[0].by_hand", "no min_score or rules"),
    ('[[scoring.lead_type]]\nname = "1QL"\nmin_score = 1\n', "scoring.lead_type[0].name",
     "a letter"),
    ('[[scoring.lead_type]]\nname = "X"\nmin_score = 1\ncolour = "red"\n',
     "scoring.lead_type[0].colour", "unknown key"),
    ("[scoring.temperature]\ncold = 0\nwarm = 70\nhot = 40\n", "scoring.temperature.hot",
     "out of order"),
    ('[scoring.temperature]\ncold = 0\nwarm = "40"\n', "scoring.temperature.warm",
     "lowest score"),
    ("[scoring.temperature]\nCold = 0\n", "scoring.temperature.Cold", "lower-case"),
]  # fmt: skip


@pytest.mark.parametrize(("declared", "where", "why"), BAD)
def test_bad_types_and_bands_are_refused(
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
