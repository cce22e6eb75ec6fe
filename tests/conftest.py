"""Shared fixtures: a fresh, migrated database per test, on SQLite or PostgreSQL.

Which database the suite runs on:
- ``ZEROPARTY_TEST_DB=sqlite`` (default): a template file is migrated and loaded with the
  demo site once per session; each test gets its own copy.
- ``ZEROPARTY_TEST_DB=postgresql``: a template database on ``ZEROPARTY_TEST_POSTGRES_URL``
  (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) is migrated once;
  each test gets ``CREATE DATABASE … TEMPLATE`` of it. Afterwards the database is put
  back to the template's content and reused when its schema is provably untouched
  (``tests/fixtures/pg_reuse.py``), and dropped otherwise.

Each test therefore sees exactly the migrated schema plus the demo site and nothing any
other test wrote (append-only tables cannot be cleaned by DELETE, by design).

Tests that need PostgreSQL skip with a reason when no server answers, unless
``ZEROPARTY_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which turns such skips into
failures so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from consent_ledger.api import ConsentLedger
from tests.fixtures.pg_reuse import TemplateContent, is_superuser
from zeroparty import migrations
from zeroparty.apikeys import create_api_key
from zeroparty.app import create_app
from zeroparty.db import Database, make_engine
from zeroparty.settings import DEFAULT_SITE_FILE, Settings
from zeroparty.site import load_site
from zeroparty.wiring import build_ledger

pytest_plugins = ["tests.fixtures.mail", "tests.fixtures.browser", "tests.fixtures.statements"]

# No timing thresholds in tests (the machines are shared and noisy): hypothesis gets no
# per-example deadline and no "too slow" health check; examples stay bounded in number.
hypothesis_settings.register_profile(
    "zeroparty", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("zeroparty")

TEST_DB = os.environ.get("ZEROPARTY_TEST_DB", "sqlite")
POSTGRES_URL = os.environ.get(
    "ZEROPARTY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_SERVICES = os.environ.get("ZEROPARTY_REQUIRE_SERVICES") == "1"
TEST_SECRET = "test-secret-key-for-zeroparty-suite"


def need_service(reason: str) -> None:
    """Skip (or, in CI, fail) a test whose service is missing."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


def _pg_admin(database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the server's admin database (or to ``database``)."""
    url = make_url(POSTGRES_URL)
    return psycopg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        dbname=database or url.database or "postgres",
        autocommit=True,
        connect_timeout=3,
    )


def postgres_available() -> bool:
    try:
        with _pg_admin():
            return True
    except psycopg.OperationalError:
        return False


def _pg_url(name: str) -> str:
    return (
        make_url(POSTGRES_URL)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


def _prepare(url: str) -> None:
    engine = make_engine(url)
    try:
        migrations.upgrade(engine)
        load_site(Database(engine), DEFAULT_SITE_FILE)
    finally:
        engine.dispose()


class DatabaseFactory:
    """Makes fresh migrated databases from a template, on one backend."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.template: str | None = None
        self._content: TemplateContent | None = None  # PostgreSQL: for reuse
        self._free: list[str] = []  # PostgreSQL databases reset and ready for reuse

    def _ensure_template(self) -> None:
        if self.template is not None:
            return
        if self.backend == "sqlite":
            path = self.workdir / "template.db"
            _prepare(f"sqlite:///{path}")
            self.template = str(path)
            return
        if not postgres_available():
            need_service(f"no PostgreSQL server at {make_url(POSTGRES_URL).host}")
        name = f"zp_tmpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with _pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        _prepare(_pg_url(name))
        self.template = name
        with _pg_admin(name) as connection:
            if is_superuser(connection):
                self._content = TemplateContent.read(connection)

    def new_url(self) -> str:
        self._ensure_template()
        assert self.template is not None
        if self.backend == "sqlite":
            path = self.workdir / f"test_{uuid.uuid4().hex[:12]}.db"
            shutil.copyfile(self.template, path)
            return f"sqlite:///{path}"
        if self._free:
            return _pg_url(self._free.pop())
        name = f"zp_test_{uuid.uuid4().hex[:12]}"
        with _pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return _pg_url(name)

    def drop(self, url: str) -> None:
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(make_url(url).database + suffix).unlink(missing_ok=True)  # type: ignore[operator]
            return
        name = make_url(url).database
        assert name is not None
        if self._reset(name):
            self._free.append(name)
            return
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _reset(self, name: str) -> bool:
        """Put the template's content back into database ``name``; ``False`` when it
        cannot be reused (its schema changed, or it cannot be reached)."""
        if self._content is None:
            return False
        try:
            with _pg_admin() as admin:
                # Connections a test left open (a server it started, a pool) go first.
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
            with _pg_admin(name) as connection:
                return self._content.restore(connection)
        except psycopg.Error:
            return False

    def close(self) -> None:
        if self.backend == "postgresql" and self.template is not None:
            with _pg_admin() as admin:
                for name in [*self._free, self.template]:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._free.clear()


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(TEST_DB, tmp_path_factory.mktemp("databases"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def postgres_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseFactory]:
    """PostgreSQL databases whatever ``ZEROPARTY_TEST_DB`` says (multi-process tests)."""
    if not postgres_available():
        need_service("no PostgreSQL server for a PostgreSQL-only test")
    factory = DatabaseFactory("postgresql", tmp_path_factory.mktemp("pg"))
    yield factory
    factory.close()


@pytest.fixture
def database_url(database_factory: DatabaseFactory) -> Iterator[str]:
    url = database_factory.new_url()
    yield url
    database_factory.drop(url)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url)
    yield db
    db.dispose()


@pytest.fixture
def ledger(database: Database) -> ConsentLedger:
    """The ledger wired with every package's listeners and providers, as the app's."""
    return build_ledger(database)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_keys=(TEST_SECRET,),
        base_url="http://testserver",
        outbox_dir=tmp_path / "outbox",
        api_key_cache_seconds=0,
        checkpoint_key_file=tmp_path / "checkpoint.key",
    )


@pytest.fixture
def app_client(settings: Settings, database: Database) -> Iterator[TestClient]:
    app = create_app(settings, database)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def api_key(database: Database) -> str:
    with database.write() as session:
        return create_api_key(session, f"test-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def api(app_client: TestClient, api_key: str) -> TestClient:
    """A client that sends the API key with every request."""
    app_client.headers["Authorization"] = f"Bearer {api_key}"
    return app_client


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Settings:
    """Point the in-process CLI (``zeroparty.cli.main``) at the test database."""
    monkeypatch.setenv("ZEROPARTY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ZEROPARTY_SECRET_KEYS", TEST_SECRET)
    monkeypatch.setenv("ZEROPARTY_BASE_URL", settings.base_url)
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_KEY_FILE", str(settings.checkpoint_key_file))
    return settings
