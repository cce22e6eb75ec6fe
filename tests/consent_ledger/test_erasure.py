"""Erasure: every personal datum gone (dump and raw file bytes searched), the
pseudonymous entries kept, ``erased`` recorded, the ledger still verifying."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

import capture.personal
from consent_ledger.actions import ConsentMethod
from consent_ledger.api import ConsentLedger
from consent_ledger.models import ConsentEvent, ConsentEvidence, Subject, SubjectProfile
from consent_ledger.subjects import find_subject_id
from consent_ledger.verify import verify_ledger
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens
from tests.factories import record
from zeroparty import personal_data
from zeroparty.cli import main
from zeroparty.db import Database
from zeroparty.mail import Mail, OutboxMail, queue_mail
from zeroparty.settings import Settings

EMAIL = "zelda.erasable-person@example.org"
NAME = "Zelda Quixotic-Erasable"
TRACES = (EMAIL.encode(), b"zelda.erasable-person", NAME.encode(), b"203.0.113.0/24")
SAME = {"Sec-Fetch-Site": "same-origin"}


def _lead(database: Database) -> str:
    evidence: dict[str, str | int | bool | None] = {
        "ip": "203.0.113.77",
        "user_agent": "Mozilla/5.0 Zelda-Browser",
        "name": NAME,
    }
    record(database, EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN, evidence=evidence)
    record(database, EMAIL, "profiling", evidence=evidence)
    with database.write() as session:
        subject_id = find_subject_id(session, EMAIL)
        assert subject_id is not None
        session.get_one(SubjectProfile, subject_id).name = NAME
        queue_mail(
            session,
            Mail(to=EMAIL, subject=f"Hello {NAME}", text=f"Hi {NAME}"),
            subject_id=subject_id,
        )
    # Someone else stays untouched.
    record(database, "bystander@example.com", "newsletter")
    return subject_id


def _dump(database: Database, url: str) -> bytes:
    """A full SQL dump: ``pg_dump``, or sqlite3's ``.dump`` (``iterdump``)."""
    if database.dialect == "sqlite":
        path = make_url(url).database
        assert path is not None
        with sqlite3.connect(path) as connection:
            return "\n".join(connection.iterdump()).encode()
    parsed = make_url(url)
    result = subprocess.run(
        [
            "pg_dump",
            "-h",
            parsed.host or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            "--no-owner",
            parsed.database or "",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def _raw_files(url: str) -> bytes:
    path = make_url(url).database
    assert path is not None
    return b"".join(
        Path(path + suffix).read_bytes()
        for suffix in ("", "-wal", "-shm")
        if Path(path + suffix).exists()
    )


def _assert_no_trace(database: Database, url: str) -> None:
    dump = _dump(database, url)
    assert b"bystander@example.com" in dump  # the dump really holds the data
    for trace in TRACES:
        assert trace not in dump, trace
    if database.dialect == "sqlite":
        raw = _raw_files(url)
        assert b"bystander@example.com" in raw
        for trace in TRACES:
            assert trace not in raw, trace


def _assert_erased(database: Database, subject_id: str, source: str) -> None:
    with database.read() as session:
        assert session.get(SubjectProfile, subject_id) is None
        assert session.get_one(Subject, subject_id).erased_at is not None
        assert find_subject_id(session, EMAIL) is None
        seqs = select(ConsentEvent.seq).where(ConsentEvent.subject_id == subject_id)
        assert (
            session.execute(
                select(func.count())
                .select_from(ConsentEvidence)
                .where(ConsentEvidence.seq.in_(seqs))
            ).scalar_one()
            == 0
        )
        assert (
            session.execute(
                select(func.count())
                .select_from(OutboxMail)
                .where(OutboxMail.subject_id == subject_id)
            ).scalar_one()
            == 0
        )
        entries = session.execute(
            select(ConsentEvent.purpose_key, ConsentEvent.action, ConsentEvent.source)
            .where(ConsentEvent.subject_id == subject_id)
            .order_by(ConsentEvent.seq)
        ).all()
    # The pseudonymous proof stays, followed by one erased entry per purpose.
    assert [tuple(e) for e in entries] == [
        ("newsletter", "granted", "form"),
        ("profiling", "granted", "form"),
        ("newsletter", "erased", source),
        ("profiling", "erased", source),
    ]
    with database.connect() as connection:
        report = verify_ledger(connection)
    assert report.ok, report.problem


def test_cli_erase_leaves_no_trace(
    cli_env: Settings,
    database: Database,
    database_url: str,
    api: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subject_id = _lead(database)
    erased: list[str] = []

    def erase_answers(_session: Session, sid: str) -> None:
        erased.append(sid)

    # The command's ledger is wired from each package's wiring: capture's part is ours.
    monkeypatch.setattr(
        capture.personal,
        "PROVIDER",
        personal_data.PersonalData("capture", lambda _s, _i: None, erase_answers),
    )
    assert main(["erase", EMAIL.upper()]) == 0
    out = capsys.readouterr().out
    assert "2 erased entries recorded" in out
    assert "capture" in out
    assert "preference_center" in out
    assert "consent_ledger" in out
    assert erased == [subject_id]
    _assert_erased(database, subject_id, "console")
    answer = api.get("/api/consent", params={"email": EMAIL, "purpose": "newsletter"}).json()
    assert answer["permitted"] is False
    database.dispose()  # the test's own pooled connections must not hold old WAL frames
    _assert_no_trace(database, database_url)
    # The lead is gone: a second erase finds nobody.
    assert main(["erase", EMAIL]) == 2
    assert main(["link", EMAIL]) == 2


def test_erase_subject_is_idempotent(database: Database, ledger: ConsentLedger) -> None:
    subject_id = _lead(database)
    with database.write() as session:
        first = ledger.erase(session, subject_id)
    with database.write() as session:
        second = ledger.erase(session, subject_id)
    assert len(first.entries) == 2
    assert second.already_erased
    assert second.entries == []


def test_self_service_erasure(
    settings: Settings, database: Database, database_url: str, app_client: TestClient
) -> None:
    subject_id = _lead(database)
    tokens = LinkTokens(settings)
    manage = tokens.issue(LinkPurpose.MANAGE, LinkClaim(subject_id, 0))
    app_client.get(f"/p/{manage}", headers={"Sec-Fetch-Site": "none"})
    page = app_client.get("/p/").text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    asked = app_client.post("/p/erase", data={"csrf": match.group(1)}, headers=SAME)
    assert asked.status_code == 200
    assert "We have mailed you a link to confirm the erasure" in asked.text
    with database.read() as session:
        mail = session.execute(
            select(OutboxMail).where(OutboxMail.subject.like("Confirm the erasure%"))
        ).scalar_one()
        assert mail.to_address == EMAIL
    link = re.search(r"http://testserver(/p/erase/\S+)", mail.body_text)
    assert link is not None
    # Opening the link (a scanner, or the lead) changes nothing yet.
    confirm = app_client.get(link.group(1))
    assert confirm.status_code == 200
    assert "Yes, erase my data" in confirm.text
    with database.read() as session:
        assert session.get(SubjectProfile, subject_id) is not None
    # Not from another site.
    refused = app_client.post(link.group(1), headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    done = app_client.post(link.group(1), headers=SAME)
    assert done.status_code == 200
    assert "Your data is erased" in done.text
    _assert_erased(database, subject_id, "preference-center")
    # Every earlier link is dead now.
    again = app_client.get(f"/p/{manage}", headers={"Sec-Fetch-Site": "none"})
    assert again.status_code == 410
    assert app_client.post(link.group(1), headers=SAME).status_code == 410
    database.dispose()
    _assert_no_trace(database, database_url)


def test_erase_link_is_not_a_manage_link(
    settings: Settings, database: Database, app_client: TestClient
) -> None:
    subject_id = _lead(database)
    manage = LinkTokens(settings).issue(LinkPurpose.MANAGE, LinkClaim(subject_id, 0))
    response = app_client.post(f"/p/erase/{manage}", headers=SAME)
    assert response.status_code == 400
    assert "token_wrong_purpose" in response.text
    with database.read() as session:
        assert session.get(SubjectProfile, subject_id) is not None
