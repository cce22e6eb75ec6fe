"""Online backups taken under write load restore, and the restored ledger verifies.

SQLite: ``zeroparty db backup PATH`` (SQLite's backup API) and ``VACUUM INTO``, each
while ``serve`` takes submissions; the copy passes ``PRAGMA integrity_check`` and
``zeroparty ledger verify``. PostgreSQL: ``pg_dump -Fc`` while ``serve`` takes
submissions, ``pg_restore`` into a new database, ``ledger verify`` there. This is the
procedure ``docs/operations.md`` documents.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import TEST_DB, DatabaseFactory, _pg_admin, _pg_url
from tests.reliability.live import (
    FormTokens,
    ServeProcess,
    client_address,
    contact_submission,
    run_cli,
    service_env,
    sqlite_integrity,
    verify_ledger_cli,
)


@contextmanager
def write_load(server: ServeProcess, minimum: int = 30) -> Iterator[list[int]]:
    """Submissions from two client threads for as long as the block runs (and at
    least ``minimum`` of them before it starts); yields the running count."""
    tokens = FormTokens(server.url, "contact")
    done = [0]
    stop = threading.Event()
    started = threading.Event()

    def submit(n: int) -> None:
        with httpx2.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                email = f"backup-{uuid.uuid4().hex[:10]}@example.com"
                answer = client.post(
                    "/f/contact",
                    json=contact_submission(email, tokens.fresh()),
                    headers=client_address(n * 100_000 + done[0]),
                )
                assert answer.status_code == 201, answer.text
                done[0] += 1
                if done[0] >= minimum:
                    started.set()

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    started.wait(timeout=120)
    try:
        yield done
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def _sqlite_only() -> None:
    if TEST_DB != "sqlite":
        pytest.skip("runs in the SQLite pass (ZEROPARTY_TEST_DB=sqlite)")


@pytest.mark.parametrize("method", ["cli-backup-api", "vacuum-into"])
def test_sqlite_online_backup_under_load_restores_and_verifies(
    database_url: str, serve_process: Callable[..., ServeProcess], tmp_path: Path, method: str
) -> None:
    _sqlite_only()
    server = serve_process(database_url, workers=2).start()
    copy = tmp_path / "backup.db"
    with write_load(server) as done:
        at_start = done[0]
        if method == "cli-backup-api":
            result = run_cli(server.env, "db", "backup", str(copy))
            assert result.returncode == 0, result.stderr
            assert "ledger entries" in result.stdout
        else:
            source = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
            try:
                source.execute("VACUUM INTO ?", (str(copy),))
            finally:
                source.close()
        during = done[0] - at_start
    server.stop()
    assert during >= 0
    # Restore: the copy is a database file; put it where the service expects one.
    restored = tmp_path / "restored.db"
    shutil.copyfile(copy, restored)
    url = f"sqlite:///{restored}"
    sqlite_integrity(url)
    verify_ledger_cli(service_env(url, tmp_path))
    # And the service runs on it.
    again = serve_process(url).start()
    assert httpx2.get(again.url + "/healthz").status_code == 200


def test_cli_backup_refuses_an_existing_file_and_postgresql(tmp_path: Path) -> None:
    existing = tmp_path / "there.db"
    existing.write_bytes(b"")
    env = service_env(f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    result = run_cli(env, "db", "backup", str(existing))
    assert result.returncode == 2
    assert "exists" in result.stderr
    env = service_env("postgresql+psycopg://postgres@127.0.0.1:1/none", tmp_path)
    result = run_cli(env, "db", "backup", str(tmp_path / "new.db"))
    assert result.returncode == 2
    assert "pg_dump" in result.stderr


def test_postgresql_pg_dump_under_load_restores_and_verifies(
    database_url: str, serve_process: Callable[..., ServeProcess], tmp_path: Path,
    database_factory: DatabaseFactory,
) -> None:  # fmt: skip
    if TEST_DB != "postgresql":
        pytest.skip("runs in the PostgreSQL pass (ZEROPARTY_TEST_DB=postgresql)")
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if not (pg_dump and pg_restore):
        pytest.skip("pg_dump / pg_restore not installed (apt-get install postgresql-client)")
    url = make_url(database_url)
    server = serve_process(database_url, workers=2).start()
    dump = tmp_path / "zeroparty.dump"
    connection = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
                  "-U", url.username or "postgres"]  # fmt: skip
    with write_load(server):
        subprocess.run(
            [pg_dump, *connection, "-Fc", "-f", str(dump), str(url.database)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    server.stop()
    name = f"zp_restored_{uuid.uuid4().hex[:8]}"
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(
            [pg_restore, *connection, "--no-owner", "-d", name, str(dump)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        restored = _pg_url(name)
        verify_ledger_cli(service_env(restored, tmp_path))
    finally:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
