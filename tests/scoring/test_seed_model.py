"""The demo model's numbers, through the real form, events API and explanation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests.scoring.conftest import rows
from zeroparty.db import Database

FIT = {"company_size": "201-1000", "job_title": "Head of Data", "industry": "health"}


def test_seventy_points_is_an_mql_and_a_case_study_makes_it_an_sql_at_eighty(
    submit: Callable[..., Any], events: Callable[..., Any], api: TestClient, database: Database
) -> None:
    submit("ann@example.com", **FIT)
    result = events("ann@example.com", "pricing_page_viewed", "webinar_attended")
    assert result == {"accepted": 2, "duplicates": 0, "dropped": 0}

    body = api.get("/api/leads/score", params={"email": "ann@example.com"}).json()
    assert body["score"] == 70
    assert body["stage"] == "MQL"
    assert sorted((p["rule"], p["points"]) for p in body["points"]) == [
        ("company-size", 20),
        ("decision-maker", 15),
        ("pricing-page", 20),
        ("webinar", 15),
    ]
    assert sum(p["points"] for p in body["points"]) == body["score"]

    events("ann@example.com", "case_study_downloaded")
    body = api.get("/api/leads/score", params={"email": "ann@example.com"}).json()
    assert (body["score"], body["stage"]) == (80, "SQL")
    moves = [(c["from"], c["to"], c["actor"]) for c in body["stage_changes"]]
    assert moves == [("Lead", "MQL", "system:threshold"), ("MQL", "SQL", "system:threshold")]
    assert "reached the SQL threshold (80)" in body["stage_changes"][1]["reason"]


def test_every_point_names_its_rule_input_and_the_permitting_ledger_entry(
    submit: Callable[..., Any], events: Callable[..., Any], api: TestClient, database: Database
) -> None:
    submit("bo@example.com", **FIT)
    events("bo@example.com", "pricing_page_viewed")
    grant_seq = rows(
        database,
        "SELECT seq FROM consent_events WHERE purpose_key = 'profiling' AND action = 'granted'",
    )[0].seq
    body = api.get("/api/leads/score", params={"email": "bo@example.com"}).json()
    sources = {p["rule"]: p["source"] for p in body["points"]}
    assert sources["company-size"] == "field:company_size=201-1000"
    assert sources["decision-maker"] == "field:job_title=Head of Data"
    assert sources["pricing-page"].startswith("event:")
    assert {p["consent_entry"] for p in body["points"]} == {grant_seq}
    assert body["permitted"] is True


def test_industry_and_three_opened_emails_add_their_points_once(
    submit: Callable[..., Any], events: Callable[..., Any], api: TestClient
) -> None:
    submit("cy@example.com", industry="software")
    events("cy@example.com", "email_opened", "email_opened")
    assert api.get("/api/leads/score", params={"email": "cy@example.com"}).json()["score"] == 10
    events("cy@example.com", "email_opened", "email_opened", "email_opened")
    body = api.get("/api/leads/score", params={"email": "cy@example.com"}).json()
    assert body["score"] == 15
    assert [p["rule"] for p in body["points"]].count("emails-opened") == 1


def test_answers_without_the_profiling_box_are_not_scored(
    submit: Callable[..., Any], api: TestClient, database: Database
) -> None:
    submit("di@example.com", consent=("newsletter",), **FIT)
    body = api.get("/api/leads/score", params={"email": "di@example.com"}).json()
    assert body == {**body, "permitted": False, "score": None, "stage": "Lead", "points": []}
    assert rows(database, "SELECT * FROM scoring_attributes") == []
