"""Data-subject requests: deadlines by jurisdiction, the queue, overdue ones standing
out, access and erasure carried out from the console, self-service ones recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from consent_ledger.models import SubjectProfile
from consent_ledger.requests import (
    DataSubjectRequest,
    RequestChannel,
    RequestKind,
    add_one_month,
    due_date,
    record_request,
)
from consent_ledger.verify import verify_database
from tests.console.conftest import LEAD_EMAIL, csrf_of
from tests.factories import record
from zeroparty.db import Database
from zeroparty.settings import Settings


@pytest.mark.parametrize(
    ("received", "jurisdiction", "due"),
    [
        (datetime(2026, 1, 31, 9, tzinfo=UTC), "DE", datetime(2026, 2, 28, 9, tzinfo=UTC)),
        (datetime(2028, 1, 31, 9, tzinfo=UTC), None, datetime(2028, 2, 29, 9, tzinfo=UTC)),
        (datetime(2026, 12, 15, tzinfo=UTC), "FR", datetime(2027, 1, 15, tzinfo=UTC)),
        (datetime(2026, 3, 1, tzinfo=UTC), "US-CA", datetime(2026, 4, 15, tzinfo=UTC)),
    ],
)
def test_deadlines(received: datetime, jurisdiction: str | None, due: datetime) -> None:
    assert due_date(received, jurisdiction) == due


def test_one_month_never_more_than_a_month() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(400):
        moment = start + timedelta(days=day)
        later = add_one_month(moment)
        assert 28 <= (later - moment).days <= 31


def _csrf_post(client: TestClient, path: str, **data: str) -> object:
    return client.post(path, data={"csrf": csrf_of(client), **data}, follow_redirects=False)


def test_enter_and_answer_access(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    answer = client.post(
        "/console/requests",
        data={"csrf": csrf_of(client), "email": LEAD_EMAIL, "kind": "access", "note": "by phone"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    page = client.get("/console/requests").text
    assert "The request is in the queue." not in page  # only after the redirect's notice
    assert "Download data and complete #1" in page
    download = client.post("/console/requests/1/access", data={"csrf": csrf_of(client)})
    assert download.status_code == 200
    body = json.loads(download.content)
    assert body["subject_id"] == lead
    assert body["data"]["consent_ledger"]["profile"]["email"] == LEAD_EMAIL
    assert len(body["ledger"]) == 3
    page = client.get("/console/requests").text
    assert "completed" in page
    assert "compliance@staff.example" in page
    # Done once: a second answer is refused.
    assert (
        client.post("/console/requests/1/access", data={"csrf": csrf_of(client)}).status_code == 409
    )


def test_erasure_from_the_console(
    as_role: Callable[[str], TestClient], lead: str, database: Database, settings: Settings
) -> None:
    client = as_role("admin")
    csrf = csrf_of(client)
    client.post("/console/requests", data={"csrf": csrf, "email": LEAD_EMAIL, "kind": "erasure"})
    answer = client.post("/console/requests/1/erase", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    with database.read() as session:
        assert session.get(SubjectProfile, lead) is None
        assert session.get_one(DataSubjectRequest, 1).status == "completed"
    assert verify_database(settings.database_url).ok
    assert "(erased)" in client.get(f"/console/leads/{lead}").text


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": "not-an-email", "kind": "access"}, "email"),
        ({"email": "nobody@example.com", "kind": "access"}, "email"),
        ({"email": LEAD_EMAIL, "kind": "delete-everything"}, "kind"),
        ({"email": LEAD_EMAIL, "kind": "access", "received_at": "soon"}, "received_at"),
        ({"email": LEAD_EMAIL, "kind": "access", "received_at": "2999-01-01T00:00"}, "received_at"),
        ({"email": LEAD_EMAIL, "kind": "access", "note": "x" * 2001}, "note"),
    ],
)
def test_bad_requests_change_nothing(
    as_role: Callable[[str], TestClient],
    lead: str,
    database: Database,
    data: dict[str, str],
    field: str,
) -> None:
    client = as_role("compliance")
    answer = client.post("/console/requests", data={"csrf": csrf_of(client), **data})
    assert answer.status_code in (404, 422)
    assert "The request was not entered" in answer.text
    assert f"<li>{field}:" in answer.text
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(DataSubjectRequest)) == 0


def test_refusal_needs_a_reason(as_role: Callable[[str], TestClient], lead: str) -> None:
    client = as_role("compliance")
    csrf = csrf_of(client)
    client.post("/console/requests", data={"csrf": csrf, "email": LEAD_EMAIL, "kind": "erasure"})
    assert client.post("/console/requests/1/refuse", data={"csrf": csrf}).status_code == 422
    ok = client.post(
        "/console/requests/1/refuse", data={"csrf": csrf, "note": "<b>identity not shown</b>"}
    )
    assert ok.status_code == 200
    page = ok.text
    assert "refused" in page
    assert "&lt;b&gt;identity not shown&lt;/b&gt;" in page
    assert (
        client.post("/console/requests/99/refuse", data={"csrf": csrf, "note": "x"}).status_code
        == 404
    )


def test_overdue_requests_stand_out(
    as_role: Callable[[str], TestClient], database: Database
) -> None:
    record(database, "eu@example.com", "profiling", jurisdiction="DE")
    record(database, "ca@example.com", "profiling", jurisdiction="US-CA")
    now = datetime.now(UTC)
    with database.write() as session:
        for email in ("eu@example.com", "ca@example.com"):
            sid = session.scalar(
                select(SubjectProfile.subject_id).where(SubjectProfile.email == email)
            )
            assert sid is not None
            # 40 days ago: past the GDPR month, within the CCPA 45 days.
            record_request(
                session,
                sid,
                RequestKind.ACCESS,
                RequestChannel.STAFF,
                received_at=now - timedelta(days=40),
            )
    client = as_role("compliance")
    page = client.get("/console/requests").text
    assert page.count("OVERDUE") == 1
    assert "1 request past the legal deadline" in page
    assert 'class="overdue"' in page
    assert "⚠ 1 overdue" in client.get("/console/").text


def test_self_service_requests_are_recorded(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    as_role: Callable[[str], TestClient],
) -> None:
    from tests.preference_center.conftest import issue, open_session

    record(database, LEAD_EMAIL, "profiling")
    with database.read() as session:
        sid = session.scalar(select(SubjectProfile.subject_id))
    assert sid is not None
    open_session(app_client, issue(settings, database, sid))
    assert app_client.get("/p/export").status_code == 200
    page = as_role("compliance").get("/console/requests").text
    assert "preference center" in page
    assert "the lead (self-service)" in page
    with database.read() as session:
        row = session.scalars(select(DataSubjectRequest)).one()
    assert (row.kind, row.status, row.channel) == ("access", "completed", "preference_center")


def test_self_service_erasure_is_recorded(
    app_client: TestClient, settings: Settings, database: Database
) -> None:
    from preference_center.tokens import LinkPurpose
    from tests.preference_center.conftest import issue

    record(database, LEAD_EMAIL, "profiling", jurisdiction="US-CA")
    with database.read() as session:
        sid = session.scalar(select(SubjectProfile.subject_id))
    assert sid is not None
    token = issue(settings, database, sid, LinkPurpose.ERASE)
    assert app_client.post(f"/p/erase/{token}").status_code == 200
    with database.read() as session:
        row = session.scalars(select(DataSubjectRequest)).one()
        assert session.get(SubjectProfile, sid) is None
    assert (row.kind, row.status, row.channel) == ("erasure", "completed", "preference_center")
    assert row.due_at - row.received_at == timedelta(days=45)
