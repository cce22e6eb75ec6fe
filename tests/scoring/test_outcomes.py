"""``POST /api/leads/outcome``: sales records won or lost, only with live consent;
bad input changes nothing; export and erasure cover outcomes (``scoring/outcomes.py``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from scoring import personal
from tests.scoring.conftest import grant, rows, ts, withdraw
from zeroparty.db import Database, utcnow
from zeroparty.wiring import build_ledger

URL = "/api/leads/outcome"


def outcomes(database: Database) -> list[Any]:
    return rows(database, "SELECT * FROM scoring_outcomes ORDER BY subject_id")


def test_an_outcome_is_recorded_once_and_a_retry_is_harmless(
    api: TestClient, database: Database, api_key: str
) -> None:
    grant(database, "won@example.com")
    decided = utcnow() - timedelta(days=2)
    body = {"email": "Won@Example.com", "outcome": "won", "decided_at": ts(decided)}
    first = api.post(URL, json=body)
    assert first.status_code == 201, first.text
    answer = first.json()
    assert answer["outcome"] == "won"
    assert answer["created"] is True
    assert answer["decided_at"] == ts(decided)
    assert answer["recorded_by"].startswith("api:test-")
    again = api.post(URL, json=body)
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert api.post(URL, json={"email": "won@example.com", "outcome": "won"}).status_code == 200
    (row,) = outcomes(database)
    assert row.outcome == "won"
    assert row.subject_id == answer["lead_id"]


def test_a_different_outcome_is_refused_and_nothing_changes(
    api: TestClient, database: Database
) -> None:
    grant(database, "flip@example.com")
    assert api.post(URL, json={"email": "flip@example.com", "outcome": "lost"}).status_code == 201
    before = outcomes(database)
    refused = api.post(URL, json={"email": "flip@example.com", "outcome": "won"})
    assert refused.status_code == 409
    assert "recorded already: lost" in refused.json()["error"]["message"]
    other_time = {"email": "flip@example.com", "outcome": "lost", "decided_at": ts(utcnow())}
    assert api.post(URL, json=other_time).status_code == 409
    assert outcomes(database) == before


def test_no_outcome_without_live_consent(api: TestClient, database: Database) -> None:
    grant(database, "nl@example.com", "newsletter")
    refused = api.post(URL, json={"email": "nl@example.com", "outcome": "won"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "consent_missing"
    grant(database, "gone@example.com")
    withdraw(database, "gone@example.com")
    assert api.post(URL, json={"email": "gone@example.com", "outcome": "lost"}).status_code == 409
    unknown = api.post(URL, json={"email": "who@example.com", "outcome": "won"})
    assert unknown.status_code == 404
    assert outcomes(database) == []


def test_a_withdrawal_deletes_the_outcome(api: TestClient, database: Database) -> None:
    grant(database, "w@example.com")
    grant(database, "stay@example.com")
    for email in ("w@example.com", "stay@example.com"):
        assert api.post(URL, json={"email": email, "outcome": "won"}).status_code == 201
    withdraw(database, "w@example.com", "newsletter")  # another purpose: kept
    assert len(outcomes(database)) == 2
    withdraw(database, "w@example.com")
    (left,) = outcomes(database)
    assert (
        left.subject_id
        == rows(
            database, "SELECT subject_id FROM subject_profiles WHERE email = 'stay@example.com'"
        )[0].subject_id
    )


def test_export_and_erasure_cover_the_outcome(api: TestClient, database: Database) -> None:
    grant(database, "ex@example.com")
    lead_id = api.post(URL, json={"email": "ex@example.com", "outcome": "lost"}).json()["lead_id"]
    with database.read() as session:
        exported = personal.export_scoring(session, lead_id)
    assert exported is not None
    assert exported["outcome"]["outcome"] == "lost"
    assert exported["conversion"] is None  # no model published
    with database.write() as session:
        build_ledger(database).erase(session, lead_id, source_ref="test")
    assert outcomes(database) == []


def test_without_an_api_key(app_client: TestClient, database: Database) -> None:
    grant(database, "k@example.com")
    response = app_client.post(URL, json={"email": "k@example.com", "outcome": "won"})
    assert response.status_code == 401
    assert outcomes(database) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"outcome": "won"}, "email"),
        ({"email": "not-an-email", "outcome": "won"}, "email"),
        ({"email": "bad@example.com"}, "outcome"),
        ({"email": "bad@example.com", "outcome": "maybe"}, "outcome"),
        ({"email": "bad@example.com", "outcome": 1}, "outcome"),
        ({"email": "bad@example.com", "outcome": "WON"}, "outcome"),
        ({"email": "bad@example.com", "outcome": "won", "decided_at": "yesterday"}, "decided_at"),
        ({"email": "bad@example.com", "outcome": "won", "decided_at": 17}, "decided_at"),
        (
            {"email": "bad@example.com", "outcome": "won", "decided_at": "2026-01-01T10:00:00"},
            "decided_at",
        ),
        ({"email": "bad@example.com", "outcome": "won", "decided_at": "FUTURE"}, "decided_at"),
        ({"email": "bad@example.com", "outcome": "won", "stage": "SQL"}, "stage"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    api: TestClient, database: Database, body: dict[str, Any], field: str
) -> None:
    grant(database, "bad@example.com")
    if body.get("decided_at") == "FUTURE":
        body = {**body, "decided_at": ts(utcnow() + timedelta(hours=1))}
    response = api.post(URL, json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["fields"]
    assert outcomes(database) == []


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"[1, 2]", {"content-type": "application/json"}, 422),
        (b"{not json", {"content-type": "application/json"}, 422),
        (b"email=a@b.example", {"content-type": "application/x-www-form-urlencoded"}, 415),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    api: TestClient, database: Database, content: bytes, headers: dict[str, str], status: int
) -> None:
    response = api.post(URL, content=content, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"]
    assert outcomes(database) == []


def test_outcome_route_is_in_openapi(app_client: TestClient) -> None:
    document: Callable[[], Any] = app_client.get("/openapi.json").json
    paths = document()["paths"]
    assert "post" in paths[URL]
    assert "conversion" in document()["components"]["schemas"]["ScoreExplanation"]["properties"]
