"""Minimisation after intake (issue 16): when the last purpose a stored answer served is
withdrawn or expires, the answer, and the quiz results derived from it, are deleted in
the same transaction; answers the request itself needs, or still serving a permitted
purpose, stay."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from capture.models import Answer, Submission
from capture.tokens import CaptureTokens
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentChange
from tests.capture.conftest import token_in
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.site import load_site
from zeroparty.wiring import build_ledger

QUINN = "quinn@example.com"


@pytest.fixture
def render(app_client: TestClient, settings: Settings) -> Callable[[str], str]:
    tokens = CaptureTokens(settings.secret_keys)

    def get(slug: str) -> str:
        token = tokens.read_render(token_in(app_client.get(f"/f/{slug}").text))
        return tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))

    return get


def answers(database: Database) -> list[tuple[str, str]]:
    with database.read() as session:
        rows = session.execute(select(Answer.field, Answer.value).order_by(Answer.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def quiz_result(database: Database) -> tuple[object, object, object]:
    with database.read() as session:
        s = session.execute(select(Submission).where(Submission.score.is_not(None))).scalars()
        return next(((x.outcome, x.tags, x.score) for x in s), (None, None, None))


def take_quiz(app_client: TestClient, render: Callable[[str], str]) -> None:
    response = app_client.post(
        "/f/analytics-fit",
        data={"_rt": render("analytics-fit"), "_action": "submit", "goal": "reporting",
              "tools": ["spreadsheets", "bi"], "email": QUINN, "consent": "profiling"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303, response.text


def test_a_withdrawal_deletes_the_answers_and_quiz_result_it_leaves_unserved(
    api: TestClient, render: Callable[[str], str], database: Database
) -> None:
    take_quiz(api, render)
    assert ("goal", "reporting") in answers(database)
    assert quiz_result(database)[2] == 20
    response = api.post(
        "/api/consent",
        json={"email": QUINN, "purpose": "profiling", "action": "withdrawn", "source": "crm"},
    )
    assert response.status_code == 201, response.text
    # Gone as the withdrawal is answered (its own transaction: no job, no delay). The
    # email is needed for the request itself; the quiz answers served profiling only.
    assert answers(database) == [("email", QUINN)]
    with database.read() as session:
        (submission,) = session.execute(select(Submission)).scalars()
    assert (submission.outcome, submission.tags, submission.score) == (None, None, None)


def test_a_grant_or_a_no_for_another_purpose_keeps_the_answers(
    api: TestClient, render: Callable[[str], str], database: Database
) -> None:
    take_quiz(api, render)
    before = answers(database)
    response = api.post(
        "/api/consent",
        json={"email": QUINN, "purpose": "newsletter", "action": "withdrawn", "source": "crm"},
    )
    assert response.status_code == 201
    assert answers(database) == before
    assert quiz_result(database)[2] == 20


def test_an_expiry_deletes_the_answers_too(
    app_client: TestClient, render: Callable[[str], str], database: Database
) -> None:
    """The entry the lifecycle job appends when a grant's time ran out."""
    take_quiz(app_client, render)
    assert len(answers(database)) > 1
    ledger = build_ledger(database)
    with database.write() as session:
        subject_id = ledger.find_lead(session, QUINN)
        assert subject_id is not None
        ledger.record(
            session,
            [
                ConsentChange(
                    subject_id=subject_id,
                    purpose="profiling",
                    action=ConsentAction.EXPIRED,
                    source=ConsentSource.SYSTEM,
                    method=ConsentMethod.SYSTEM,
                    source_ref="expiry:profiling:1d",
                )
            ],
        )
    assert answers(database) == [("email", QUINN)]
    assert quiz_result(database) == (None, None, None)


def test_site_load_says_why_each_needed_field_qualifies(database: Database, tmp_path: Path) -> None:
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    site = tmp_path / "site.toml"
    site.write_text(demo.replace("How can we help?", "How may we help?"), encoding="utf-8")
    changes = load_site(database, site).changes
    reasons = [c.strip() for c in changes if "kept without consent" in c]
    assert reasons == [
        "form contact: field email kept without consent (needed = true): the address the "
        "request is answered at and any confirmation is sent to",
        "form contact: field name kept without consent (needed = true): given by the "
        "visitor so the request can be answered as asked (optional)",
        "form contact: field message kept without consent (needed = true): required to "
        "send the request, which cannot be answered without it",
    ]


def test_a_hidden_field_cannot_be_needed(database: Database, tmp_path: Path) -> None:
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    site = tmp_path / "site.toml"
    hidden = 'name = "utm_source"\ntype = "hidden"\n'
    assert hidden in demo
    site.write_text(demo.replace(hidden, hidden + "needed = true\n"), encoding="utf-8")
    with pytest.raises(SiteConfigError) as refused:
        load_site(database, site)
    assert "forms.contact.fields[" in str(refused.value)
    assert "hidden field is not part of the visitor's request" in str(refused.value)
