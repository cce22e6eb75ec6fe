"""Faults: the database gone, locked, full or read-only; the SMTP server down.

While a fault lasts, every request that would write answers a clear error (503, JSON
for machines, an HTML page for people), never a 2xx, and nothing is written. When the
fault ends the service works again by itself: no restart, no operator. Mail queued
while SMTP was down stays in ``mail_outbox`` and is delivered exactly once when it
comes back, even with several deliverers at once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry
from starlette.testclient import TestClient

import zeroparty.db
import zeroparty.mail
from capture.tokens import CaptureTokens, RenderToken
from tests.conftest import TEST_DB, TEST_SECRET, _pg_admin
from tests.fixtures.mail import SmtpServer
from tests.reliability.live import (
    FormTokens,
    ServeProcess,
    assert_no_personal_data,
    client_address,
    contact_submission,
    free_port,
    service_env,
    sqlite_integrity,
    verify_ledger_cli,
)
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.mail import OutboxMail, deliver_pending, transport_for
from zeroparty.settings import Settings

WRITE_TABLES = ("consent_events", "capture_submissions", "subject_profiles", "mail_outbox")
RECOVERY_TIMEOUT_S = 30.0


def _counts(database: Database) -> dict[str, int]:
    with database.read() as session:
        return {
            t: int(session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in WRITE_TABLES
        }


def _submit(client: Any, tokens: FormTokens, n: int, *, html: bool = False) -> Any:
    email = f"fault-{n}-{uuid.uuid4().hex[:6]}@example.com"
    if html:
        body = contact_submission(email, tokens.fresh())
        form = {**body["fields"], "consent": body["consent"], "_rt": body["render_token"]}
        return client.post(
            "/f/contact",
            data=form,
            headers={"Accept": "text/html", **client_address(n)},
            follow_redirects=False,
        )
    return client.post(
        "/f/contact",
        json=contact_submission(email, tokens.fresh()),
        headers={"Accept": "application/json", **client_address(n)},
    )


def _assert_unavailable_json(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "unavailable"


def _assert_unavailable_html(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "unavailable" in answer.text


# --- PostgreSQL: the database goes away under a running service ----------------------


@pytest.mark.postgres_only
def test_postgresql_outage_answers_503_and_recovers_by_itself(
    database_url: str, serve_process: Callable[..., ServeProcess]
) -> None:
    if TEST_DB != "postgresql":
        pytest.skip("runs in the PostgreSQL pass (ZEROPARTY_TEST_DB=postgresql)")
    name = make_url(database_url).database
    database = Database.from_url(database_url)
    server = serve_process(database_url, workers=2).start()
    tokens = FormTokens(server.url, "contact")
    try:
        with httpx2.Client(base_url=server.url, timeout=30) as client:
            for n in range(5):  # warm every worker's pool
                assert _submit(client, tokens, n).status_code == 201
            before = _counts(database)
            database.dispose()
            with _pg_admin() as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
            try:
                for n in range(10, 16):
                    _assert_unavailable_json(_submit(client, tokens, n))
                _assert_unavailable_html(_submit(client, tokens, 20, html=True))
                _assert_unavailable_html(client.get("/f/newsletter"))
                health = client.get("/healthz")
                assert health.status_code == 503
                assert health.json()["status"] == "unavailable"
            finally:
                with _pg_admin() as admin:
                    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert _counts(database) == before  # nothing written while it was down

            deadline = time.monotonic() + RECOVERY_TIMEOUT_S
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.2)
            for n in range(30, 40):  # every worker, every pooled connection: recovered
                answer = _submit(client, tokens, n)
                assert answer.status_code == 201, answer.text
    finally:
        database.dispose()
    server.stop()
    verify_ledger_cli(server.env)
    assert_no_personal_data(server.logs())


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("closed-port", id="postgresql-closed-port"),
        pytest.param("sqlite-missing-dir", id="sqlite-unopenable-file"),
    ],
)
def test_unreachable_database_answers_503_everywhere(url: str, tmp_path: Path) -> None:
    if url == "closed-port":
        database_url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
    else:
        database_url = f"sqlite:///{tmp_path}/no/such/dir/zeroparty.db"
    settings = Settings(
        database_url=database_url,
        secret_keys=(TEST_SECRET,),
        checkpoint_key_file=tmp_path / "checkpoint.key",
    )
    app = create_app(settings)
    shown = RenderToken(1, time.time() - 60, {"newsletter": "0" * 64}, "0" * 32)
    render_token = CaptureTokens((TEST_SECRET,)).issue_render(shown)
    with TestClient(app, raise_server_exceptions=False) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        _assert_unavailable_html(client.get("/f/contact"))
        _assert_unavailable_json(client.get("/f/contact", headers={"Accept": "application/json"}))
        _assert_unavailable_json(
            client.post(
                "/f/contact",
                json={
                    "fields": {"email": "a@example.com", "message": "m"},
                    "consent": [],
                    "render_token": render_token,
                },
            )
        )
        _assert_unavailable_json(
            client.get(
                "/api/consent?email=a@example.com&purpose=newsletter",
                headers={"Authorization": "Bearer zp_whatever"},
            )
        )


# --- SQLite: the file locked by another process, full, read-only ------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite file, whatever ``ZEROPARTY_TEST_DB`` says (file faults)."""
    from tests.conftest import DatabaseFactory

    factory = DatabaseFactory("sqlite", tmp_path)
    url = factory.new_url()
    yield url
    factory.drop(url)


class FaultySqlite:
    """Pragmas applied to every connection the app checks out, changeable at run time."""

    def __init__(self, database: Database) -> None:
        self.pragmas: list[str] = []
        event.listen(database.engine, "checkout", self._on_checkout)

    def _on_checkout(self, dbapi_connection: Any, _record: ConnectionPoolEntry,
                     _proxy: Any) -> None:  # fmt: skip
        cursor = dbapi_connection.cursor()
        for pragma in self.pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()


def _sqlite_app(url: str, tmp_path: Path) -> tuple[Database, FaultySqlite, Any]:
    database = Database.from_url(url)
    faults = FaultySqlite(database)
    settings = Settings(
        database_url=url,
        secret_keys=(TEST_SECRET,),
        base_url="http://testserver",
        outbox_dir=tmp_path / "outbox",
        checkpoint_key_file=tmp_path / "checkpoint.key",
    )
    return database, faults, create_app(settings, database)


@pytest.mark.parametrize(
    ("fault", "heal"),
    [
        # "Disk full": the file may not grow past its current size.
        pytest.param("max_page_count={pages}", "max_page_count=1073741823", id="full"),
        # "Unwritable file": tests run as root, whom file modes do not stop, so the
        # connection is made read-only instead (SQLITE_READONLY, as for a 0444 file).
        pytest.param("query_only=1", "query_only=0", id="read-only"),
    ],
)
def test_sqlite_full_or_read_only_answers_503_then_recovers(
    sqlite_file: str, tmp_path: Path, fault: str, heal: str
) -> None:
    database, faults, app = _sqlite_app(sqlite_file, tmp_path)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            tokens = FormTokens(client, "contact")
            assert _submit(client, tokens, 1).status_code == 201
            with database.read() as session:
                pages = int(session.execute(text("PRAGMA page_count")).scalar_one())
            faults.pragmas = [fault.format(pages=pages)]
            before = _counts(database)
            refused = 0
            for n in range(2, 60):  # the file fills up within a few submissions
                answer = _submit(client, tokens, n)
                if answer.status_code == 503:
                    _assert_unavailable_json(answer)
                    refused += 1
                else:
                    assert answer.status_code == 201, answer.text
            assert refused > 0
            _assert_unavailable_html(_submit(client, tokens, 99, html=True))
            after_fault = _counts(database)
            assert after_fault["consent_events"] - before["consent_events"] == 2 * (58 - refused)

            faults.pragmas = [heal]
            for n in range(100, 105):
                assert _submit(client, tokens, n).status_code == 201
    finally:
        database.dispose()
    sqlite_integrity(sqlite_file)
    verify_ledger_cli(service_env(sqlite_file, tmp_path))


def test_sqlite_locked_by_another_process_answers_503_then_recovers(
    sqlite_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    # The app waits this long for SQLite's write lock before giving up (30 s in
    # production, shortened so the test does not wait for it).
    monkeypatch.setattr(zeroparty.db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    database, _faults, app = _sqlite_app(sqlite_file, tmp_path)
    holder = sqlite3.connect(sqlite_file.removeprefix("sqlite:///"), isolation_level=None)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            tokens = FormTokens(client, "contact")
            assert _submit(client, tokens, 1).status_code == 201
            before = _counts(database)
            holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                _assert_unavailable_json(_submit(client, tokens, 2))
                _assert_unavailable_html(_submit(client, tokens, 3, html=True))
                # Readers are not blocked (WAL): the form still shows, look-ups answer.
                assert client.get("/f/contact").status_code == 200
            finally:
                holder.execute("ROLLBACK")
            assert _counts(database) == before
            assert _submit(client, tokens, 4).status_code == 201
    finally:
        holder.close()
        database.dispose()
    sqlite_integrity(sqlite_file)


# --- SMTP down: mail waits in the outbox and goes out exactly once ----------------------


@pytest.mark.parametrize("outage", ["refusing", "no-server"])
def test_mail_queued_while_smtp_is_down_is_delivered_exactly_once(
    settings: Settings,
    database: Database,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    outage: str,
) -> None:
    down_url = smtp_server.url if outage == "refusing" else f"smtp://127.0.0.1:{free_port()}"
    smtp_server.refuse(outage == "refusing")
    app = create_app(dataclasses.replace(settings, smtp_url=down_url), database)
    with TestClient(app) as client:
        tokens = FormTokens(client, "contact")
        for n in range(3):
            answer = _submit(client, tokens, n)  # newsletter: a confirmation mail each
            assert answer.status_code == 201, answer.text
            assert answer.json()["consent"] == ["newsletter", "profiling"]
    with database.read() as session:
        rows = list(session.query(OutboxMail))
    assert len(rows) == 3
    assert all(r.sent_at is None and r.attempts == 1 and r.last_error for r in rows)
    assert smtp_server.messages == []

    # The server is back; the retry is due (the clock moved past the backoff). Several
    # deliverers (workers, hosts) run at once: each mail still goes out once.
    smtp_server.refuse(False)
    later = zeroparty.mail.utcnow() + timedelta(hours=1)
    monkeypatch.setattr(zeroparty.mail, "utcnow", lambda: later)
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    sent: list[int] = []
    deliverers = [
        threading.Thread(target=lambda: sent.append(deliver_pending(database, transport)))
        for _ in range(3)
    ]
    for thread in deliverers:
        thread.start()
    for thread in deliverers:
        thread.join(timeout=60)
    assert sum(sent) == 3
    assert len(smtp_server.wait_for(3)) == 3
    assert deliver_pending(database, transport) == 0
    time.sleep(0.2)
    assert len(smtp_server.messages) == 3
    assert len({str(m["To"]) for m in smtp_server.messages}) == 3
    with database.read() as session:
        assert all(r.sent_at is not None for r in session.query(OutboxMail))
