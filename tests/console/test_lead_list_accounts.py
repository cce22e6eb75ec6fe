"""The accounts page a page at a time (issue 18: one 17,725 px page at 20k leads), with
the count of all; a stage or page that cannot be used is named (422) and the first page
shown, never a 500."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentRecord
from consent_ledger.subjects import find_subject_id
from scoring.models import ScoredLead
from tests.console.conftest import XSS
from tests.factories import notice_hash
from zeroparty.db import Database
from zeroparty.wiring import build_ledger

ROW_RE = re.compile(r'<td><a href="/console/accounts/([a-z0-9.-]+)">')
NEXT_RE = re.compile(r'<a rel="next" href="(/console/accounts\?[^"]+)">')


@pytest.fixture
def companies(database: Database) -> list[str]:
    """120 accounts, one scored lead each with live consent for profiling."""
    domains = [f"co-{n:03d}.example" for n in range(120)]
    ledger = build_ledger(database)
    notice = notice_hash(database, "profiling")
    with database.write() as session:
        for domain in domains:
            ledger.record_by_email(
                session,
                ConsentRecord(
                    email=f"buyer@{domain}",
                    purpose="profiling",
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.FORM,
                    method=ConsentMethod.CHECKBOX,
                    notice_sha256=notice,
                ),
            )
    with database.write() as session:
        for n, domain in enumerate(domains):
            subject_id = find_subject_id(session, f"buyer@{domain}")
            assert subject_id is not None
            stage = "SQL" if n % 40 == 0 else "Lead"
            session.add(ScoredLead(subject_id=subject_id, stage=stage, score=float(n)))
    return domains


def test_accounts_page_by_page(as_role: Callable[[str], TestClient], companies: list[str]) -> None:
    client = as_role("marketer")
    page = client.get("/console/accounts")
    assert page.status_code == 200
    assert "120 accounts; showing 1\N{EN DASH}50." in page.text
    seen = ROW_RE.findall(page.text)
    assert seen == companies[:50]
    for expected in ("51\N{EN DASH}100", "101\N{EN DASH}120"):
        found = NEXT_RE.search(page.text)
        assert found
        page = client.get(found.group(1).replace("&amp;", "&"))
        assert page.status_code == 200
        assert f"showing {expected}." in page.text
        seen += ROW_RE.findall(page.text)
        assert "« First page" in page.text
    assert seen == companies  # every account once, in order
    assert NEXT_RE.search(page.text) is None  # the last page
    at_sql = client.get("/console/accounts", params={"stage": "sql"}).text
    assert "3 accounts at stage SQL." in at_sql
    assert ROW_RE.findall(at_sql) == [companies[0], companies[40], companies[80]]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"stage": XSS}, "stage: one of Lead, MQL, SQL"),
        ({"after": XSS}, "after: a domain name to start after"),
        ({"after": "zzz.example"}, "after: no accounts after “zzz.example”"),
        ({"start": "-1"}, "start: a number of accounts from 0"),
        ({"start": "9" * 40}, "start: a number of accounts from 0"),
    ],
)
def test_unusable_paging_is_named_and_the_first_page_shown(
    as_role: Callable[[str], TestClient],
    companies: list[str],
    params: dict[str, str],
    named: str,
) -> None:
    page = as_role("admin").get("/console/accounts", params=params)
    assert page.status_code == 422
    assert named in re.sub(r"<[^>]+>", "", page.text)  # named, in words
    assert "Nothing was changed" in page.text
    assert "<script>" not in page.text
    assert ROW_RE.findall(page.text) == companies[:50]
