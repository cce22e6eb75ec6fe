"""Qualification: BANT recorded by sales (who, when, history), shown with the score,
usable in rules; product-qualified events; bad input changes nothing; consent gates all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from consent_ledger.subjects import find_subject_id
from scoring.personal import erase_scoring, export_scoring
from tests.scoring.conftest import grant, rows, withdraw
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database

URL = "/api/leads/qualification"


def _bant_rows(database: Database) -> int:
    return len(rows(database, "SELECT id FROM scoring_qualification"))


def _score(api: TestClient, email: str) -> dict[str, Any]:
    response = api.get("/api/leads/score", params={"email": email})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_bant_is_recorded_with_who_and_when_and_shown_with_the_score(
    api: TestClient, database: Database, submit: Callable[..., Any]
) -> None:
    submit("ann@acme-corp.com", job_title="Engineer")
    response = api.post(URL, json={"email": "ann@acme-corp.com", "budget": 50000, "need": "SSO"})
    assert response.status_code == 201, response.text
    assert response.json()["qualification"]["budget"]["value"] == "50000"
    api.post(URL, json={"email": "ann@acme-corp.com", "budget": 80000.5, "timeline": "quarter"})
    bant = _score(api, "ann@acme-corp.com")["qualification"]
    assert bant["budget"]["value"] == "80000.5"
    assert bant["need"]["value"] == "SSO"
    assert bant["timeline"]["value"] == "quarter"
    assert bant["authority"] is None
    assert bant["budget"]["recorded_by"].startswith("api:")
    assert bant["budget"]["recorded_at"].endswith("Z")
    # History is kept: every recorded value stays until withdrawal or erasure.
    assert _bant_rows(database) == 4
    api.post(URL, json={"email": "ann@acme-corp.com", "need": None})
    assert _score(api, "ann@acme-corp.com")["qualification"]["need"] is None
    assert _bant_rows(database) == 5


def test_bant_counts_in_rules_like_a_field(
    api: TestClient, submit: Callable[..., Any], events: Callable[..., Any]
) -> None:
    submit("ann@acme-corp.com", company_size="51-200", job_title="Director")  # 35
    events("ann@acme-corp.com", "pricing_page_viewed")  # 55
    assert _score(api, "ann@acme-corp.com")["stage"] == "Lead"
    api.post(URL, json={"email": "ann@acme-corp.com", "budget": 20000})  # +10 → 65: MQL
    body = _score(api, "ann@acme-corp.com")
    assert body["score"] == 65
    assert body["stage"] == "MQL"
    point = next(p for p in body["points"] if p["rule"] == "bant-budget")
    assert point["source"] == "field:bant.budget=20000"
    api.post(URL, json={"email": "ann@acme-corp.com", "authority": "decision_maker"})
    assert _score(api, "ann@acme-corp.com")["score"] == 75
    api.post(URL, json={"email": "ann@acme-corp.com", "budget": 500})  # below the range
    assert _score(api, "ann@acme-corp.com")["score"] == 65


def test_product_qualified_events_are_accepted_and_scored(
    api: TestClient, database: Database, events: Callable[..., Any]
) -> None:
    grant(database, "ann@acme-corp.com")
    result = events("ann@acme-corp.com", "feature_used", "feature_used", "usage_limit_reached")
    assert result["accepted"] == 3
    body = _score(api, "ann@acme-corp.com")
    points: dict[str, float] = {}
    for p in body["points"]:
        points[p["rule"]] = points.get(p["rule"], 0.0) + p["points"]
    assert points == {"feature-used": 10, "usage-limit": 25}  # 5 per use, up to 3 uses
    assert body["score"] == 35


BAD_INPUT = [
    ({"budget": 1}, "email"),
    ({"email": "nope", "budget": 1}, "email"),
    ({"email": "ann@acme-corp.com"}, "budget"),
    ({"email": "ann@acme-corp.com", "budget": -1}, "budget"),
    ({"email": "ann@acme-corp.com", "budget": "lots"}, "budget"),
    ({"email": "ann@acme-corp.com", "budget": True}, "budget"),
    ({"email": "ann@acme-corp.com", "budget": 1e13}, "budget"),
    ({"email": "ann@acme-corp.com", "authority": "boss"}, "authority"),
    ({"email": "ann@acme-corp.com", "timeline": "soon"}, "timeline"),
    ({"email": "ann@acme-corp.com", "need": ""}, "need"),
    ({"email": "ann@acme-corp.com", "need": "x" * 501}, "need"),
    ({"email": "ann@acme-corp.com", "need": 3}, "need"),
    ({"email": "ann@acme-corp.com", "budget": 5, "colour": "red"}, "colour"),
    # One bad field refuses the good ones too.
    ({"email": "ann@acme-corp.com", "budget": 5, "authority": "boss"}, "authority"),
]


@pytest.mark.parametrize(("body", "field"), BAD_INPUT)
def test_bad_bant_is_refused_and_changes_nothing(
    api: TestClient,
    database: Database,
    submit: Callable[..., Any],
    body: dict[str, Any],
    field: str,
) -> None:
    submit("ann@acme-corp.com", job_title="Engineer")
    before = rows(database, "SELECT score, scored_at FROM scoring_leads")
    response = api.post(URL, json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert field in error["fields"]
    assert _bant_rows(database) == 0
    assert rows(database, "SELECT score, scored_at FROM scoring_leads") == before


def test_no_bant_without_consent_or_for_an_unknown_lead(
    api: TestClient, database: Database, submit: Callable[..., Any]
) -> None:
    submit("eve@acme-corp.com", consent=("newsletter",))
    refused = api.post(URL, json={"email": "eve@acme-corp.com", "budget": 5})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "consent_missing"
    unknown = api.post(URL, json={"email": "nobody@acme-corp.com", "budget": 5})
    assert unknown.status_code == 404
    assert _bant_rows(database) == 0
    not_json = api.post(URL, content=b"budget=5", headers={"content-type": "text/plain"})
    assert not_json.status_code in (400, 415, 422)
    assert _bant_rows(database) == 0


def test_a_withdrawal_deletes_bant_and_hides_it(
    api: TestClient, database: Database, submit: Callable[..., Any]
) -> None:
    submit("ann@acme-corp.com", job_title="Engineer")
    api.post(URL, json={"email": "ann@acme-corp.com", "budget": 50000, "authority": "user"})
    withdraw(database, "ann@acme-corp.com")
    assert _bant_rows(database) == 0
    body = _score(api, "ann@acme-corp.com")
    assert body["permitted"] is False
    assert set(body["qualification"].values()) == {None}
    # A renewed grant starts from nothing: sales records BANT again.
    grant(database, "ann@acme-corp.com")
    assert set(_score(api, "ann@acme-corp.com")["qualification"].values()) == {None}


def test_bant_is_exported_and_erased(
    api: TestClient, database: Database, submit: Callable[..., Any]
) -> None:
    submit("ann@acme-corp.com", job_title="Engineer")
    api.post(URL, json={"email": "ann@acme-corp.com", "need": "audit trail"})
    with database.write() as session:
        subject_id = find_subject_id(session, "ann@acme-corp.com")
        assert subject_id is not None
        exported = export_scoring(session, subject_id)
        assert exported is not None
        assert [(q["field"], q["value"]) for q in exported["qualification"]] == [
            ("need", "audit trail")
        ]
        erase_scoring(session, subject_id)
    assert _bant_rows(database) == 0


def test_a_rule_on_an_unknown_bant_field_is_refused(
    load_model: Callable[..., list[str]],
) -> None:
    with pytest.raises(SiteConfigError) as caught:
        load_model(('field = "bant.budget"', 'field = "bant.money"'))
    assert "scoring.fit[" in str(caught.value)
    assert "bant.money" in str(caught.value)


def test_qualification_needs_a_key(app_client: TestClient) -> None:
    response = app_client.post(URL, json={"email": "ann@acme-corp.com", "budget": 1})
    assert response.status_code == 401
