"""Helpers for the preference center's tests: a lead, their links, an open session."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentMethod
from consent_ledger.models import ConsentEvent, ConsentEvidence
from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens, current_version
from tests.factories import record
from zeroparty.db import Database
from zeroparty.mail import OutboxMail
from zeroparty.settings import Settings

EMAIL = "ann@example.com"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def lead(database: Database) -> str:
    """A lead with a live newsletter and profiling consent; returns the subject id."""
    record(database, EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN)
    record(database, EMAIL, "profiling")
    with database.read() as session:
        subject_id = find_subject_id(session, EMAIL)
    assert subject_id is not None
    return subject_id


def issue(
    settings: Settings,
    database: Database,
    subject_id: str,
    purpose: LinkPurpose = LinkPurpose.MANAGE,
    purposes: tuple[str, ...] = (),
) -> str:
    with database.read() as session:
        version = current_version(session, subject_id)
    return LinkTokens(settings).issue(purpose, LinkClaim(subject_id, version, purposes))


def open_session(client: TestClient, token: str) -> str:
    """Open a manage link like a browser would; returns the page's CSRF token."""
    landing = client.get(f"/p/{token}", headers={"Sec-Fetch-Site": "none"}, follow_redirects=False)
    assert landing.status_code == 303, landing.text
    page = client.get("/p/")
    assert page.status_code == 200, page.text
    match = CSRF_RE.search(page.text)
    assert match is not None
    return match.group(1)


def ledger_size(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one())


def counts(database: Database) -> tuple[int, int, int]:
    """Entries, evidence bodies and queued mails: what a refused request must not change."""
    with database.read() as session:
        return (
            int(session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one()),
            int(session.execute(select(func.count()).select_from(ConsentEvidence)).scalar_one()),
            int(session.execute(select(func.count()).select_from(OutboxMail)).scalar_one()),
        )
