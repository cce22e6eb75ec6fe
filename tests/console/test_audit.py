"""Auditing a lead: search, timeline, point in time, the filtered ledger, exports,
proofs; stored attacks shown inert; bad input refused clearly; the staff log."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction
from console.models import StaffAuditEntry
from tests.console.conftest import FORMULA, HOSTILE_EMAIL, LEAD_EMAIL, XSS
from tests.factories import record
from zeroparty.db import Database


def test_search_by_email_prefix_and_id(as_role: Callable[[str], TestClient], lead: str) -> None:
    client = as_role("compliance")
    found = client.get("/console/leads", params={"q": "ANN@"})
    assert LEAD_EMAIL in found.text
    assert f"/console/leads/{lead}" in found.text
    assert lead in client.get("/console/leads", params={"q": lead}).text
    nothing = client.get("/console/leads", params={"q": "zz%_"})
    assert "No lead matches" in nothing.text


def test_timeline_shows_everything(as_role: Callable[[str], TestClient], lead: str) -> None:
    page = as_role("compliance").get(f"/console/leads/{lead}").text
    assert page.count('class="action action-') == 3
    assert "withdrawn" in page
    assert "double-opt-in" in page
    assert "sha256 " in page
    assert "Notice shown" in page
    # The exact notice text of the grant, rendered.
    assert "(text not found)" not in page
    # State now: newsletter yes, profiling no.
    assert page.count("✔ yes") == 1


def test_timeline_says_how_grants_were_confirmed(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    page = client.get(f"/console/leads/{lead}").text
    assert "confirmed before it was recorded (double opt-in)" in page
    assert "not required" in page
    record(database, "dee@example.com", "newsletter")
    subject = client.get("/console/leads", params={"q": "dee@"}).text
    subject_id = subject.split("/console/leads/")[1][:32]
    assert "required, still pending" in client.get(f"/console/leads/{subject_id}").text
    confirmation = record(database, "dee@example.com", "newsletter", ConsentAction.CONFIRMED)
    page = client.get(f"/console/leads/{subject_id}").text
    assert f"confirmed by entry #{confirmation.seq} on" in page


def test_point_in_time(as_role: Callable[[str], TestClient], database: Database) -> None:
    past = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    record(database, "bob@example.com", "profiling", occurred_at=past)
    record(
        database,
        "bob@example.com",
        "profiling",
        ConsentAction.WITHDRAWN,
        occurred_at=past + timedelta(days=30),
    )
    client = as_role("compliance")
    subject = client.get("/console/leads", params={"q": "bob@"}).text.split("/console/leads/")[1][
        :32
    ]
    during = client.get(f"/console/leads/{subject}", params={"at": "2026-01-20T00:00"}).text
    after = client.get(f"/console/leads/{subject}", params={"at": "2026-03-01T00:00"}).text
    assert "State per purpose at 2026-01-20 00:00:00 UTC" in during
    assert during.count("✔ yes") == 1  # profiling then
    assert after.count("✔ yes") == 0


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/console/leads/{lead}?at=yesterday", "at"),
        ("/console/leads/{lead}?at=99999-01-01", "at"),
        ("/console/ledger?purpose=nope", "purpose"),
        ("/console/ledger?action=deleted", "action"),
        ("/console/ledger?source=<b>", "source"),
        ("/console/ledger?form=../x", "form"),
        ("/console/ledger?from=2026-13-01", "from"),
        ("/console/ledger?from=2026-02-01&to=2026-01-01", "to"),
        ("/console/ledger?before=-1", "before"),
        ("/console/ledger/export?format=xlsx", "format"),
        ("/console/reports?weeks=0", "weeks"),
        ("/console/versions/notice/diff?key=newsletter/en&a=1&b=x", "b"),
    ],
)
def test_bad_input_gets_a_clear_page(
    as_role: Callable[[str], TestClient], lead: str, path: str, field: str
) -> None:
    answer = as_role("admin").get(path.format(lead=lead))
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")
    assert f"<strong>{field}</strong>" in answer.text
    assert "Nothing was changed" in answer.text


@pytest.mark.parametrize(
    "path",
    [
        "/console/leads/" + "0" * 32,
        "/console/leads/{lead}/proof/nope",
        "/console/versions/notice/diff?key=nope&a=1&b=2",
        "/console/versions/notice/diff?key=newsletter/en&a=1&b=99",
    ],
)
def test_unknown_things_are_404(as_role: Callable[[str], TestClient], lead: str, path: str) -> None:
    assert as_role("admin").get(path.format(lead=lead)).status_code == 404


def test_ledger_filter_and_pages(
    as_role: Callable[[str], TestClient], lead: str, hostile_lead: str
) -> None:
    client = as_role("compliance")
    withdrawn = client.get("/console/ledger", params={"action": "withdrawn"}).text
    assert withdrawn.count("<tr>") == 2  # header + one row
    api = client.get("/console/ledger", params={"source": "api"}).text
    assert hostile_lead[:8] in api
    assert lead[:8] not in api
    none = client.get("/console/ledger", params={"from": "2000-01-01", "to": "2000-01-02"}).text
    assert "No entries match this filter" in none


def _export(client: TestClient, **params: str) -> str:
    with client.stream("GET", "/console/ledger/export", params=params) as answer:
        assert answer.status_code == 200
        assert "attachment" in answer.headers["content-disposition"]
        return "".join(answer.iter_text())


def test_csv_export_is_filtered_and_safe(
    as_role: Callable[[str], TestClient], lead: str, hostile_lead: str
) -> None:
    client = as_role("compliance")
    rows = list(csv.DictReader(io.StringIO(_export(client, format="csv"))))
    assert len(rows) == 4
    hostile = next(r for r in rows if r["subject_id"] == hostile_lead)
    assert hostile["source_ref"] == "'" + FORMULA  # shown as text, never run
    assert all(not value.startswith(("=", "+", "-", "@")) for r in rows for value in r.values())
    only = list(csv.DictReader(io.StringIO(_export(client, format="csv", action="withdrawn"))))
    assert [r["action"] for r in only] == ["withdrawn"]
    assert only[0]["subject_id"] == lead


def test_jsonl_export(as_role: Callable[[str], TestClient], lead: str) -> None:
    body = _export(as_role("admin"), format="jsonl", purpose="newsletter")
    entries = [json.loads(line) for line in body.splitlines()]
    assert [e["purpose"] for e in entries] == ["newsletter"]
    assert entries[0]["evidence"]["user_agent"] == "pytest"


def test_stored_attacks_are_inert(as_role: Callable[[str], TestClient], hostile_lead: str) -> None:
    client = as_role("admin")
    pages = [
        client.get("/console/leads", params={"q": "mallory"}).text,
        client.get(f"/console/leads/{hostile_lead}").text,
        client.get("/console/ledger").text,
        client.get(f"/console/leads/{hostile_lead}/proof/profiling").text,
        client.get("/console/audit").text,
    ]
    for page in pages:
        assert "<script>alert" not in page
        assert "<img src=x" not in page
    lead_page = pages[1]
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in lead_page  # the name
    assert lead_page.count("&lt;img src=x onerror=alert(1)&gt;") >= 3  # name, UA, answer


def test_proof_page_verifies(as_role: Callable[[str], TestClient], lead: str) -> None:
    client = as_role("compliance")
    page = client.get(f"/console/leads/{lead}/proof/newsletter").text
    assert "✔ Verified" in page
    assert "Signed checkpoint" in page
    receipt = client.get(f"/console/leads/{lead}/receipt/newsletter")
    body = receipt.json()
    assert body["piiPrincipalId"] == lead
    assert body["services"][0]["purposes"][0]["purposeKey"] == "newsletter"


def test_staff_log_names_leads_not_searches(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    client.get("/console/leads", params={"q": LEAD_EMAIL})
    client.get(f"/console/leads/{lead}")
    _export(client, format="csv")
    with database.read() as session:
        rows = session.execute(
            select(StaffAuditEntry.action, StaffAuditEntry.subject_id, StaffAuditEntry.detail)
        ).all()
    actions = [r.action for r in rows]
    assert {"lead.search", "lead.view", "ledger.export"} <= set(actions)
    assert all(LEAD_EMAIL not in (r.detail or "") for r in rows)
    assert any(r.action == "lead.view" and r.subject_id == lead for r in rows)
    log = as_role("admin").get("/console/audit").text
    assert "compliance@staff.example" in log
    assert "ledger.export" in log
    assert HOSTILE_EMAIL not in log
    assert XSS not in log


def test_exports_stream_in_chunks(
    as_role: Callable[[str], TestClient],
    lead: str,
    hostile_lead: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from console import exports

    monkeypatch.setattr(exports, "CHUNK_ROWS", 2)
    client = as_role("compliance")
    rows = list(csv.DictReader(io.StringIO(_export(client, format="csv"))))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4]
    lines = _export(client, format="jsonl").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4]
