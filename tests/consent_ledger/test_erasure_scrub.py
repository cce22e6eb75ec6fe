"""The scrub after erasure (consent_ledger.scrub), on both databases.

On PostgreSQL an erasure only marks the scrub due, in its own transaction; the scrub job
rewrites the tables (``VACUUM FULL``) at most once per interval, for every erasure since
its last run, waits for each table's lock at most its lock timeout and leaves the scrub
due when a lock was not granted. On SQLite the write-ahead log is truncated at once after
the erasure; the job does it again when that could not be done (readers active, or the
process stopped between the commit and the scrub). Statements are counted, never timed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from starlette.testclient import TestClient

from consent_ledger.api import ConsentLedger
from consent_ledger.erasure import erased_tables, scrub_after_erasure
from consent_ledger.models import ErasureScrub, SubjectProfile
from consent_ledger.scrub import ScrubReport, pending, run_scrub
from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens
from tests.factories import record
from zeroparty.cli import main
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings, SettingsError

HOUR = timedelta(hours=1)
RETRIES = 100
SAME = {"Sec-Fetch-Site": "same-origin"}


class Statements:
    """Every statement any engine sends while the test runs (the CLI opens its own)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)

    @property
    def vacuums(self) -> list[str]:
        return [s for s in self.seen if s.lstrip().upper().startswith("VACUUM")]

    @property
    def checkpoints(self) -> list[str]:
        return [s for s in self.seen if "wal_checkpoint" in s]


@pytest.fixture
def statements() -> Iterator[Statements]:
    seen = Statements()
    event.listen(Engine, "before_cursor_execute", seen)
    yield seen
    event.remove(Engine, "before_cursor_execute", seen)


def _lead(database: Database, n: int) -> str:
    email = f"scrub-{n}@example.net"
    record(database, email, "newsletter")
    with database.read() as session:
        subject_id = find_subject_id(session, email)
    assert subject_id is not None
    return subject_id


def until_done(database: Database, report: ScrubReport, now: datetime | None = None) -> int:
    """Run the scrub again (forced, at ``now``) while a run kept dead rows, and return how
    many runs it took. On a test server shared with other test sessions, a transaction
    open in another database holds back the rewrite's own snapshot, so ``VACUUM FULL``
    rightly keeps rows deleted after it began: the scrub stays due until the next run
    (``test_rows_an_older_transaction_still_sees_keep_the_scrub_due`` shows it)."""
    runs = 1
    while report.kept and not report.failed and runs < RETRIES:
        time.sleep(0.1)  # let the other session's transaction end; no timing is asserted
        report = run_scrub(database, interval=HOUR, now=now, force=True)
        runs += 1
    assert report.done, report
    return runs


def _erase(database: Database, ledger: ConsentLedger, subject_id: str) -> None:
    with database.write() as session:
        ledger.erase(session, subject_id)


def test_an_erasure_marks_the_scrub_due_and_rewrites_nothing(
    database: Database, ledger: ConsentLedger, statements: Statements
) -> None:
    subject_id = _lead(database, 1)
    assert pending(database) == 0
    _erase(database, ledger, subject_id)
    assert pending(database) == 1  # recorded in the erasure's own transaction
    with database.read() as session:
        row = session.get_one(ErasureScrub, 1)
        assert row.due_since is not None
        assert row.last_run_at is None
    assert scrub_after_erasure(database)  # what every caller runs after the commit
    assert statements.vacuums == []
    if database.dialect == "postgresql":
        assert pending(database) == 1  # the job's to do
    else:
        assert len(statements.checkpoints) == 1  # SQLite: cheap, done at once
        assert pending(database) == 0
    # Erasing again erases nothing and marks nothing.
    _erase(database, ledger, subject_id)
    assert pending(database) == (1 if database.dialect == "postgresql" else 0)


def test_the_job_scrubs_once_for_several_erasures(
    database: Database, ledger: ConsentLedger, statements: Statements
) -> None:
    leads = [_lead(database, n) for n in range(3)]
    for subject_id in leads:  # no scrub after them (on SQLite: as if the process stopped)
        _erase(database, ledger, subject_id)
    assert pending(database) == 3
    start = utcnow()
    report = run_scrub(database, interval=HOUR, now=start)
    assert report.ran
    assert report.erasures == 3
    runs = until_done(database, report, start)
    assert pending(database) == 0
    if database.dialect == "postgresql":
        tables = erased_tables(database)
        assert sorted(report.rewritten) == tables
        # Each table rewritten once per run for the three erasures together.
        one_run = [f'VACUUM (FULL, VERBOSE) "{t}"' for t in tables]
        assert sorted(statements.vacuums) == sorted(one_run * runs)
    else:
        assert statements.vacuums == []
        assert len(statements.checkpoints) == 1
    # Nothing due: the job does nothing.
    statements.seen.clear()
    assert not run_scrub(database, interval=HOUR, now=start + 2 * HOUR).ran
    assert statements.vacuums == []
    assert statements.checkpoints == []
    if database.dialect != "postgresql":
        return
    # A new erasure within the interval waits for it; then one rewrite again.
    _erase(database, ledger, _lead(database, 9))
    early = run_scrub(database, interval=HOUR, now=start + timedelta(minutes=30))
    assert not early.ran
    assert early.erasures == 1
    assert early.note.startswith("not before")
    assert statements.vacuums == []
    assert pending(database) == 1
    later = run_scrub(database, interval=HOUR, now=start + HOUR)
    assert later.ran
    runs = until_done(database, later, start + HOUR)
    assert len(statements.vacuums) == len(erased_tables(database)) * runs
    assert pending(database) == 0
    with database.read() as session:
        row = session.get_one(ErasureScrub, 1)
        assert row.due_since is None
        assert row.last_done_at == start + HOUR


def test_a_lock_not_granted_leaves_the_scrub_due(
    database: Database,
    ledger: ConsentLedger,
    statements: Statements,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subject_id = _lead(database, 1)
    start = utcnow()
    if database.dialect == "sqlite":
        monkeypatch.setattr("zeroparty.db.SQLITE_BUSY_TIMEOUT_MS", 100)
        database.dispose()
    with database.engine.connect() as other:
        # A long transaction holding a snapshot (SQLite) / a lock on the table (PostgreSQL).
        other.execute(text("SELECT count(*) FROM subject_profiles")).scalar_one()
        _erase(database, ledger, subject_id)
        if database.dialect == "postgresql":
            report = run_scrub(database, interval=HOUR, now=start, lock_timeout="200ms")
            assert report.ran
            assert not report.done
            assert report.failed == ["subject_profiles"]
            assert "consent_evidence" in report.rewritten
        else:
            assert not scrub_after_erasure(database)  # readers active: not truncated
            report = run_scrub(database, interval=HOUR, now=start)
            assert report.ran
            assert not report.done
        assert pending(database) == 1
        other.rollback()
    if database.dialect == "postgresql":
        # Retried on the next run, not before the interval.
        assert not run_scrub(database, interval=HOUR, now=start + timedelta(minutes=1)).ran
    statements.seen.clear()
    retry = run_scrub(database, interval=HOUR, now=start + HOUR)
    assert retry.ran
    assert retry.failed == []
    runs = until_done(database, retry, start + HOUR)
    assert pending(database) == 0
    if database.dialect == "postgresql":
        assert "subject_profiles" in retry.rewritten
        assert len(statements.vacuums) == len(erased_tables(database)) * runs


def test_rows_an_older_transaction_still_sees_keep_the_scrub_due(
    database: Database, ledger: ConsentLedger
) -> None:
    """VACUUM FULL copies deleted rows a still-open transaction's snapshot may see: the
    scrub is not done while a transaction older than the erasure is open."""
    if database.dialect != "postgresql":
        pytest.skip("PostgreSQL only: SQLite zeroes deleted bytes at once (secure_delete)")
    subject_id = _lead(database, 1)
    start = utcnow()
    with database.engine.connect() as other:
        other.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        other.execute(text("SELECT count(*) FROM purposes")).scalar_one()  # its snapshot
        _erase(database, ledger, subject_id)
        report = run_scrub(database, interval=HOUR, now=start)
        assert report.ran
        assert not report.done
        assert "subject_profiles" in report.kept
        assert "consent_evidence" in report.kept
        assert report.failed == []
        assert pending(database) == 1
        other.rollback()
    retry = run_scrub(database, interval=HOUR, now=start + HOUR)
    assert retry.ran
    until_done(database, retry, start + HOUR)
    assert pending(database) == 0


def test_the_self_service_erasure_request_does_no_vacuum(
    settings: Settings,
    database: Database,
    app_client: TestClient,
    statements: Statements,
) -> None:
    subject_id = _lead(database, 1)
    link = LinkTokens(settings).issue(LinkPurpose.ERASE, LinkClaim(subject_id, 0))
    statements.seen.clear()
    done = app_client.post(f"/p/erase/{link}", headers=SAME)
    assert done.status_code == 200
    assert "Your data is erased" in done.text
    with database.read() as session:
        assert session.get(SubjectProfile, subject_id) is None
    assert statements.vacuums == []
    if database.dialect == "postgresql":
        assert pending(database) == 1
        until_done(database, run_scrub(database, interval=HOUR))  # serve's job, later
    assert pending(database) == 0


def test_ledger_scrub_command(
    cli_env: Settings, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    record(database, "cli-scrub@example.net", "newsletter")
    assert main(["ledger", "scrub"]) == 0
    assert "nothing to scrub" in capsys.readouterr().out
    assert main(["erase", "cli-scrub@example.net"]) == 0
    capsys.readouterr()
    code = main(["ledger", "scrub"])
    out = capsys.readouterr()
    if database.dialect == "postgresql":
        assert "scrubbed after 1 erasure(s): rewrote" in out.out
        assert "subject_profiles" in out.out
        if code:  # dead rows kept for another session's transaction: said, and still due
            assert "the scrub stays due" in out.err
            assert pending(database) == 1
            until_done(database, run_scrub(database, interval=HOUR, force=True))
    else:
        assert code == 0
        assert "nothing to scrub" in out.out  # the erase command truncated the WAL already
    assert pending(database) == 0


def test_the_interval_setting() -> None:
    assert Settings.from_env({}).erasure_scrub_minutes == 60.0
    assert Settings.from_env({"ZEROPARTY_ERASURE_SCRUB_MINUTES": "15"}).erasure_scrub_minutes == 15
    for bad in ("0", "-5", "hourly"):
        with pytest.raises(SettingsError, match="ZEROPARTY_ERASURE_SCRUB_MINUTES"):
            Settings.from_env({"ZEROPARTY_ERASURE_SCRUB_MINUTES": bad})


def test_serve_runs_the_scrub_as_a_job(database: Database, settings: Settings) -> None:
    from consent_ledger.proofs.transparency import SignerSource
    from zeroparty.wiring import JobContext, build_ledger, features

    context = JobContext(
        settings, database, build_ledger(database), SignerSource(settings, database)
    )
    jobs = [job for part in features() if part.jobs for job in part.jobs(context)]
    (scrub,) = [job for job in jobs if job.name == "erasure-scrub"]
    assert scrub.interval == 60.0
