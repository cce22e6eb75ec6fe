"""Double opt-in again under a new notice text, through a form (issue 16).

A lead who confirmed the newsletter under one text is not confirmed for the next: a
form grant under a notice version the lead has not confirmed waits for a confirmation,
whoever sent it. The form holds a submission under a known address and mails the
address a link (capture.pending); following that link is the confirmation, and the
ledger records it as such (a pending grant, then ``confirmed``). Under the very text
the lead confirmed, the grant is live at once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent
from consent_ledger.subjects import find_subject_id
from tests.factories import notice_hash
from tests.fixtures.mail import SmtpServer
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

EMAIL = "rita@example.com"
OLD_TEXT = "Yes, send me the Northwind newsletter"
CONFIRM_RE = re.compile(rb"http://testserver(/confirm/(?:held/)?[A-Za-z0-9._-]+)")


@pytest.fixture
def mail_client(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as client:
        yield client


def _post(client: TestClient, render: Callable[..., str], consent: list[str]) -> None:
    response = client.post(
        "/f/contact",
        json={
            "fields": {"email": EMAIL, "message": "hello"},
            "consent": consent,
            "render_token": render("contact"),
        },
    )
    assert response.status_code == 201, response.text


def _link(smtp_server: SmtpServer, count: int, prefix: str) -> str:
    """The newest link starting with ``prefix`` once ``count`` mails arrived (a
    confirmation is followed by a receipt mail), read from the raw bytes."""
    smtp_server.wait_for(count)
    for raw in reversed(smtp_server.raw):
        for match in CONFIRM_RE.finditer(raw.replace(b"=\r\n", b"")):
            if match.group(1).decode().startswith(prefix):
                return match.group(1).decode()
    raise AssertionError(f"no {prefix} link in {count} mails")


def _entries(database: Database) -> list[Any]:
    with database.read() as session:
        subject_id = find_subject_id(session, EMAIL)
        stmt = (
            select(
                ConsentEvent.purpose_key,
                ConsentEvent.action,
                ConsentEvent.confirmation_required,
                ConsentEvent.notice_sha256,
            )
            .where(ConsentEvent.subject_id == subject_id)
            .order_by(ConsentEvent.seq)
        )
        return [tuple(row) for row in session.execute(stmt)]


def _permitted(api: TestClient) -> tuple[bool, str | None]:
    response = api.get("/api/consent", params={"email": EMAIL, "purpose": "newsletter"})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["permitted"], body["notice_sha256"]


def _subscribed(
    mail_client: TestClient, render: Callable[..., str], smtp_server: SmtpServer
) -> None:
    """A new lead ticks the newsletter and confirms from the mailed link."""
    _post(mail_client, render, ["newsletter"])
    assert mail_client.post(_link(smtp_server, 1, "/confirm/")).status_code == 200


def test_a_form_grant_under_a_new_text_waits_for_the_owners_confirmation(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    database: Database,
    load_toml: Callable[..., list[str]],
) -> None:
    _subscribed(mail_client, render, smtp_server)
    v1 = notice_hash(database, "newsletter")
    assert _permitted(api) == (True, v1)
    load_toml("", replace=(OLD_TEXT, "Yes, send me the Northwind newsletter, with partner offers"))
    v2 = notice_hash(database, "newsletter")
    assert v2 != v1
    before = _entries(database)

    # Anyone ticks the box under the new text: nothing is recorded, the address is asked.
    _post(mail_client, render, ["newsletter"])
    assert _entries(database) == before
    assert _permitted(api) == (True, v1)
    link = _link(smtp_server, 3, "/confirm/held/")
    assert smtp_server.messages[-1]["To"] == EMAIL

    # The owner confirms: the grant under the new text is recorded as needing a
    # confirmation, and the confirmation follows it: the ledger shows both.
    assert mail_client.post(link).status_code == 200
    assert _entries(database)[len(before) :] == [
        ("newsletter", "granted", True, v2),
        ("newsletter", "confirmed", False, v2),
    ]
    assert _permitted(api) == (True, v2)


def test_a_form_grant_under_the_confirmed_text_needs_no_new_confirmation(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    database: Database,
) -> None:
    _subscribed(mail_client, render, smtp_server)
    v1 = notice_hash(database, "newsletter")
    before = _entries(database)
    _post(mail_client, render, ["newsletter"])
    assert mail_client.post(_link(smtp_server, 3, "/confirm/held/")).status_code == 200
    assert _entries(database)[len(before) :] == [("newsletter", "granted", False, v1)]
    assert _permitted(api) == (True, v1)


def test_a_box_ticked_under_a_text_replaced_while_held_grants_nothing(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    database: Database,
    load_toml: Callable[..., list[str]],
) -> None:
    """Held under v1, a material change, then the owner confirms: the newsletter box
    (v1) grants nothing; the rest of the submission still applies."""
    _subscribed(mail_client, render, smtp_server)
    mail_client.post(
        "/f/contact",
        json={
            "fields": {"email": EMAIL, "message": "hello", "job_title": "CTO"},
            "consent": ["newsletter", "profiling"],
            "render_token": render("contact"),
        },
    )
    link = _link(smtp_server, 3, "/confirm/held/")
    load_toml("", replace=(OLD_TEXT, "Yes, send me the Northwind newsletter, with partner offers"))
    before = _entries(database)
    assert mail_client.post(link).status_code == 200
    added = _entries(database)[len(before) :]
    assert [(purpose, action) for purpose, action, *_ in added] == [("profiling", "granted")]
