"""Unverified input never speaks for someone else.

A submission under the address of an existing lead changes nothing of that lead's
(answers, score, stage, consent state, ledger) until the link mailed to the address is
followed; then it applies as if the owner had sent it. An expired one is never applied
and the periodic job deletes it. Unticked boxes and a GPC signal from a stranger
withdraw nothing. What the visitor gets back is the same for every address.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, Engine, func, select, text
from starlette.testclient import TestClient

from capture.jobs import delete_expired_held
from capture.models import Answer, PendingSubmission
from capture.tokens import CaptureTokens, ConfirmToken
from consent_ledger.api import ConsentLedger
from consent_ledger.models import ConsentEvent, ConsentEvidence
from consent_ledger.subjects import find_subject_id
from tests.capture.conftest import one
from tests.fixtures.mail import SmtpServer
from zeroparty.app import create_app
from zeroparty.db import Base, Database, make_engine
from zeroparty.settings import Settings

HELD_LINK_RE = re.compile(rb"http://testserver(/confirm/held/[A-Za-z0-9._-]+)")
# Tables a held submission may write: none of them is the lead's.
HOLDING_TABLES = frozenset(
    {"capture_pending_submissions", "capture_idempotency", "capture_rate_counters", "mail_outbox"}
)
VICTIM = "vic@example.com"


@pytest.fixture
def mail_client(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as client:
        yield client


def snapshot(database: Database) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table but those a held submission may write."""
    with database.read() as session:
        return {
            table.name: sorted(
                tuple(repr(v) for v in row)
                for row in session.execute(text(f"SELECT * FROM {table.name}"))
            )
            for table in Base.metadata.sorted_tables
            if table.name not in HOLDING_TABLES
        }


def post_contact(
    client: TestClient, render: Callable[..., str], email: str, consent: list[str], **fields: str
) -> Any:
    response = client.post(
        "/f/contact",
        json={
            "fields": {"email": email, "message": "hello", **fields},
            "consent": consent,
            "render_token": render("contact"),
        },
    )
    assert response.status_code == 201, response.text
    return response


def held_link(smtp_server: SmtpServer, count: int) -> str:
    """The held-submission link in the ``count``-th mail, read from the raw bytes."""
    smtp_server.wait_for(count)
    raw = smtp_server.raw[count - 1].replace(b"=\r\n", b"")  # quoted-printable soft breaks
    match = HELD_LINK_RE.search(raw)
    assert match is not None, raw
    return match.group(1).decode()


def score(api: TestClient, email: str) -> Any:
    response = api.get("/api/leads/score", params={"email": email})
    assert response.status_code == 200, response.text
    return response.json()["score"]


def consent_of(api: TestClient, email: str, purpose: str) -> Any:
    response = api.get("/api/consent", params={"email": email, "purpose": purpose})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_strangers_submission_changes_nothing_until_the_owner_confirms(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    database: Database,
) -> None:
    post_contact(mail_client, render, VICTIM, ["profiling"], job_title="Analyst")
    before_score = score(api, VICTIM)
    before = snapshot(database)

    # The stranger: the victim's address, a job title worth 15 points, a newsletter box.
    post_contact(mail_client, render, VICTIM, ["newsletter", "profiling"], job_title="CEO")
    assert snapshot(database) == before
    assert score(api, VICTIM) == before_score
    assert consent_of(api, VICTIM, "newsletter")["permitted"] is False

    # The mail goes to the address, never to the sender; its GET changes nothing.
    link = held_link(smtp_server, 1)
    assert smtp_server.messages[0]["To"] == VICTIM
    page = mail_client.get(link)
    assert page.status_code == 200
    assert one(page.text, "h1")["text"] == "Please confirm"
    assert "CEO" in page.text
    assert snapshot(database) == before

    # The owner confirms: applied as if they had sent it now.
    confirmed = mail_client.post(link, headers={"user-agent": "owner-browser/1"})
    assert confirmed.status_code == 200
    assert one(confirmed.text, "h1")["text"] == "Thank you, confirmed"
    assert score(api, VICTIM) == before_score + 15
    assert consent_of(api, VICTIM, "newsletter")["permitted"] is True
    with database.read() as session:
        subject_id = find_subject_id(session, VICTIM)
        titles = session.execute(
            select(Answer.value).where(Answer.subject_id == subject_id, Answer.field == "job_title")
        ).scalars()
        assert sorted(titles) == ["Analyst", "CEO"]
        entries = (
            session.execute(
                select(ConsentEvent)
                .where(ConsentEvent.subject_id == subject_id)
                .order_by(ConsentEvent.seq)
            )
            .scalars()
            .all()
        )
        actions = [(e.purpose_key, e.action, e.method) for e in entries]
        assert actions == [
            ("profiling", "granted", "checkbox"),
            ("newsletter", "granted", "checkbox"),
            ("newsletter", "confirmed", "double-opt-in"),
            ("profiling", "granted", "checkbox"),
        ]
        evidence = orjson.loads(session.get_one(ConsentEvidence, entries[3].seq).body)
        assert evidence["confirmed_by"] == "confirmation-link"
        assert evidence["confirmed_user_agent"] == "owner-browser/1"
        assert evidence["form"] == "contact"
        assert session.execute(select(PendingSubmission)).first() is None

    # Following it again applies nothing twice.
    after = snapshot(database)
    again = mail_client.post(link)
    assert one(again.text, "h1")["text"] == "Nothing to confirm"
    assert snapshot(database) == after


def test_unticked_boxes_and_gpc_from_a_stranger_withdraw_nothing(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    database: Database,
) -> None:
    post_contact(mail_client, render, VICTIM, ["profiling"], job_title="Analyst")
    before = snapshot(database)
    sharing_before = consent_of(api, VICTIM, "sale_sharing")

    response = mail_client.post(
        "/f/contact",
        json={"fields": {"email": VICTIM, "message": "x"}, "consent": [],
              "render_token": render("contact")},
        headers={"sec-gpc": "1"},
    )  # fmt: skip
    assert response.status_code == 201
    assert snapshot(database) == before
    assert consent_of(api, VICTIM, "profiling")["permitted"] is True
    assert consent_of(api, VICTIM, "sale_sharing") == sharing_before

    # Confirmed by the owner, the signal is theirs and is recorded.
    mail_client.post(held_link(smtp_server, 1))
    assert consent_of(api, VICTIM, "sale_sharing")["permitted"] is False
    assert consent_of(api, VICTIM, "profiling")["permitted"] is True


def test_an_expired_held_submission_is_never_applied_and_the_job_deletes_it(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    database: Database,
) -> None:
    post_contact(mail_client, render, VICTIM, ["profiling"], job_title="Analyst")
    post_contact(mail_client, render, VICTIM, ["profiling"], job_title="CEO")
    post_contact(mail_client, render, VICTIM, ["profiling"], job_title="CTO")
    expired_link = held_link(smtp_server, 1)
    with database.write() as session:  # the first one's week is over
        session.execute(
            text(
                "UPDATE capture_pending_submissions SET expires_at = created_at "
                "WHERE payload LIKE '%CEO%'"
            )
        )
    before = snapshot(database)
    page = mail_client.get(expired_link)
    assert one(page.text, "h1")["text"] == "This link has expired"
    refused = mail_client.post(expired_link)
    assert one(refused.text, "h1")["text"] == "This link has expired"
    assert snapshot(database) == before

    assert delete_expired_held(database) == 1
    with database.read() as session:
        held = session.execute(select(PendingSubmission.payload)).scalars().all()
    assert len(held) == 1
    assert "CTO" in held[0]
    gone = mail_client.post(expired_link)
    assert one(gone.text, "h1")["text"] == "Nothing to confirm"
    assert snapshot(database) == before


def test_held_submissions_are_exported_and_erased_with_the_lead(
    mail_client: TestClient,
    render: Callable[..., str],
    database: Database,
    ledger: ConsentLedger,
) -> None:
    post_contact(mail_client, render, VICTIM, ["profiling"], job_title="Analyst")
    post_contact(mail_client, render, VICTIM, [], job_title="CEO")
    (provider,) = [p for p in ledger.personal_data_providers if p.name == "capture"]
    with database.read() as session:
        subject_id = find_subject_id(session, VICTIM)
        assert subject_id is not None
        exported = provider.export(session, subject_id)
    assert [e.get("status") for e in exported] == [None, "waiting for the owner's confirmation"]
    assert exported[1]["answers"]["job_title"] == ["CEO"]
    with database.write() as session:
        provider.erase(session, subject_id)
    with database.read() as session:
        assert session.execute(select(PendingSubmission)).first() is None


def test_a_retry_of_a_held_submission_holds_and_mails_once(
    mail_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    post_contact(mail_client, render, VICTIM, [])
    token = render("contact")
    body = {"fields": {"email": VICTIM, "message": "m"}, "consent": [], "render_token": token}
    first = mail_client.post("/f/contact", json=body)
    retry = mail_client.post("/f/contact", json=body)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    with database.read() as session:
        held = session.execute(text("SELECT count(*) FROM capture_pending_submissions"))
        mails = session.execute(
            text("SELECT count(*) FROM mail_outbox WHERE subject LIKE 'Please confirm: Talk%'")
        )
        assert (held.scalar_one(), mails.scalar_one()) == (1, 1)


@pytest.mark.parametrize(
    ("token", "status"),
    [("garbage", 400), ("x" * 3000, 400), ("double-opt-in", 400)],
    ids=["forged", "too-long", "wrong-purpose"],
)
def test_bad_held_links_change_nothing(
    mail_client: TestClient,
    render: Callable[..., str],
    database: Database,
    tokens: CaptureTokens,
    token: str,
    status: int,
) -> None:
    post_contact(mail_client, render, VICTIM, [], job_title="CEO")
    post_contact(mail_client, render, VICTIM, [], job_title="CTO")
    if token == "double-opt-in":
        with database.read() as session:
            held = session.execute(select(PendingSubmission)).scalar_one()
        token = tokens.issue_confirm(ConfirmToken(held.subject_id, (), held.submission_id))
    before = snapshot(database)
    with database.read() as session:
        pending_before = session.execute(text("SELECT count(*) FROM capture_pending_submissions"))
        count_before = pending_before.scalar_one()
    for response in (
        mail_client.get(f"/confirm/held/{token}"),
        mail_client.post(f"/confirm/held/{token}"),
        mail_client.post(f"/confirm/held/{token}", headers={"accept": "application/json"}),
    ):
        assert response.status_code == status
    answer = mail_client.post(f"/confirm/held/{token}", headers={"accept": "application/json"})
    assert answer.json()["error"]["message"]
    assert snapshot(database) == before
    with database.read() as session:
        pending_after = session.execute(text("SELECT count(*) FROM capture_pending_submissions"))
        assert pending_after.scalar_one() == count_before


def test_one_held_link_posted_twice_at_once_applies_once(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    settings: Settings,
    database: Database,
) -> None:
    post_contact(mail_client, render, VICTIM, ["profiling"], job_title="Analyst")
    post_contact(mail_client, render, VICTIM, ["newsletter", "profiling"], job_title="CEO")
    link = held_link(smtp_server, 1)
    before_score = score(api, VICTIM)
    with database.read() as session:
        entries_before = session.execute(select(func.count()).select_from(ConsentEvent))
        count_before = entries_before.scalar_one()

    barrier = threading.Barrier(2)
    answers: list[str] = []

    def follow(client: TestClient) -> None:
        barrier.wait(timeout=30)
        response = client.post(link)
        answers.append(f"{response.status_code} {one(response.text, 'h1')['text']}")

    with contextlib.ExitStack() as stack:
        blocker = None
        clients = [mail_client, mail_client]
        if database.engine.dialect.name == "postgresql":
            # Two worker processes (two apps, two engines): within one process concurrent
            # writes share one transaction (group commit) and queue in the process;
            # across processes they meet at the row lock. Hold the held row so both
            # requests read it and then both wait to take it: the race happens every
            # run, not by chance.
            other = Database(create_engine_like(database))
            stack.callback(other.dispose)
            other_app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), other)
            clients[1] = stack.enter_context(TestClient(other_app))
            blocker = stack.enter_context(database.engine.connect())
            blocker.execute(text("SELECT 1 FROM capture_pending_submissions FOR UPDATE"))
        threads = [threading.Thread(target=follow, args=(client,)) for client in clients]
        for thread in threads:
            thread.start()
        if blocker is not None:
            wait_for_lock_waiters(blocker, 2)
            blocker.commit()
        for thread in threads:
            thread.join(timeout=60)

    assert sorted(answers) == ["200 Nothing to confirm", "200 Thank you, confirmed"]
    assert score(api, VICTIM) == before_score + 15
    with database.read() as session:
        subject_id = find_subject_id(session, VICTIM)
        titles = session.execute(
            select(Answer.value).where(Answer.subject_id == subject_id, Answer.field == "job_title")
        ).scalars()
        assert sorted(titles) == ["Analyst", "CEO"]
        entries_after = session.execute(select(func.count()).select_from(ConsentEvent))
        assert (
            entries_after.scalar_one() == count_before + 3
        )  # newsletter granted+confirmed, profiling
        assert session.execute(select(PendingSubmission)).first() is None

    # A later click of the same link: nothing left to confirm, nothing changes.
    after = snapshot(database)
    again = mail_client.post(link, headers={"accept": "application/json"})
    assert (again.status_code, again.json()) == (200, {"status": "gone"})
    assert snapshot(database) == after


def create_engine_like(database: Database) -> Engine:
    """Another engine on ``database``'s database: what another worker process has."""
    return make_engine(database.engine.url.render_as_string(hide_password=False))


def wait_for_lock_waiters(connection: Connection, count: int, timeout: float = 30.0) -> None:
    """Until ``count`` other sessions of this database wait on a lock (PostgreSQL)."""
    deadline = time.monotonic() + timeout
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while True:
        # pg_stat_activity is a snapshot per transaction: take a new one every time.
        connection.execute(text("SELECT pg_stat_clear_snapshot()"))
        if connection.execute(query).scalar_one() >= count:
            return
        assert time.monotonic() < deadline, "the two requests never both waited for the held row"
        time.sleep(0.01)
