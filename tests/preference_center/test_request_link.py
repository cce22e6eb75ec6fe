"""``POST /p/request-link``: a fresh link by mail, enumeration-safe and rate-limited."""

from __future__ import annotations

import dataclasses
import re

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fixtures.mail import SmtpServer
from tests.fixtures.statements import StatementCounter
from tests.preference_center.conftest import EMAIL, counts
from zeroparty.app import create_app
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
    assert mails == before[2] + 1  # only the known address gets a mail (after the answer)


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
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
) -> None:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as client:
        _ask(client, EMAIL.upper())  # addresses match case-insensitively
        # Sent right after the answer: no outbox poll ran, nothing is left for one.
        (message,) = smtp_server.wait_for(1)
        transport = transport_for(smtp_server.url, settings.outbox_dir)
        assert deliver_pending(database, transport) == 0
        assert message["To"] == EMAIL
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Unsubscribe"].startswith("<http://testserver/u/")
        text = SmtpServer.text_of(message)
        match = re.search(r"http://testserver(/p/\S+)", text)
        assert match is not None
        landing = client.get(match.group(1), headers={"Sec-Fetch-Site": "none"})
        assert landing.status_code == 200
        assert EMAIL in landing.text


class _AnswerWatch:
    """ASGI wrapper noting, per request, the mails that reached the SMTP server before
    the last byte of the answer was handed to the server."""

    def __init__(self, app: ASGIApp, smtp_server: SmtpServer) -> None:
        self.app = app
        self.smtp_server = smtp_server
        self.mails_at_answer = -1  # mails that arrived during the request, before its answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        mails_at_start = len(self.smtp_server.raw)

        async def watched(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.mails_at_answer = len(self.smtp_server.raw) - mails_at_start

        await self.app(scope, receive, watched)


def _shapes(sql: list[str]) -> list[str]:
    """Statements with their values left out (SQLite's trace fills them in): what was
    done, not to whom or when."""
    return [re.sub(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b", "?", s) for s in sql]


def test_known_and_unknown_do_the_same_work_before_the_answer(
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
    statement_counter: StatementCounter,
) -> None:
    """The answer, and everything done before it, is the same for a lead's address and
    a stranger's: the look-up, the queueing and the sending happen after the answer.
    (Compared by the work done, not by a clock: timings are in BENCHMARKS.md.) The SQL
    is seen at the driver, so statements sent on its cursor count too."""
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    watch = _AnswerWatch(statement_counter.wrap(app), smtp_server)
    seen = {}
    with TestClient(watch) as client:
        for email in (EMAIL, "nobody@example.com"):
            with statement_counter.count() as sql:
                response = client.post("/p/request-link", data={"email": email}, headers=SAME)
            seen[email] = (
                response.status_code,
                response.content,
                sorted(response.headers.items()),
                _shapes(sql.request),
                watch.mails_at_answer,
                sql.after_response,
            )
    known, unknown = seen[EMAIL], seen["nobody@example.com"]
    assert known[:4] == unknown[:4]  # status, body bytes, headers, SQL before the answer
    assert known[3]  # the rate limit was counted
    assert not any("subject_profiles" in sql or "mail_outbox" in sql for sql in known[3])
    assert known[4] == unknown[4] == 0  # no mail had left when the answer did
    # Afterwards: both were looked up, only the lead's address got its link.
    assert any("subject_profiles" in sql for sql in known[5])
    assert any("subject_profiles" in sql for sql in unknown[5])
    (message,) = smtp_server.wait_for(1)
    assert message["To"] == EMAIL
