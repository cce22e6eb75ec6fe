"""Scratch databases for the benchmarks, and the bare engine the baselines use.

zeroparty's databases are made the way the test fixtures make them: migrated with
:func:`zeroparty.migrations.upgrade` and loaded with the demo ``site.toml``. PostgreSQL
databases are created beside the administrative URL and always dropped afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from zeroparty import migrations
from zeroparty.db import SQLITE_BUSY_TIMEOUT_MS, Database, make_engine
from zeroparty.settings import DEFAULT_SITE_FILE
from zeroparty.site import load_site

SCRATCH_PREFIX = "zp_bench_"


def prepare(url: str) -> None:
    """Migrate the database at ``url`` and load the demo site (as ``tests/conftest.py``)."""
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        load_site(Database(engine), DEFAULT_SITE_FILE)
    finally:
        engine.dispose()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zeroparty-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class SqliteTemplate:
    """A migrated SQLite file copied afresh for every measurement."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "template.db"
        prepare(sqlite_url(self.path))

    def fresh(self) -> str:
        path = self.directory / f"run_{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.path, path)
        return sqlite_url(path)


def _admin(admin_url: str) -> psycopg.Connection[Any]:
    url = make_url(admin_url)
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database or "postgres",
        autocommit=True,
        connect_timeout=3,
    )


def postgres_available(admin_url: str | None) -> bool:
    if admin_url is None:
        return False
    try:
        with _admin(admin_url):
            return True
    except psycopg.OperationalError:
        return False


def postgres_url(admin_url: str, name: str) -> str:
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def create_postgres(admin_url: str, *, template: str | None = None) -> str:
    """Create a scratch database (optionally a copy of ``template``); returns its name."""
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:10]}"
    with _admin(admin_url) as admin:
        suffix = f' TEMPLATE "{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{suffix}')
    return name


def drop_postgres(admin_url: str, name: str) -> None:
    with _admin(admin_url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresTemplate:
    """A migrated PostgreSQL database; each measurement gets a ``TEMPLATE`` copy."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = create_postgres(admin_url)
        self.created: list[str] = []
        try:
            prepare(postgres_url(admin_url, self.name))
        except BaseException:
            self.close()
            raise

    def fresh(self) -> str:
        name = create_postgres(self.admin_url, template=self.name)
        self.created.append(name)
        return postgres_url(self.admin_url, name)

    def close(self) -> None:
        for name in [*self.created, self.name]:
            drop_postgres(self.admin_url, name)
        self.created.clear()


def bare_engine(url: str, *, immediate: bool = True, pool_size: int = 5) -> Engine:
    """A plain SQLAlchemy engine with zeroparty's SQLite pragmas (nothing else of its own).

    With ``immediate``, transactions on SQLite begin with ``BEGIN IMMEDIATE`` like
    zeroparty's writes, so several writer processes queue on the lock the same way;
    without, statements run in SQLite's autocommit mode (a bare reader).
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=4, max_overflow=4)
    engine = create_engine(
        url, connect_args={"check_same_thread": False}, pool_size=pool_size, max_overflow=10
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "secure_delete=ON",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    if immediate:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
