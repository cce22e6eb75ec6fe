"""Statement budgets of the preference center: how many SQL statements the preference
page (``GET /p/``), a one-click unsubscribe (``POST /u/{token}``) and a saved choice
(``POST /p/``: a topic changed; unsubscribe from everything) send to the database.

Counted by ``tests/fixtures/statements.py`` at the driver: every statement the database
executes for the app, ``BEGIN``/``COMMIT``/``ROLLBACK`` included, the ledger's raw
appends included, connection set-up excluded. Each path is warmed by one request of the
same kind first (another lead's, or the same page), then one request is counted.

The budgets are today's counts. A budget may only be lowered (when a change makes the
path cheaper, lower it in the same commit), or raised with the reason in the commit
message.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentMethod
from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkPurpose
from tests.factories import notice_hash, record
from tests.fixtures.statements import StatementCounter, Statements
from tests.preference_center.conftest import counts, issue, open_session
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

# GET /p/ with the session a manage link opened.
PAGE = {"sqlite": 1, "postgresql": 1}
# POST /u/{token} (RFC 8058), withdrawing the newsletter the token names.
ONE_CLICK = {"sqlite": 13, "postgresql": 8}
# POST /p/: the same purposes, one newsletter topic more.
CHANGE_TOPIC = {"sqlite": 14, "postgresql": 8}
# POST /p/ action=unsubscribe_all: newsletter and profiling withdrawn.
UNSUBSCRIBE_ALL = {"sqlite": 25, "postgresql": 18}

SAME = {"Sec-Fetch-Site": "same-origin"}
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def client(
    settings: Settings, database: Database, statement_counter: StatementCounter
) -> Iterator[TestClient]:
    app = create_app(settings, database)
    with TestClient(statement_counter.wrap(app)) as client:
        yield client


@pytest.fixture
def leads(database: Database) -> dict[str, str]:
    """Two leads, each with a live newsletter (confirmed) and profiling consent."""
    found: dict[str, str] = {}
    for email in ("warm@example.com", "ann@example.com"):
        record(database, email, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN)
        record(database, email, "profiling")
        with database.read() as session:
            subject_id = find_subject_id(session, email)
        assert subject_id is not None
        found[email] = subject_id
    return found


def within(budget: dict[str, int], statements: Statements, what: str) -> None:
    assert len(statements) <= budget[statements.dialect], (
        f"{what}: {len(statements)} statements, budget {budget[statements.dialect]}\n"
        + statements.report(what)
    )
    assert statements.after_response == [], statements.report(what)


def save_topics(database: Database, csrf: str, topics: list[str]) -> bytes:
    fields = [("csrf", csrf), ("action", "save"), ("purpose", "newsletter")]
    fields += [("purpose", "profiling")] + [("topic", t) for t in topics]
    for key in ("newsletter", "product_updates", "profiling", "sale_sharing"):
        fields.append((f"notice.{key}", notice_hash(database, key)))
    return "&".join(f"{k}={v}" for k, v in fields).encode()


def test_page(
    client: TestClient,
    settings: Settings,
    database: Database,
    leads: dict[str, str],
    statement_counter: StatementCounter,
) -> None:
    open_session(client, issue(settings, database, leads["ann@example.com"]))  # GETs /p/
    before = counts(database)
    with statement_counter.count() as sql:
        page = client.get("/p/")
    assert page.status_code == 200, page.text
    assert "ann@example.com" in page.text
    within(PAGE, sql, "GET /p/")
    assert counts(database) == before


def test_one_click(
    client: TestClient,
    settings: Settings,
    database: Database,
    leads: dict[str, str],
    statement_counter: StatementCounter,
) -> None:
    paths = {
        email: "/u/" + issue(settings, database, lead, LinkPurpose.UNSUBSCRIBE, ("newsletter",))
        for email, lead in leads.items()
    }
    warm = client.post(paths["warm@example.com"], content=ONE_CLICK_BODY, headers=FORM)
    assert warm.status_code == 200, warm.text
    entries, evidence, mails = counts(database)
    with statement_counter.count() as sql:
        response = client.post(paths["ann@example.com"], content=ONE_CLICK_BODY, headers=FORM)
    assert response.status_code == 200, response.text
    within(ONE_CLICK, sql, "POST /u/{token}")
    assert counts(database) == (entries + 1, evidence + 1, mails)


def test_change_a_topic(
    client: TestClient,
    settings: Settings,
    database: Database,
    leads: dict[str, str],
    statement_counter: StatementCounter,
) -> None:
    csrf = open_session(client, issue(settings, database, leads["warm@example.com"]))
    warm = client.post(
        "/p/", content=save_topics(database, csrf, ["webinars"]), headers=SAME | FORM
    )
    assert warm.status_code == 200, warm.text
    csrf = open_session(client, issue(settings, database, leads["ann@example.com"]))
    body = save_topics(database, csrf, ["webinars"])
    entries, evidence, mails = counts(database)
    with statement_counter.count() as sql:
        response = client.post("/p/", content=body, headers=SAME | FORM, follow_redirects=False)
    assert response.status_code == 303, response.text
    within(CHANGE_TOPIC, sql, "POST /p/ (a topic changed)")
    # The newsletter's grant is recorded again with the topics in its evidence.
    assert counts(database) == (entries + 1, evidence + 1, mails)
    assert "Your choices are saved." in client.get(response.headers["location"]).text


def test_unsubscribe_all(
    client: TestClient,
    settings: Settings,
    database: Database,
    leads: dict[str, str],
    statement_counter: StatementCounter,
) -> None:
    csrf = open_session(client, issue(settings, database, leads["warm@example.com"]))
    warm = client.post("/p/", data={"csrf": csrf, "action": "unsubscribe_all"}, headers=SAME)
    assert warm.status_code == 200, warm.text
    csrf = open_session(client, issue(settings, database, leads["ann@example.com"]))
    entries, evidence, mails = counts(database)
    with statement_counter.count() as sql:
        response = client.post(
            "/p/",
            data={"csrf": csrf, "action": "unsubscribe_all"},
            headers=SAME,
            follow_redirects=False,
        )
    assert response.status_code == 303, response.text
    within(UNSUBSCRIBE_ALL, sql, "POST /p/ (unsubscribe from everything)")
    assert counts(database) == (entries + 2, evidence + 2, mails)
    page = client.get(response.headers["location"])
    assert "You are unsubscribed from everything." in page.text
