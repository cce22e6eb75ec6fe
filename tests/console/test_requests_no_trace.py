"""An erasure carried out from the request queue leaves no trace in the database's own
files: on PostgreSQL the relation files of every table (and its indexes and TOAST) are
read after a CHECKPOINT, on SQLite the database file and its write-ahead log. A
bystander's address is found in the same bytes, so the search is known to work.

SQLite is scrubbed at once, after the erasure's transaction; on PostgreSQL the erasure
marks the scrub due and the scrub job (``serve``'s, or ``zeroparty ledger scrub``)
rewrites the tables: the test runs it as ``serve`` would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from capture.models import Answer, DefinitionVersion, Submission
from consent_ledger.actions import ConsentMethod
from consent_ledger.erasure import erased_tables
from consent_ledger.models import SubjectProfile
from consent_ledger.scrub import pending, run_scrub
from consent_ledger.subjects import find_subject_id
from tests.consent_ledger.test_erasure_scrub import until_done
from tests.console.conftest import csrf_of
from tests.factories import record
from zeroparty.db import Database
from zeroparty.mail import Mail, queue_mail

EMAIL = "quentin.vanishing-lead@example.net"
NAME = "Quentin Unfindable-Vanisher"
ANSWER = "my secret plan is xylophone-quokka"
TRACES = (EMAIL.encode(), b"quentin.vanishing-lead", NAME.encode(), ANSWER.encode())
BYSTANDER = "bystander-stays@example.com"


def _lead(database: Database) -> str:
    evidence: dict[str, str | int | bool | None] = {"ip": "203.0.113.5", "name": NAME}
    record(database, EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN, evidence=evidence)
    record(database, EMAIL, "profiling", evidence=evidence)
    with database.write() as session:
        subject_id = find_subject_id(session, EMAIL)
        assert subject_id is not None
        session.get_one(SubjectProfile, subject_id).name = NAME
        queue_mail(session, Mail(to=EMAIL, subject=f"Hi {NAME}", text=NAME), subject_id=subject_id)
        definition = session.query(DefinitionVersion).filter_by(slug="contact").first()
        assert definition is not None
        session.add(
            Submission(id="q" * 32, definition_id=definition.id, subject_id=subject_id, locale="en")
        )
        session.flush()
        session.add(
            Answer(submission_id="q" * 32, subject_id=subject_id, field="message", value=ANSWER)
        )
    record(database, BYSTANDER, "newsletter")
    return subject_id


def _postgres_files(database: Database) -> bytes:
    """Every relation file of the test's database (tables, indexes, TOAST), after a
    CHECKPOINT wrote the shared buffers out; skips when they cannot be read here."""
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        try:
            connection.exec_driver_sql("CHECKPOINT")
            data_directory = connection.exec_driver_sql("SHOW data_directory").scalar_one()
        except Exception as exc:
            pytest.skip(f"CHECKPOINT or data_directory not allowed for the test role: {exc}")
        paths = (
            connection.execute(
                text(
                    "SELECT pg_relation_filepath(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND c.relkind IN ('r', 'i', 't') AND pg_relation_filepath(c.oid) IS NOT NULL"
                )
            )
            .scalars()
            .all()
        )
    chunks: list[bytes] = []
    for relative in paths:
        base = Path(data_directory) / relative
        try:
            files = [base, *sorted(base.parent.glob(base.name + ".*"))]
            chunks += [path.read_bytes() for path in files if path.exists()]
        except PermissionError:
            pytest.skip(f"the server's data files are not readable here ({data_directory})")
    if not chunks:
        pytest.skip(f"no relation file found under {data_directory} (not a local server?)")
    return b"".join(chunks)


def _sqlite_files(url: str) -> bytes:
    path = make_url(url).database
    assert path is not None
    return b"".join(
        Path(path + suffix).read_bytes() for suffix in ("", "-wal") if Path(path + suffix).exists()
    )


def _raw(database: Database, url: str) -> bytes:
    if database.dialect == "postgresql":
        return _postgres_files(database)
    database.dispose()  # the test's own pooled connections must not hold old WAL frames
    return _sqlite_files(url)


def test_console_erasure_leaves_no_trace_in_the_files(
    as_role: Callable[[str], TestClient], database: Database, database_url: str
) -> None:
    lead = _lead(database)
    before = _raw(database, database_url)
    for trace in TRACES:  # the search finds the data while it is there
        assert trace in before, trace
    client = as_role("admin")
    csrf = csrf_of(client)
    client.post("/console/requests", data={"csrf": csrf, "email": EMAIL, "kind": "erasure"})
    answer = client.post(
        "/console/requests/1/erase", data={"csrf": csrf, "confirm": "yes"}, follow_redirects=False
    )
    assert answer.status_code == 303
    with database.read() as session:
        assert session.get(SubjectProfile, lead) is None
    report = run_scrub(database, interval=timedelta(hours=1))
    if database.dialect == "postgresql":
        assert report.ran
        assert "subject_profiles" in report.rewritten
        until_done(database, report)
    else:  # done at once, after the erasure committed
        assert not report.ran
        assert report.note == "nothing due"
    assert pending(database) == 0
    after = _raw(database, database_url)
    assert BYSTANDER.encode() in after
    for trace in TRACES:
        assert trace not in after, trace


def test_the_tables_rewritten_on_postgresql(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite zeroes deleted bytes itself (secure_delete)")
    tables = erased_tables(database)
    for table in ("subject_profiles", "consent_evidence", "mail_outbox", "capture_answers"):
        assert table in tables
    assert "consent_events" not in tables  # append-only: nothing is deleted from it
    assert "console_audit_log" not in tables
