"""``POST /p/request-link``: a fresh link by mail, enumeration-safe and rate-limited."""

from __future__ import annotations

import dataclasses
import re

import pytest
from starlette.testclient import TestClient

from tests.fixtures.mail import SmtpServer
from tests.preference_center.conftest import EMAIL, counts
from zeroparty.db import Database
from zeroparty.mail import deliver_pending, transport_for
from zeroparty.settings import Settings

SAME = {"Sec-Fetch-Site": "same-origin"}


def _ask(client: TestClient, email: str) -> tuple[int, str]:
    response = client.post("/p/request-link", data={"email": email}, headers=SAME)
    return response.status_code, response.text


def test_same_answer_for_known_and_unknown(
    app_client: TestClient, database: Database, lead: str
) -> None:
    before = counts(database)
    known = _ask(app_client, EMAIL)
    unknown = _ask(app_client, "nobody@example.com")
    assert known == unknown
    assert known[0] == 200
    assert "If this address is known to us" in known[1]
    entries, evidence, mails = counts(database)
    assert (entries, evidence) == before[:2]
    assert mails == before[2] + 1  # only the known address gets a mail


def test_rate_limit_is_the_same_for_known_and_unknown(
    app_client: TestClient, database: Database, lead: str
) -> None:
    answers = {
        email: [_ask(app_client, email) for _ in range(4)]
        for email in (EMAIL, "nobody@example.com")
    }
    assert answers[EMAIL] == answers["nobody@example.com"]
    statuses = [status for status, _ in answers[EMAIL]]
    assert statuses == [200, 200, 200, 429]
    assert "try again in an hour" in answers[EMAIL][3][1]
    assert counts(database)[2] == 3


@pytest.mark.parametrize("email", ["", "not-an-address", "a@", "x" * 400 + "@example.com"])
def test_bad_address(app_client: TestClient, database: Database, email: str) -> None:
    before = counts(database)
    status, body = _ask(app_client, email)
    assert status == 422
    assert 'aria-invalid="true"' in body
    assert counts(database) == before


def test_get_shows_the_form(app_client: TestClient) -> None:
    response = app_client.get("/p/request-link")
    assert response.status_code == 200
    assert 'name="email"' in response.text


def test_mailed_link_opens_the_page(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
) -> None:
    _ask(app_client, EMAIL.upper())  # addresses match case-insensitively
    smtp = dataclasses.replace(settings, smtp_url=smtp_server.url)
    assert deliver_pending(database, transport_for(smtp.smtp_url, smtp.outbox_dir)) == 1
    (message,) = smtp_server.wait_for(1)
    assert message["To"] == EMAIL
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<http://testserver/u/")
    text = SmtpServer.text_of(message)
    match = re.search(r"http://testserver(/p/\S+)", text)
    assert match is not None
    landing = app_client.get(match.group(1), headers={"Sec-Fetch-Site": "none"})
    assert landing.status_code == 200
    assert EMAIL in landing.text
