"""BANT and won/lost recorded from a lead's console page (issue #9): who may, the same
protections as every console POST, consent required, the staff log, values escaped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.subjects import find_subject_id
from console.models import StaffAuditEntry
from scoring.models import LeadOutcome, Qualification
from tests.console.conftest import XSS, csrf_of
from tests.scoring.conftest import submit, withdraw
from zeroparty.db import Database

__all__ = ["submit"]  # the fixture, for this module

EMAIL = "ann@acme-corp.com"


@pytest.fixture
def scored(database: Database, submit: Callable[..., Any]) -> str:
    submit(EMAIL, company_size="51-200", job_title="Director of Sales")
    with database.read() as session:
        subject_id = find_subject_id(session, EMAIL)
    assert subject_id is not None
    return subject_id


def _rows(database: Database, model: Any) -> list[Any]:
    with database.read() as session:
        return list(session.scalars(select(model)))


def _post(client: TestClient, path: str, **data: str) -> Any:
    return client.post(path, data={"csrf": csrf_of(client), **data}, follow_redirects=False)


@pytest.mark.parametrize("role", ["admin", "marketer"])
def test_record_bant_and_outcome(
    as_role: Callable[[str], TestClient],
    database: Database,
    staff: dict[str, str],
    scored: str,
    role: str,
) -> None:
    client = as_role(role)
    page = client.get(f"/console/leads/{scored}").text
    assert "Record qualification" in page
    assert "none recorded" in page
    answer = _post(
        client,
        f"/console/leads/{scored}/bant",
        budget="50,000",
        authority="decision_maker",
        need=XSS,
        timeline="",
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/console/leads/{scored}?done=bant"
    rows = {r.field: r for r in _rows(database, Qualification)}
    assert set(rows) == {"budget", "authority", "need"}  # the empty timeline is left out
    assert rows["budget"].value == "50000"
    assert rows["authority"].actor == f"staff:{staff[role]}"
    page = client.get(f"/console/leads/{scored}?done=bant").text
    assert "Qualification recorded" in page
    assert "decision maker" in page
    assert XSS not in page
    assert "&lt;script&gt;" in page

    won = _post(client, f"/console/leads/{scored}/outcome", outcome="won")
    assert won.headers["location"] == f"/console/leads/{scored}?done=outcome"
    again = _post(client, f"/console/leads/{scored}/outcome", outcome="won")
    assert again.headers["location"] == f"/console/leads/{scored}?done=outcome-same"
    assert _post(client, f"/console/leads/{scored}/outcome", outcome="lost").status_code == 409
    [outcome] = _rows(database, LeadOutcome)
    assert (outcome.outcome, outcome.recorded_by) == ("won", f"staff:{staff[role]}")
    page = client.get(f"/console/leads/{scored}").text
    assert f"won (recorded by staff:{staff[role]})" in page
    assert "Record the outcome" not in page
    logged = [
        (e.action, e.subject_id)
        for e in _rows(database, StaffAuditEntry)
        if e.action in ("lead.qualify", "lead.outcome")
    ]
    assert logged == [("lead.qualify", scored), ("lead.outcome", scored), ("lead.outcome", scored)]


def test_compliance_reads_but_does_not_record(
    as_role: Callable[[str], TestClient], database: Database, scored: str
) -> None:
    client = as_role("compliance")
    page = client.get(f"/console/leads/{scored}")
    assert page.status_code == 200
    assert "<h2>Sales</h2>" in page.text
    assert "Record qualification" not in page.text
    assert _post(client, f"/console/leads/{scored}/bant", budget="10").status_code == 403
    assert _post(client, f"/console/leads/{scored}/outcome", outcome="won").status_code == 403
    assert _rows(database, Qualification) == []
    assert _rows(database, LeadOutcome) == []


def test_refusals(as_role: Callable[[str], TestClient], database: Database, scored: str) -> None:
    client = as_role("admin")
    csrf = csrf_of(client)
    bant, outcome = f"/console/leads/{scored}/bant", f"/console/leads/{scored}/outcome"
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        for path in (bant, outcome):
            sent = client.post(
                path, data={"csrf": csrf, "budget": "1", "outcome": "won"}, headers=headers
            )
            assert sent.status_code == 403
    assert client.post(bant, data={"csrf": "forged", "budget": "1"}).status_code == 403
    assert _post(client, bant).status_code == 422  # nothing given
    assert _post(client, bant, budget="lots").status_code == 422
    assert _post(client, bant, authority="king").status_code == 422
    assert _post(client, outcome, outcome="maybe").status_code == 422
    withdraw(database, EMAIL)  # no live consent: nothing is recorded
    assert _post(client, bant, budget="10").status_code == 409
    assert _post(client, outcome, outcome="won").status_code == 409
    assert _rows(database, Qualification) == []
    assert _rows(database, LeadOutcome) == []
