"""The JSON API: events intake, leads by stage, explanations, stage moves, bad input."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from consent_ledger.subjects import find_subject_id
from tests.scoring.conftest import counts, grant, rows, ts
from zeroparty.db import Database, utcnow

FIT = {"company_size": "51-200", "job_title": "Director of Sales"}


def _event(email: str, kind: str = "webinar_attended", **extra: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "email": email,
        "type": kind,
        "occurred_at": ts(utcnow()),
        **extra,
    }


@pytest.fixture
def mql(submit: Callable[..., Any], events: Callable[..., Any]) -> Callable[[str], str]:
    def make(email: str) -> str:
        submit(email, **FIT)
        events(email, "pricing_page_viewed", "webinar_attended")
        return email

    return make


def test_api_calls_need_a_key(app_client: TestClient) -> None:
    for method, path in [
        ("post", "/api/events"),
        ("get", "/api/leads?stage=MQL"),
        ("get", "/api/leads/score?email=a@example.com"),
        ("post", "/api/leads/stage"),
    ]:
        response = app_client.request(method.upper(), path, json={})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"


def test_a_retried_event_is_not_counted_twice(api: TestClient, database: Database) -> None:
    grant(database, "retry@example.com")
    batch = {"events": [_event("retry@example.com")]}
    assert api.post("/api/events", json=batch).json()["accepted"] == 1
    again = api.post("/api/events", json=batch)
    assert again.status_code == 200
    assert again.json() == {"accepted": 0, "duplicates": 1, "dropped": 0}
    assert rows(database, "SELECT score FROM scoring_leads")[0].score == 15


def test_leads_by_stage_are_paginated_with_a_cursor(
    api: TestClient, mql: Callable[[str], str]
) -> None:
    emails = {mql(f"lead{n}@example.com") for n in range(5)}
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"stage": "MQL", "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = api.get("/api/leads", params=params).json()
        seen += [lead["email"] for lead in body["leads"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(emails)
    assert len(seen) == 5
    assert pages == 3
    assert api.get("/api/leads", params={"stage": "SQL"}).json()["leads"] == []


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_a_short_or_empty_page_of_leads_still_moves_the_cursor(
    api: TestClient, database: Database, mql: Callable[[str], str], limit: int
) -> None:
    """A page walks ``limit`` leads at the stage and lists the permissioned ones: a lead
    left behind without live consent (the listener removes such rows; here one stays)
    makes its page shorter, even empty, and paging still lists every other lead once."""
    emails = [mql(f"lead{n}@example.com") for n in range(4)]
    with database.write() as session:
        stale = find_subject_id(session, emails[0])
        session.execute(
            text("UPDATE consent_state SET permitted = :no WHERE subject_id = :id"),
            {"no": False, "id": stale},
        )
    pages: list[dict[str, Any]] = []
    cursor = ""
    while True:
        params = {"stage": "MQL", "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        pages.append(api.get("/api/leads", params=params).json())
        if pages[-1]["next_cursor"] is None:
            break
        cursor = pages[-1]["next_cursor"]
    seen = [lead["email"] for page in pages for lead in page["leads"]]
    assert sorted(seen) == sorted(emails[1:])
    assert all(len(page["leads"]) <= limit for page in pages)
    assert len(pages) == 4 // limit + 1  # each page walked ``limit`` leads, the last fewer
    if limit == 1:
        assert any(page["leads"] == [] and page["next_cursor"] for page in pages)


def test_sales_move_forward_and_recycle_backward_explicitly(
    api: TestClient, mql: Callable[[str], str], database: Database
) -> None:
    email = mql("sales@example.com")
    moved = api.post(
        "/api/leads/stage", json={"email": email, "stage": "Opportunity", "reason": "demo booked"}
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["from"], moved.json()["stage"]) == ("MQL", "Opportunity")
    back = api.post("/api/leads/stage", json={"email": email, "stage": "Lead"})
    assert back.status_code == 422
    recycled = api.post(
        "/api/leads/stage",
        json={"email": email, "stage": "Lead", "recycle": True, "reason": "no budget"},
    )
    assert recycled.status_code == 200
    body = api.get("/api/leads/score", params={"email": email}).json()
    assert [
        (c["from"], c["to"], c["actor"].split(":")[0], c["reason"])
        for c in body["stage_changes"][1:]
    ] == [
        ("MQL", "Opportunity", "api", "demo booked"),
        ("Opportunity", "Lead", "api", "no budget"),
    ]
    # A recycled lead climbs again by threshold only with new points.
    api.post("/api/events", json={"events": [_event(email, "email_opened")]})
    assert api.get("/api/leads/score", params={"email": email}).json()["stage"] == "Lead"
    api.post("/api/events", json={"events": [_event(email, "case_study_downloaded")]})
    assert api.get("/api/leads/score", params={"email": email}).json()["stage"] == "SQL"


def test_a_move_by_sales_into_or_past_a_hand_off_stage_is_handed_off(
    api: TestClient, mql: Callable[[str], str], database: Database
) -> None:
    email = mql("opp@example.com")
    api.post("/api/leads/stage", json={"email": email, "stage": "SQL", "reason": "call done"})
    api.post("/api/leads/stage", json={"email": email, "stage": "Opportunity", "reason": "demo"})
    other = mql("jump@example.com")
    api.post("/api/leads/stage", json={"email": other, "stage": "Customer", "reason": "won"})
    hooks = rows(database, "SELECT stage FROM scoring_webhooks ORDER BY created_at, stage")
    assert sorted(r.stage for r in hooks) == ["Customer", "MQL", "MQL", "SQL"]


BAD_EVENTS: list[tuple[Any, str]] = [
    ({}, "events"),
    ({"events": []}, "events"),
    ({"events": "x"}, "events"),
    ({"events": [1]}, "events[0]"),
    ({"events": [_event("ok@example.com", kind="teleported")]}, "events[0].type"),
    ({"events": [_event("nobody@example.com")]}, "events[0].email"),
    ({"events": [_event("not-an-email")]}, "events[0].email"),
    (
        {"events": [{**_event("ok@example.com"), "occurred_at": "yesterday"}]},
        "events[0].occurred_at",
    ),
    (
        {"events": [{**_event("ok@example.com"), "occurred_at": "2999-01-01T00:00:00Z"}]},
        "events[0].occurred_at",
    ),
    ({"events": [{**_event("ok@example.com"), "id": ""}]}, "events[0].id"),
    ({"events": [{**_event("ok@example.com"), "extra": 1}]}, "events[0].extra"),
    ({"events": [{**_event("ok@example.com"), "properties": [1]}]}, "events[0].properties"),
    (
        {"events": [_event("ok@example.com"), _event("ok@example.com", kind="teleported")]},
        "events[1].type",
    ),
    ({"events": [_event("ok@example.com")], "more": 1}, "more"),
]


@pytest.mark.parametrize(("body", "field"), BAD_EVENTS)
def test_bad_event_batches_change_nothing(
    api: TestClient, database: Database, body: Any, field: str
) -> None:
    grant(database, "ok@example.com")
    before = counts(database)
    response = api.post("/api/events", json=body)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["fields"]
    assert counts(database) == before


def test_a_repeated_id_in_one_batch_is_refused(api: TestClient, database: Database) -> None:
    grant(database, "ok@example.com")
    event = _event("ok@example.com")
    response = api.post("/api/events", json={"events": [event, event]})
    assert response.status_code == 422
    assert "events[1].id" in response.json()["error"]["fields"]


def test_a_batch_too_large_and_non_json_are_refused(api: TestClient) -> None:
    many = {"events": [_event("ok@example.com") for _ in range(1001)]}
    assert api.post("/api/events", json=many).status_code == 422
    assert (
        api.post("/api/events", content=b"x", headers={"content-type": "text/plain"}).status_code
        == 415
    )


BAD_MOVES: list[tuple[Any, int, str]] = [
    ({"email": "sales@example.com"}, 422, "stage"),
    ({"email": "sales@example.com", "stage": "Champion"}, 422, "stage"),
    ({"email": "sales@example.com", "stage": "Visitor"}, 422, "stage"),
    ({"email": "sales@example.com", "stage": "SQL", "recycle": "yes"}, 422, "recycle"),
    ({"email": "sales@example.com", "stage": "SQL", "recycle": True}, 422, "recycle"),
    ({"email": "sales@example.com", "stage": "Lead", "recycle": True}, 422, "reason"),
    ({"email": "sales@example.com", "stage": "MQL"}, 409, "stage"),
    ({"email": "nobody@example.com", "stage": "SQL"}, 404, "email"),
    ({"email": "sales@example.com", "stage": "SQL", "who": "me"}, 422, "who"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_MOVES)
def test_bad_stage_moves_change_nothing(
    api: TestClient,
    mql: Callable[[str], str],
    database: Database,
    body: Any,
    status: int,
    field: str,
) -> None:
    mql("sales@example.com")
    before = counts(database)
    response = api.post("/api/leads/stage", json=body)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]["fields"]
    assert counts(database) == before


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"stage": "Lead"},
        {"stage": "MQL", "limit": "0"},
        {"stage": "MQL", "limit": "x"},
        {"stage": "MQL", "cursor": "'; drop"},
        {"stage": "MQL", "page": "2"},
    ],
)
def test_bad_lead_queries_are_refused(api: TestClient, params: dict[str, str]) -> None:
    response = api.get("/api/leads", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["fields"]


def test_score_of_an_unknown_lead_is_404(api: TestClient) -> None:
    assert api.get("/api/leads/score", params={"email": "x@example.com"}).status_code == 404
    assert api.get("/api/leads/score", params={"email": "nope"}).status_code == 422


def test_the_openapi_document_describes_scoring(app_client: TestClient) -> None:
    paths = app_client.get("/openapi.json").json()["paths"]
    for path in ("/api/events", "/api/leads", "/api/leads/score", "/api/leads/stage"):
        assert path in paths
