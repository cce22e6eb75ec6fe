"""SQLite's WAL checkpoints run in serve's job, never in a request's commit."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from consent_ledger.api import ConsentLedger
from consent_ledger.proofs.transparency import SignerSource
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.wal import WalCheckpointJob
from zeroparty.wiring import JobContext, features

BLOB_BYTES = 40_000  # about ten pages per write


def _autocheckpoint(database: Database) -> int:
    with database.engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def _write(database: Database, times: int) -> None:
    """``times`` request-like write transactions of about ten pages each."""
    for _ in range(times):
        with database.write_connection() as connection:
            connection.execute(
                text("INSERT INTO wal_probe (b) VALUES (randomblob(:n))"), {"n": BLOB_BYTES}
            )


def _log_frames(database: Database) -> int:
    """Frames the log file holds now, read from its size (asking SQLite would take a
    checkpoint): 32 bytes of header, then 24 bytes of header per page."""
    with database.engine.connect() as connection:
        page_size = int(connection.exec_driver_sql("PRAGMA page_size").scalar_one())
    try:
        size = os.path.getsize(f"{database.engine.url.database}-wal")
    except OSError:
        return 0
    return max(0, (size - 32) // (page_size + 24))


@pytest.fixture
def sqlite_database(database: Database) -> Database:
    if database.dialect != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's")
    with database.write_connection() as connection:
        connection.execute(text("CREATE TABLE wal_probe (id INTEGER PRIMARY KEY, b BLOB)"))
    return database


def test_serve_runs_wal_checkpoints_as_a_job_on_sqlite_only(
    database: Database, ledger: ConsentLedger, settings: Settings
) -> None:
    context = JobContext(settings, database, ledger, SignerSource(settings, database))
    jobs = [job for part in features() if part.jobs for job in part.jobs(context)]
    names = [job.name for job in jobs]
    if database.dialect == "sqlite":
        assert names.count("sqlite-wal-checkpoints") == 1
    else:
        assert "sqlite-wal-checkpoints" not in names
        database.set_wal_autocheckpoint(0)  # nothing to do on PostgreSQL: no error


def test_served_app_turns_request_checkpoints_off_only_while_it_runs(
    database: Database, settings: Settings
) -> None:
    if database.dialect != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's")
    assert _autocheckpoint(database) == 1000  # the CLI's and the tests' connections
    app = create_app(settings, database, background=True)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert _autocheckpoint(database) == 0  # request connections while serving
    assert _autocheckpoint(database) == 1000
    unserved = create_app(settings, database)
    with TestClient(unserved):
        assert _autocheckpoint(database) == 1000


def test_request_commits_do_not_checkpoint_and_the_job_does(sqlite_database: Database) -> None:
    database = sqlite_database
    job = WalCheckpointJob(database, interval=3600)  # started, but never due in this test
    job.start()
    try:
        _write(database, 200)  # about 2,000 pages: the default would have checkpointed
        frames = _log_frames(database)
        assert frames > 1500  # the log never restarted: no commit copied it back
        assert job.checkpoints == 0

        busy, logged, copied = job.checkpoint()
        assert (busy, copied) == (0, logged)
        assert logged >= frames - 20
        assert job.checkpoints == 1

        # Checkpointed, the log restarts from its beginning: with one run per "second"
        # of writes, it stays one second of writes long however long the load lasts.
        for _ in range(10):
            _write(database, 20)
            _busy, logged, _copied = job.checkpoint()
            assert logged <= 20 * 12
        assert job.checkpoints == 11
        assert _log_frames(database) <= frames  # the file is reused, it never grew again
    finally:
        job.stop()
    assert _autocheckpoint(database) == 1000


def test_without_the_default_requests_never_checkpoint_however_long(
    sqlite_database: Database,
) -> None:
    database = sqlite_database
    database.set_wal_autocheckpoint(0)
    try:
        _write(database, 300)
        assert _log_frames(database) > 2500
    finally:
        database.set_wal_autocheckpoint(None)


def test_the_job_thread_checkpoints_and_truncates_a_long_log(sqlite_database: Database) -> None:
    database = sqlite_database
    job = WalCheckpointJob(database, interval=0.02, truncate_above=1024 * 1024)
    job.start()
    try:
        _write(database, 150)  # about 6 MB of log at most, past the 1 MB bound
        deadline = time.monotonic() + 60
        while job.truncations == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.checkpoints >= 1
        assert job.truncations >= 1
    finally:
        job.stop()
    assert job.wal_bytes() <= 1024 * 1024


def test_truncation_gives_way_to_a_reader(sqlite_database: Database) -> None:
    database = sqlite_database
    job = WalCheckpointJob(database, interval=3600, truncate_above=0)
    database.set_wal_autocheckpoint(0)
    try:
        _write(database, 5)
        reader = database.engine.raw_connection()
        try:
            cursor = reader.cursor()
            cursor.execute("BEGIN")
            cursor.execute("SELECT count(*) FROM wal_probe").fetchone()
            busy, logged, copied = job.checkpoint()  # the reader is at the newest snapshot
            assert (busy, copied) == (0, logged)
            assert job.truncations == 0  # the reader is on the log: not truncated, no wait
            assert job.wal_bytes() > 0
            cursor.execute("ROLLBACK")
            cursor.close()
        finally:
            reader.close()
        job.checkpoint()
        assert job.truncations == 1
        assert job.wal_bytes() == 0
    finally:
        database.set_wal_autocheckpoint(None)
