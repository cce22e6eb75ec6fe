"""Opt-in rates count grants and the boxes shown for the same submissions, erased or not
(issue 18: erasure deleted the submissions behind the denominator, the ledger kept the
grants, and rates read 133% and 150%)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from sqlalchemy import func, select, text
from starlette.testclient import TestClient

from capture.models import ErasedSubmissions, Submission
from capture.tokens import CaptureTokens
from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkPurpose
from tests.preference_center.conftest import issue
from zeroparty.db import Database
from zeroparty.settings import Settings

TOKEN_RE = re.compile(r'name="_rt" value="([^"]+)"')


def _submit(client: TestClient, settings: Settings, email: str, consent: list[str]) -> None:
    tokens = CaptureTokens(settings.secret_keys)
    match = TOKEN_RE.search(client.get("/f/contact").text)
    assert match is not None
    token = tokens.read_render(match.group(1))
    aged = tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))
    response = client.post(
        "/f/contact",
        data={"email": email, "message": "hi", "consent": consent, "_rt": aged},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def _erase(client: TestClient, settings: Settings, database: Database, email: str) -> None:
    with database.read() as session:
        subject_id = find_subject_id(session, email)
    assert subject_id is not None
    token = issue(settings, database, subject_id, LinkPurpose.ERASE)
    assert client.post(f"/p/erase/{token}").status_code == 200


def _rows(page: str, name: str) -> list[tuple[str, str, str]]:
    """(boxes shown, ticked, rate) of the rows naming ``name`` in the opt-in tables."""
    pattern = (
        rf"<td>\d{{4}}-\d\d-\d\d</td><td>{name}</td><td>(\d+)</td><td>(\d+)</td><td>([^<]+)</td>"
    )
    return re.findall(pattern, page)


def test_rates_stay_the_same_after_erasure_and_never_exceed_100(
    app_client: TestClient,
    as_role: Callable[[str], TestClient],
    settings: Settings,
    database: Database,
) -> None:
    # The contact form shows three boxes: newsletter, product_updates, profiling.
    _submit(app_client, settings, "a@example.com", ["newsletter", "profiling"])
    _submit(app_client, settings, "b@example.com", ["newsletter"])
    _submit(app_client, settings, "c@example.com", ["profiling"])
    _submit(app_client, settings, "d@example.com", [])
    before = as_role("compliance").get("/console/reports").text
    assert _rows(before, "newsletter") == [("4", "2", "50%")]
    assert _rows(before, "profiling") == [("4", "2", "50%")]
    assert _rows(before, "contact") == [("12", "4", "33.3%")]

    for email in ("a@example.com", "b@example.com", "c@example.com"):
        _erase(app_client, settings, database, email)
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Submission)) == 1
        # What stays of the erased submissions is a number per form version and week.
        erased = session.execute(select(ErasedSubmissions)).scalars().all()
        assert [e.submissions for e in erased] == [3]
        columns = session.execute(text("SELECT * FROM capture_erased_submissions")).keys()
        assert sorted(columns) == ["definition_id", "submissions", "week"]

    after = as_role("compliance").get("/console/reports").text
    # Grants stay in the ledger; the boxes shown with them stay counted: same figures.
    assert _rows(after, "newsletter") == [("4", "2", "50%")]
    assert _rows(after, "profiling") == [("4", "2", "50%")]
    assert _rows(after, "contact") == [("12", "4", "33.3%")]


def test_a_second_erasure_in_the_same_week_adds_to_the_count(
    app_client: TestClient,
    as_role: Callable[[str], TestClient],
    settings: Settings,
    database: Database,
) -> None:
    _submit(app_client, settings, "e@example.com", ["newsletter"])
    _submit(app_client, settings, "f@example.com", ["newsletter"])
    _erase(app_client, settings, database, "e@example.com")
    _erase(app_client, settings, database, "f@example.com")
    with database.read() as session:
        assert session.execute(select(ErasedSubmissions.submissions)).scalars().all() == [2]
    page = as_role("marketer").get("/console/reports").text
    assert _rows(page, "newsletter") == [("2", "2", "100%")]
