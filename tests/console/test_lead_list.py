"""The lead list (issue 18): every lead, newest first, with the true count and numbered
pages (a search matching thousands said "50 leads found"); filters by stage, a purpose
permitted now, form, source and first-seen date; a filter or page that cannot be used
is named (422) and the first page of the rest is shown, never a 500."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentRecord
from consent_ledger.subjects import find_subject_id
from scoring.models import ScoredLead
from tests.console.conftest import XSS
from tests.factories import notice_hash
from zeroparty.db import Database, utcnow
from zeroparty.wiring import build_ledger

ROW_RE = re.compile(r'<td><a href="/console/leads/([0-9a-f]{32})">')


def _leads(
    database: Database,
    emails: list[str],
    purpose: str = "newsletter",
    *,
    source: ConsentSource = ConsentSource.FORM,
    source_ref: str | None = "contact@v1",
    action: ConsentAction = ConsentAction.GRANTED,
) -> None:
    """One entry for each address, in one transaction."""
    ledger = build_ledger(database)
    notice = notice_hash(database, purpose) if action is ConsentAction.GRANTED else None
    with database.write() as session:
        for email in emails:
            ledger.record_by_email(
                session,
                ConsentRecord(
                    email=email,
                    purpose=purpose,
                    action=action,
                    source=source,
                    method=ConsentMethod.DOUBLE_OPT_IN,  # confirmed: newsletter is live
                    notice_sha256=notice,
                    source_ref=source_ref,
                ),
            )


def _subject(database: Database, email: str) -> str:
    with database.read() as session:
        found = find_subject_id(session, email)
    assert found is not None
    return found


@pytest.fixture
def many(database: Database) -> list[str]:
    """120 leads with newsletter from the contact form; the first 60 named lead-0…"""
    emails = [f"lead-{n:03d}@example.com" for n in range(60)]
    emails += [f"other-{n:03d}@example.org" for n in range(60)]
    _leads(database, emails)
    return emails


def test_true_count_and_pages(as_role: Callable[[str], TestClient], many: list[str]) -> None:
    client = as_role("marketer")
    first = client.get("/console/leads")
    assert first.status_code == 200
    assert "120 leads found; showing 1\N{EN DASH}50, page 1 of 3." in first.text
    assert len(ROW_RE.findall(first.text)) == 50
    assert 'href="/console/leads?page=2" rel="next"' in first.text
    last = client.get("/console/leads", params={"page": "3"})
    assert "showing 101\N{EN DASH}120, page 3 of 3" in last.text
    assert len(ROW_RE.findall(last.text)) == 20
    seen = {
        sid
        for page in ("1", "2", "3")
        for sid in ROW_RE.findall(client.get("/console/leads", params={"page": page}).text)
    }
    assert len(seen) == 120  # every lead once, none twice


def test_a_search_says_how_many_it_matched(
    as_role: Callable[[str], TestClient], many: list[str]
) -> None:
    """Before: a prefix matching more than 50 leads said "50 leads found"."""
    page = as_role("compliance").get("/console/leads", params={"q": "LEAD-"})
    assert "60 leads found; showing 1\N{EN DASH}50, page 1 of 2." in page.text
    nxt = as_role("compliance").get("/console/leads", params={"q": "lead-", "page": "2"})
    assert len(ROW_RE.findall(nxt.text)) == 10
    assert "q=lead-&amp;page=1" in nxt.text  # the filter stays in the links


def test_filters(as_role: Callable[[str], TestClient], database: Database) -> None:
    _leads(database, ["ann@example.com", "bob@example.com"])
    _leads(database, ["cy@example.com"], "profiling", source=ConsentSource.API, source_ref=None)
    _leads(database, ["bob@example.com"], action=ConsentAction.WITHDRAWN)
    _leads(database, ["dee@example.com"], source=ConsentSource.QUIZ, source_ref="fit-quiz@v2")
    with database.write() as session:
        session.add(
            ScoredLead(subject_id=_subject(database, "cy@example.com"), stage="SQL", score=80.0)
        )
    client = as_role("marketer")

    def shown(**params: str) -> set[str]:
        page = client.get("/console/leads", params=params)
        assert page.status_code == 200, page.text
        return set(re.findall(r">([a-z]+@example\.com)</a>", page.text))

    everyone = {"ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"}
    assert shown() == everyone
    assert shown(purpose="newsletter") == {"ann@example.com", "dee@example.com"}  # bob withdrew
    assert shown(purpose="profiling") == {"cy@example.com"}
    assert shown(source="api") == {"cy@example.com"}
    assert shown(form="contact") == {"ann@example.com", "bob@example.com"}
    assert shown(form="fit-quiz") == {"dee@example.com"}
    assert shown(stage="SQL") == {"cy@example.com"}
    assert shown(stage="lead") == everyone - {"cy@example.com"}
    assert shown(stage="MQL") == set()
    today = utcnow().date()
    assert shown(**{"from": today.isoformat(), "to": today.isoformat()}) == everyone
    assert shown(**{"from": (today + timedelta(days=1)).isoformat()}) == set()
    assert shown(**{"to": (today - timedelta(days=1)).isoformat()}) == set()
    assert shown(purpose="newsletter", form="contact") == {"ann@example.com"}
    page = client.get("/console/leads", params={"stage": "SQL"}).text
    assert '<td>SQL</td><td class="num">80</td>' in page
    assert (
        "No lead matches these filters."
        in client.get("/console/leads", params={"stage": "MQL"}).text
    )


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"stage": XSS}, "stage: one of Lead, MQL, SQL"),
        ({"purpose": "nope"}, "purpose: one of"),
        ({"source": "carrier-pigeon"}, "source: one of"),
        ({"form": "Not A Slug!"}, "form: a form or quiz slug"),
        ({"from": "yesterday"}, "from: “yesterday” is not a date"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "to: must not be before from"),
        ({"page": "0"}, "page: a page number from 1"),
        ({"page": "-3"}, "page: a page number from 1"),
        ({"page": "abc"}, "page: a page number from 1"),
        ({"page": "9" * 30}, "page: a page number from 1"),
        ({"page": "7"}, "page: there are only 3 pages"),
        ({"q": "x" * 321}, "q: at most 320 characters"),
    ],
)
def test_unusable_filters_are_named_and_the_first_page_shown(
    as_role: Callable[[str], TestClient],
    many: list[str],
    params: dict[str, str],
    named: str,
) -> None:
    page = as_role("admin").get("/console/leads", params=params)
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert named in re.sub(r"<[^>]+>", "", page.text)  # named, in words
    assert "Nothing was changed" in page.text
    assert "<script>" not in page.text
    assert "page 1 of 3" in page.text or "60 leads found" in page.text or "120 leads" in page.text
    assert len(ROW_RE.findall(page.text)) == 50


def test_no_leads_yet(as_role: Callable[[str], TestClient]) -> None:
    page = as_role("admin").get("/console/leads")
    assert page.status_code == 200
    assert "No leads yet" in page.text
    assert as_role("admin").get("/console/leads", params={"page": "2"}).status_code == 422


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/console/ledger", {"purpose": XSS}, "purpose: unknown purpose"),
        ("/console/ledger", {"before": "abc"}, "before: an entry number"),
        ("/console/ledger", {"from": "2026-02-30"}, "from: a date like"),
        ("/console/audit", {"before": "-5"}, "before: an entry number"),
    ],
)
def test_the_ledger_and_staff_log_name_a_bad_cursor_and_show_the_newest(
    as_role: Callable[[str], TestClient],
    lead: str,
    path: str,
    params: dict[str, str],
    named: str,
) -> None:
    client = as_role("admin")
    client.get(f"/console/leads/{lead}")  # something in the staff log
    page = client.get(path, params=params)
    assert page.status_code == 422
    assert named in re.sub(r"<[^>]+>", "", page.text)  # named, in words
    assert "Nothing was changed" in page.text
    assert "<script>" not in page.text
    assert "showing the newest" in page.text
    assert "<tbody>" in page.text  # the list is there


@pytest.fixture
def statements(database: Database) -> Iterator[list[str]]:
    sent: list[str] = []

    def count(_c: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(database.engine, "before_cursor_execute", count)


def test_a_page_costs_the_same_statements_however_many_leads(
    as_role: Callable[[str], TestClient], database: Database, statements: list[str]
) -> None:
    client = as_role("marketer")
    params = {"purpose": "newsletter", "stage": "Lead", "form": "contact"}
    counts = []
    for batch in range(2):
        _leads(database, [f"batch{batch}-{n}@example.com" for n in range(60)])
        statements.clear()
        assert client.get("/console/leads", params={**params, "page": "2"}).status_code == 200
        counts.append(len(statements))
    assert counts[0] == counts[1]
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # Session 3, then one read: the lifecycle in force (its stage names), purposes,
    # forms, count, page, permitted purposes, stages; the staff log is written in its
    # own transaction.
    assert len(reads) == 10, "\n\n".join(r[:100] for r in reads)
