"""Data-subject requests of every kind: deadlines by jurisdiction and their one
extension, the queue with overdue and due-soon ones standing out, requests about people
we hold nothing on, every kind carried out from the console (irreversible steps only
after an explicit confirmation), CLI and self-service ones recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

import consent_ledger.requests as requests_module
from consent_ledger.models import SubjectProfile
from consent_ledger.requests import (
    DataSubjectRequest,
    RequestChannel,
    RequestKind,
    add_one_month,
    due_date,
    email_digest,
    extended_due,
    record_request,
)
from consent_ledger.state import consent_now
from consent_ledger.verify import verify_database
from console.models import StaffAuditEntry
from tests.console.conftest import LEAD_EMAIL, Clock, csrf_of
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


@pytest.mark.parametrize(
    ("due", "regime", "extended"),
    [
        (datetime(2026, 2, 28, tzinfo=UTC), "gdpr", datetime(2026, 4, 28, tzinfo=UTC)),
        (datetime(2026, 12, 31, tzinfo=UTC), "gdpr", datetime(2027, 2, 28, tzinfo=UTC)),
        (datetime(2026, 11, 15, tzinfo=UTC), "gdpr", datetime(2027, 1, 15, tzinfo=UTC)),
        (datetime(2026, 4, 15, tzinfo=UTC), "ccpa", datetime(2026, 5, 30, tzinfo=UTC)),
    ],
)
def test_extended_deadlines(due: datetime, regime: str, extended: datetime) -> None:
    assert extended_due(due, regime) == extended


def test_one_month_never_more_than_a_month() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(400):
        moment = start + timedelta(days=day)
        later = add_one_month(moment)
        assert 28 <= (later - moment).days <= 31


@pytest.fixture
def request_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The request queue's clock in a test (not the staff sessions'): stands still until
    moved."""
    clock = Clock()
    monkeypatch.setattr(requests_module, "utcnow", clock)
    return clock


def _post(client: TestClient, path: str, **data: str) -> Any:
    return client.post(path, data={"csrf": csrf_of(client), **data}, follow_redirects=False)


def _enter(client: TestClient, kind: str, email: str = LEAD_EMAIL, **extra: str) -> int:
    answer = client.post(
        "/console/requests",
        data={"csrf": csrf_of(client), "email": email, "kind": kind, **extra},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return answer.status_code


def _row(database: Database, request_id: int = 1) -> DataSubjectRequest:
    with database.read() as session:
        row = session.get_one(DataSubjectRequest, request_id)
        session.expunge(row)
        return row


def test_enter_and_answer_access(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    _enter(client, "access", note="by phone")
    page = client.get("/console/requests").text
    assert "Work on #1" in page
    detail = client.get("/console/requests/1").text
    assert "Download data and complete #1" in detail
    download = client.post("/console/requests/1/access", data={"csrf": csrf_of(client)})
    assert download.status_code == 200
    assert 'filename="access-request-1.json"' in download.headers["content-disposition"]
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


def test_portability_is_a_machine_readable_download(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    _enter(client, "portability")
    download = client.post("/console/requests/1/access", data={"csrf": csrf_of(client)})
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/json"
    assert json.loads(download.content)["kind"] == "portability"
    assert _row(database).status == "completed"


def test_erasure_asks_for_confirmation(
    as_role: Callable[[str], TestClient], lead: str, database: Database, settings: Settings
) -> None:
    client = as_role("admin")
    _enter(client, "erasure")
    detail = client.get("/console/requests/1").text
    assert 'name="confirm" value="yes" required' in detail
    # One click without the confirmation: refused, nothing erased.
    unconfirmed = _post(client, "/console/requests/1/erase")
    assert unconfirmed.status_code == 422
    assert "<li>confirm:" in unconfirmed.text
    with database.read() as session:
        assert session.get(SubjectProfile, lead) is not None
    assert _row(database).status == "open"
    answer = _post(client, "/console/requests/1/erase", confirm="yes")
    assert answer.status_code == 303
    with database.read() as session:
        assert session.get(SubjectProfile, lead) is None
    assert _row(database).status == "completed"
    assert verify_database(settings.database_url).ok
    assert "(erased)" in client.get(f"/console/leads/{lead}").text
    assert (
        "The lead&#39;s personal data is erased"
        in client.get("/console/requests/1?done=erased").text
    )


@pytest.mark.parametrize(
    ("kind", "purpose", "action"),
    [
        ("objection", "newsletter", "withdrawn"),
        ("restriction", "newsletter", "withdrawn"),
        ("opt_out_sale", "sale_sharing", "refused"),
        ("limit_sensitive", "profiling", "withdrawn"),
    ],
)
def test_withdrawal_kinds_change_consent_after_confirmation(
    as_role: Callable[[str], TestClient],
    database: Database,
    kind: str,
    purpose: str,
    action: str,
) -> None:
    from consent_ledger.actions import ConsentMethod

    record(database, LEAD_EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN)
    record(database, LEAD_EMAIL, "profiling")
    record(database, LEAD_EMAIL, "sale_sharing", jurisdiction="US-CA")
    client = as_role("compliance")
    _enter(client, kind)
    detail = client.get("/console/requests/1").text
    assert f"<code>{purpose}</code>): {action}" in detail
    assert _post(client, "/console/requests/1/withdraw").status_code == 422
    with database.read() as session:
        assert consent_now(session, LEAD_EMAIL, purpose).permitted
    answer = _post(client, "/console/requests/1/withdraw", confirm="yes")
    assert answer.status_code == 303
    with database.read() as session:
        assert not consent_now(session, LEAD_EMAIL, purpose).permitted
        audit = session.scalars(
            select(StaffAuditEntry.action).order_by(StaffAuditEntry.id.desc())
        ).first()
    assert audit == "request.withdraw"
    row = _row(database)
    assert row.status == "completed"
    assert f"{purpose} {action}" in row.note
    # Done once.
    assert _post(client, "/console/requests/1/withdraw", confirm="yes").status_code == 409


def test_rectification_needs_what_was_corrected_and_confirmation(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    _enter(client, "rectification", note="name is Anne, not Ann")
    assert _post(client, "/console/requests/1/complete", confirm="yes").status_code == 422
    assert _post(client, "/console/requests/1/complete", note="CRM name fixed").status_code == 422
    assert _row(database).status == "open"
    answer = _post(client, "/console/requests/1/complete", note="CRM name fixed", confirm="yes")
    assert answer.status_code == 303
    row = _row(database)
    assert (row.status, row.handled_by) == ("completed", "compliance@staff.example")
    assert "CRM name fixed" in row.note


@pytest.mark.parametrize("jurisdiction", ["DE", "US-CA"])
def test_deadline_extended_once_with_a_reason(
    as_role: Callable[[str], TestClient],
    database: Database,
    request_clock: Clock,
    jurisdiction: str,
) -> None:
    record(database, LEAD_EMAIL, "profiling", jurisdiction=jurisdiction)
    client = as_role("compliance")
    _enter(client, "access")
    first = _row(database)
    assert first.received_at == request_clock.now
    assert first.regime == ("ccpa" if jurisdiction == "US-CA" else "gdpr")
    # No reason: refused, nothing changed.
    refused = _post(client, "/console/requests/1/extend", reason="  ")
    assert refused.status_code == 422
    assert _row(database).due_at == first.due_at
    request_clock.advance(days=10)
    answer = _post(client, "/console/requests/1/extend", reason="complex: three systems")
    assert answer.status_code == 303
    row = _row(database)
    assert row.due_at == extended_due(first.due_at, first.regime)
    assert row.extended_at == request_clock.now
    assert row.extension_reason == "complex: three systems"
    detail = client.get("/console/requests/1").text
    assert "complex: three systems" in detail
    assert "Extended" in detail
    assert "Extend #1" not in detail
    # Once only.
    again = _post(client, "/console/requests/1/extend", reason="still busy")
    assert again.status_code == 409
    assert _row(database).due_at == row.due_at


def test_no_extension_after_the_deadline(
    as_role: Callable[[str], TestClient], lead: str, database: Database, request_clock: Clock
) -> None:
    client = as_role("compliance")
    _enter(client, "access")
    request_clock.advance(days=32)
    assert _post(client, "/console/requests/1/extend", reason="late").status_code == 409
    assert _row(database).extended_at is None


def test_overdue_and_due_soon_requests_stand_out(
    as_role: Callable[[str], TestClient], database: Database, request_clock: Clock
) -> None:
    record(database, "eu@example.com", "profiling", jurisdiction="DE")
    record(database, "ca@example.com", "profiling", jurisdiction="US-CA")
    record(database, "late@example.com", "profiling", jurisdiction="US-CA")
    now = request_clock.now
    with database.write() as session:
        for email, days in (
            ("eu@example.com", 40),
            ("ca@example.com", 40),
            ("late@example.com", 1),
        ):
            sid = session.scalar(
                select(SubjectProfile.subject_id).where(SubjectProfile.email == email)
            )
            assert sid is not None
            # 40 days ago: past the GDPR month; within the CCPA 45 days, due in 5 (soon).
            record_request(
                session, sid, RequestKind.ACCESS, RequestChannel.STAFF,
                received_at=now - timedelta(days=days),
            )  # fmt: skip
    client = as_role("compliance")
    page = client.get("/console/requests").text
    assert page.count('<strong class="overdue">OVERDUE') == 1
    assert page.count('<strong class="due-soon">DUE SOON') == 1
    assert "1 request past the legal deadline" in page
    assert "1 request due within 7 days" in page
    assert "⚠ 1 overdue" in client.get("/console/").text
    # Time moves on: the CCPA one falls due too, the third becomes due soon... later.
    request_clock.advance(days=6)
    page = client.get("/console/requests").text
    assert page.count('<strong class="overdue">OVERDUE') == 2


def test_request_about_someone_we_hold_nothing_on(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    answer = client.post(
        "/console/requests",
        data={"csrf": csrf_of(client), "email": "Stranger@Example.com", "kind": "erasure"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/requests?done=nothing_held"
    row = _row(database)
    assert (row.subject_id, row.status, row.kind) == (None, "nothing_held", "erasure")
    assert row.email_sha256 == email_digest("stranger@example.com")
    assert row.handled_by == "compliance@staff.example"
    page = client.get("/console/requests?done=nothing_held").text
    assert "we hold no personal data on this" in page
    assert "nobody we hold data on" in page
    assert "stranger@example.com" not in page.lower()
    # Closed: nothing to carry out.
    assert _post(client, "/console/requests/1/erase", confirm="yes").status_code == 409


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": "not-an-email", "kind": "access"}, "email"),
        ({"email": LEAD_EMAIL, "kind": "delete-everything"}, "kind"),
        ({"email": LEAD_EMAIL, "kind": ""}, "kind"),
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
    assert answer.status_code == 422
    assert "The request was not entered" in answer.text
    assert f"<li>{field}:" in answer.text
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(DataSubjectRequest)) == 0


@pytest.mark.parametrize("path", ["/console/requests/99", "/console/requests/x1"])
def test_unknown_request(as_role: Callable[[str], TestClient], path: str) -> None:
    assert as_role("compliance").get(path).status_code == 404


def test_refusal_needs_a_reason(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    _enter(client, "erasure")
    assert _post(client, "/console/requests/1/refuse").status_code == 422
    ok = _post(client, "/console/requests/1/refuse", note="<b>identity not shown</b>")
    assert ok.status_code == 303
    page = client.get("/console/requests").text
    assert "refused" in page
    assert "&lt;b&gt;identity not shown&lt;/b&gt;" in page
    assert _post(client, "/console/requests/99/refuse", note="x").status_code == 404


def test_marketers_cannot_handle_requests(as_role: Callable[[str], TestClient]) -> None:
    assert as_role("marketer").get("/console/requests").status_code == 403


def test_cli_erasure_is_in_the_queue(
    cli_env: Settings, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    from zeroparty.cli import main

    record(database, LEAD_EMAIL, "profiling", jurisdiction="US-CA")
    assert main(["erase", LEAD_EMAIL]) == 0
    capsys.readouterr()
    row = _row(database)
    assert (row.kind, row.status, row.channel) == ("erasure", "completed", "cli")
    assert row.handled_by == "zeroparty erase (CLI)"
    assert row.regime == "ccpa"


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


def test_request_pages_show_hostile_text_inert(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    script = '<script>alert("x")</script>'
    _enter(client, "rectification", note=script)
    assert _post(client, "/console/requests/1/extend", reason=script).status_code == 303
    for path in ("/console/requests", "/console/requests/1"):
        page = client.get(path).text
        assert script not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
