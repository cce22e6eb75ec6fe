"""Statement budgets of a form submission: how many SQL statements one ``POST /f/contact``
sends to the database, and how many the sending of its mail takes afterwards.

Counted by ``tests/fixtures/statements.py`` at the driver: every statement the database
executes for the app, ``BEGIN``/``COMMIT``/``ROLLBACK`` included, the ledger's raw
appends included, connection set-up excluded. Each path is warmed first by one request
of the same kind (pool, caches), then one request is counted. ``request`` is what runs
until the response is sent; ``after`` is the background task that sends the mail.

The budgets are today's counts. A budget may only be lowered (when a change makes the
path cheaper, lower it in the same commit), or raised with the reason in the commit
message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from tests.capture.conftest import token_in
from tests.fixtures.mail import SmtpServer
from tests.fixtures.statements import StatementCounter, Statements
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

# One consent box (profiling, no double opt-in), an address never seen before.
NEW_VISITOR = {"sqlite": 18, "postgresql": 14}
# One double opt-in box (newsletter), an address never seen before: the request, and the
# background task sending the confirmation mail. The request queues the mail claimed by
# its own process and takes the sender with it (the process's copy, read by the warm-up:
# no statement), so after the answer only the send and one "sent" update remain (one
# transaction).
DOUBLE_OPT_IN = {"sqlite": 18, "postgresql": 13}
DOUBLE_OPT_IN_MAIL = {"sqlite": 3, "postgresql": 3}
# NEW_VISITOR's submission under an address that is already a lead's: held, and a link
# mailed to the address (the request, then the mail).
KNOWN_ADDRESS = {"sqlite": 9, "postgresql": 9}
KNOWN_ADDRESS_MAIL = {"sqlite": 3, "postgresql": 3}

FIELDS = {
    "name": "Bea Budget",
    "company": "ACME Corp",
    "job_title": "Engineer",
    "message": "Hello there",
}


@pytest.fixture
def client(
    settings: Settings,
    database: Database,
    smtp_server: SmtpServer,
    statement_counter: StatementCounter,
) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(statement_counter.wrap(app)) as client:
        yield client


@pytest.fixture
def render(client: TestClient, tokens: CaptureTokens) -> Callable[[], str]:
    """A render token of the contact form, as if the page had been open half a minute
    (rendered before a counted block, never inside it)."""

    def get() -> str:
        token = tokens.read_render(token_in(client.get("/f/contact").text))
        return tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))

    return get


@pytest.fixture
def submit(client: TestClient) -> Callable[[str, str, str], None]:
    """``submit(email, box, render_token)``: the contact form with one consent box ticked."""

    def send(email: str, box: str, token: str) -> None:
        response = client.post(
            "/f/contact",
            data={**FIELDS, "email": email, "consent": box, "_rt": token},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text

    return send


def rows(database: Database, table: str, where: str = "") -> int:
    with database.read() as session:
        sql = f"SELECT count(*) FROM {table} {where}"
        return int(session.execute(text(sql)).scalar_one())


def within(budget: dict[str, int], sql: list[str], statements: Statements, what: str) -> None:
    assert len(sql) <= budget[statements.dialect], (
        f"{what}: {len(sql)} statements, budget {budget[statements.dialect]}\n"
        + statements.report(what)
    )


def test_new_visitor_one_box(
    submit: Callable[[str, str, str], None],
    render: Callable[[], str],
    statement_counter: StatementCounter,
    database: Database,
    smtp_server: SmtpServer,
) -> None:
    submit("warm@example.com", "profiling", render())
    entries = rows(database, "consent_events")
    token = render()
    with statement_counter.count() as sql:
        submit("new@example.com", "profiling", token)
    within(NEW_VISITOR, sql.sql, sql, "new visitor, one box")
    assert sql.after_response == []
    assert rows(database, "consent_events") == entries + 1
    assert rows(database, "capture_submissions") == 2
    assert rows(database, "capture_answers") == 10  # email, name, company, job title, message
    # The answers reach scoring in the same transaction: a budget alone would not notice
    # a listener that stopped running (fewer statements pass).
    assert rows(database, "scoring_leads") == 2
    assert rows(database, "scoring_attributes") == 4  # company and job title, twice
    assert rows(database, "mail_outbox") == 0
    assert smtp_server.messages == []


def test_new_visitor_double_opt_in_box(
    submit: Callable[[str, str, str], None],
    render: Callable[[], str],
    statement_counter: StatementCounter,
    database: Database,
    smtp_server: SmtpServer,
) -> None:
    submit("warm@example.com", "newsletter", render())
    smtp_server.wait_for(1)
    entries = rows(database, "consent_events")
    token = render()
    with statement_counter.count() as sql:
        submit("new@example.com", "newsletter", token)
        smtp_server.wait_for(2)
    within(DOUBLE_OPT_IN, sql.request, sql, "new visitor, double opt-in box (request)")
    within(DOUBLE_OPT_IN_MAIL, sql.after_response, sql, "double opt-in mail (after response)")
    assert rows(database, "consent_events") == entries + 1
    assert rows(database, "mail_outbox", "WHERE sent_at IS NOT NULL") == 2
    assert smtp_server.messages[-1]["To"] == "new@example.com"


def test_known_address(
    submit: Callable[[str, str, str], None],
    render: Callable[[], str],
    statement_counter: StatementCounter,
    database: Database,
    smtp_server: SmtpServer,
) -> None:
    submit("warm@example.com", "profiling", render())
    submit("known@example.com", "profiling", render())
    submit("warm@example.com", "profiling", render())  # held: warms the known-address path
    smtp_server.wait_for(1)
    entries = rows(database, "consent_events")
    token = render()
    with statement_counter.count() as sql:
        submit("known@example.com", "profiling", token)
        smtp_server.wait_for(2)
    within(KNOWN_ADDRESS, sql.request, sql, "known address (request)")
    within(KNOWN_ADDRESS_MAIL, sql.after_response, sql, "known address mail (after response)")
    assert rows(database, "consent_events") == entries  # held until the owner confirms
    assert rows(database, "mail_outbox", "WHERE sent_at IS NOT NULL") == 2
    assert smtp_server.messages[-1]["To"] == "known@example.com"
