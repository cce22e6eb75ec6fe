"""Helpers for the console's tests: staff accounts of each role, logged-in clients (with
or without a second factor), a clock the tests move, leads with history."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod
from consent_ledger.subjects import find_subject_id
from console import accounts
from console.sessions import SessionService
from tests.factories import record
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings

PASSWORD = "correct horse battery staple"
LEAD_EMAIL = "ann@example.com"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
HIDDEN_RE = re.compile(r'name="(login|csrf)" value="([^"]+)"')


class Clock:
    """The console's clock in a test: stands still until moved."""

    def __init__(self) -> None:
        self.now = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_staff(database: Database, email: str, role: str, password: str = PASSWORD) -> int:
    with database.write() as session:
        user = accounts.create_user(session, email, role)
        user_id, generation = user.id, user.session_generation
    with database.write() as session:
        accounts.set_password(session, user_id, generation, password)
    return user_id


def hidden(html: str, name: str) -> str:
    for found, value in HIDDEN_RE.findall(html):
        if found == name:
            return str(value)
    raise AssertionError(f"no hidden field {name} in the page")


def log_in(client: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/console/login")
    assert page.status_code == 200
    answer = client.post(
        "/console/login",
        data={"login": hidden(page.text, "login"), "email": email, "password": password},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return client


def enter_code(client: TestClient, code: str) -> int:
    """The second step of a login: sends ``code``; the status of the answer."""
    page = client.get("/console/login/code", follow_redirects=False)
    if page.status_code != 200:
        return page.status_code
    answer = client.post(
        "/console/login/code",
        data={"csrf": hidden(page.text, "csrf"), "code": code},
        follow_redirects=False,
    )
    return answer.status_code


def csrf_of(client: TestClient, path: str = "/console/") -> str:
    return hidden(client.get(path).text, "csrf")


@pytest.fixture
def console_app(
    settings: Settings, database: Database, clock: Clock
) -> Iterator[Callable[[], TestClient]]:
    """``new_client()`` gives a fresh client (own cookies) of one app, whose sessions
    and codes run on the test's ``clock``."""
    app = create_app(settings, database)
    app.state.console_sessions = SessionService(settings, clock)
    clients: list[TestClient] = []

    def new_client() -> TestClient:
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield new_client
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def staff(database: Database) -> dict[str, str]:
    """One account per role: role -> email."""
    emails = {role: f"{role}@staff.example" for role in ("admin", "compliance", "marketer")}
    for role, email in emails.items():
        make_staff(database, email, role)
    return emails


@pytest.fixture
def as_role(
    console_app: Callable[[], TestClient], staff: dict[str, str]
) -> Callable[[str], TestClient]:
    def client_for(role: str) -> TestClient:
        return log_in(console_app(), staff[role])

    return client_for


@pytest.fixture
def lead(database: Database) -> str:
    """A lead with a history: newsletter granted then confirmed, profiling granted then
    withdrawn. Returns the subject id."""
    record(database, LEAD_EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN)
    record(database, LEAD_EMAIL, "profiling")
    record(database, LEAD_EMAIL, "profiling", ConsentAction.WITHDRAWN)
    with database.read() as session:
        subject_id = find_subject_id(session, LEAD_EMAIL)
    assert subject_id is not None
    return subject_id


FORMULA = '=HYPERLINK("http://evil.example","x")'
HOSTILE_EMAIL = "mallory@example.com"


@pytest.fixture
def hostile_lead(database: Database) -> str:
    """A lead whose name, answers, user agent and source label are attacks: stored XSS
    payloads and a spreadsheet formula. Returns the subject id."""
    from capture.models import Answer, DefinitionVersion, Submission
    from consent_ledger.actions import ConsentSource
    from consent_ledger.api import ConsentRecord
    from tests.factories import notice_hash
    from zeroparty.wiring import build_ledger

    with database.write() as session:
        build_ledger(database).record_by_email(
            session,
            ConsentRecord(
                email=HOSTILE_EMAIL,
                purpose="profiling",
                action=ConsentAction.GRANTED,
                source=ConsentSource.API,
                method=ConsentMethod.WRITTEN,
                notice_sha256=notice_hash(database, "profiling"),
                source_ref=FORMULA,
                name=XSS,
                evidence={"ip": "203.0.113.9", "user_agent": XSS, "note": FORMULA},
            ),
        )
    with database.write() as session:
        subject_id = find_subject_id(session, HOSTILE_EMAIL)
        assert subject_id is not None
        definition = session.query(DefinitionVersion).filter_by(slug="contact").first()
        assert definition is not None
        session.add(
            Submission(id="s" * 32, definition_id=definition.id, subject_id=subject_id, locale="en")
        )
        session.flush()
        session.add(
            Answer(submission_id="s" * 32, subject_id=subject_id, field="message", value=XSS)
        )
    return subject_id
