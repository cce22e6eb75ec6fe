"""The public request page (``/request``): a person picks a kind of request and proves
control of the address by a mailed, signed, expiring link; the same answer, work and
rate limit for a stranger's address and a lead's; a link records once."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

import consent_ledger.requests as requests_module
from consent_ledger.requests import DataSubjectRequest, RequestConfirmation, email_digest
from tests.console.conftest import Clock
from tests.fixtures.mail import SmtpServer
from tests.preference_center.conftest import EMAIL
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.mail import OutboxMail
from zeroparty.settings import Settings

SAME = {"Sec-Fetch-Site": "same-origin"}
LINK_RE = re.compile(rb"http://testserver(/request/confirm/[A-Za-z0-9_.\-]+)")


@pytest.fixture
def client(settings: Settings, database: Database, smtp_server: SmtpServer) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as test_client:
        yield test_client


def _ask(client: TestClient, email: str, kind: str = "access") -> tuple[int, str]:
    answer = client.post("/request", data={"email": email, "kind": kind}, headers=SAME)
    return answer.status_code, answer.text


def _link(smtp_server: SmtpServer, count: int) -> str:
    """The confirming link of the ``count``-th mail, read from its bytes on the wire."""
    smtp_server.wait_for(count)
    raw = smtp_server.raw[count - 1]
    assert b"Subject: Confirm your data-protection request" in raw
    match = LINK_RE.search(raw.replace(b"=\r\n", b""))
    assert match is not None, raw
    return match.group(1).decode()


def _rows(database: Database) -> list[DataSubjectRequest]:
    with database.read() as session:
        rows = list(session.scalars(select(DataSubjectRequest).order_by(DataSubjectRequest.id)))
        session.expunge_all()
        return rows


def _pending(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(RequestConfirmation)) or 0)


def test_the_form_lists_every_kind(client: TestClient) -> None:
    page = client.get("/request")
    assert page.status_code == 200
    for kind in (
        "access", "portability", "erasure", "rectification", "restriction", "objection",
        "opt_out_sale", "limit_sensitive",
    ):  # fmt: skip
        assert f'value="{kind}"' in page.text
    assert 'name="email"' in page.text


def test_a_lead_confirms_an_erasure_request(
    client: TestClient, database: Database, lead: str, smtp_server: SmtpServer
) -> None:
    status, body = _ask(client, EMAIL.upper(), "erasure")
    assert status == 200
    assert "We have mailed a link" in body
    assert _rows(database) == []  # nothing recorded before the link is followed
    link = _link(smtp_server, 1)
    raw = smtp_server.raw[0]
    assert f"To: {EMAIL}".encode() in raw
    assert b"Delete my personal data" in raw
    assert EMAIL.encode() not in link.encode()  # the token carries a nonce only
    # Opening the link (a mail scanner may) records nothing.
    page = client.get(link)
    assert page.status_code == 200
    assert "Confirm my request" in page.text
    assert _rows(database) == []
    answer = client.post(link, headers=SAME)
    assert answer.status_code == 200
    assert "We have received your request" in answer.text
    (row,) = _rows(database)
    assert (row.kind, row.status, row.channel, row.subject_id) == (
        "erasure", "open", "request_page", lead,
    )  # fmt: skip
    assert row.due_at.strftime("%Y-%m-%d") in answer.text
    assert _pending(database) == 0  # the address is no longer kept with the pending request
    # Replayed: said so, nothing recorded twice.
    again = client.post(link, headers=SAME)
    assert again.status_code == 200
    assert "recorded already" in again.text
    assert len(_rows(database)) == 1


def test_same_answer_for_known_and_unknown_addresses(
    client: TestClient, database: Database, lead: str, smtp_server: SmtpServer
) -> None:
    known = _ask(client, EMAIL, "access")
    unknown = _ask(client, "stranger@example.com", "access")
    assert known == unknown
    assert known[0] == 200
    # Both get a mail: the page cannot tell who is a lead.
    smtp_server.wait_for(2)
    assert [to for _from, to in smtp_server.envelopes] == [[EMAIL], ["stranger@example.com"]]
    # Only the owner of the unknown address learns that we hold nothing.
    answer = client.post(_link(smtp_server, 2), headers=SAME)
    assert answer.status_code == 200
    assert "We hold no personal data about this address" in answer.text
    (row,) = _rows(database)
    assert (row.subject_id, row.status, row.channel) == (None, "nothing_held", "request_page")
    assert row.email_sha256 == email_digest("stranger@example.com")
    with database.read() as session:  # the address itself is kept nowhere but its mail
        assert (
            session.scalar(select(func.count()).select_from(RequestConfirmation)) == 1
        )  # the known address's link, not followed yet


def test_rate_limited_the_same_for_known_and_unknown(
    client: TestClient, database: Database, lead: str
) -> None:
    answers = {
        email: [_ask(client, email)[0] for _ in range(4)]
        for email in (EMAIL, "stranger@example.com")
    }
    assert answers[EMAIL] == answers["stranger@example.com"] == [200, 200, 200, 429]
    assert _pending(database) == 6
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMail)) == 6


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"email": "not-an-address", "kind": "access"}, "email:"),
        ({"email": "", "kind": "access"}, "email:"),
        ({"email": "x" * 400 + "@example.com", "kind": "access"}, "email:"),
        ({"email": EMAIL, "kind": "delete-everything"}, "kind:"),
        ({"email": EMAIL}, "kind:"),
    ],
)
def test_bad_input_changes_nothing(
    client: TestClient, database: Database, data: dict[str, str], problem: str
) -> None:
    answer = client.post("/request", data=data, headers=SAME)
    assert answer.status_code == 422
    assert "Nothing was sent" in answer.text
    assert f'<li id="{problem[:-1]}-error">{problem}' in answer.text
    assert _pending(database) == 0
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMail)) == 0


def test_cross_site_posts_are_refused(client: TestClient, database: Database) -> None:
    answer = client.post(
        "/request", data={"email": EMAIL, "kind": "access"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )  # fmt: skip
    assert answer.status_code == 403
    assert _pending(database) == 0


@pytest.mark.parametrize("token", ["nonsense", "a" * 60, "x.y.z"])
def test_invalid_links(client: TestClient, database: Database, token: str) -> None:
    for answer in (
        client.get(f"/request/confirm/{token}"),
        client.post(f"/request/confirm/{token}", headers=SAME),
    ):
        assert answer.status_code == 400
        assert "This link is not valid" in answer.text
    assert _rows(database) == []


def test_expired_link_records_nothing(
    client: TestClient,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = time.time
    with monkeypatch.context() as patch:  # asked 25 hours ago
        patch.setattr(time, "time", lambda: real() - 25 * 3600)
        assert _ask(client, EMAIL)[0] == 200
    link = _link(smtp_server, 1)
    for answer in (client.get(link), client.post(link, headers=SAME)):
        assert answer.status_code == 410
        assert "This link has expired" in answer.text
    assert _rows(database) == []


def test_a_pending_request_lapses_after_a_day(
    client: TestClient,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pending row's own time limit (controlled clock), whatever the token says."""
    clock = Clock()
    monkeypatch.setattr(requests_module, "utcnow", clock)
    assert _ask(client, EMAIL)[0] == 200
    link = _link(smtp_server, 1)
    clock.advance(hours=24, seconds=1)
    answer = client.post(link, headers=SAME)
    assert answer.status_code == 410
    assert "This link has expired" in answer.text
    assert _rows(database) == []
    with database.write() as session:
        assert requests_module.purge_confirmations(session, dry_run=True) == 1
        assert requests_module.purge_confirmations(session) == 1
    assert _pending(database) == 0
    assert timedelta(hours=requests_module.CONFIRMATION_HOURS) == timedelta(days=1)
