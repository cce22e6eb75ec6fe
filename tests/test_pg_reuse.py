"""The PostgreSQL test-database reuse (``tests/fixtures/pg_reuse.py``) gives each test
what a fresh copy of the template would, or refuses to reuse the database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import DatabaseFactory, _pg_admin
from tests.factories import notice_hash
from tests.fixtures.pg_reuse import TemplateContent, fingerprint
from zeroparty.db import Database


@pytest.fixture
def fresh(postgres_factory: DatabaseFactory) -> Iterator[str]:
    url = postgres_factory.new_url()
    yield url
    postgres_factory.drop(url)


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _template(factory: DatabaseFactory) -> TemplateContent:
    assert factory.template is not None
    with _pg_admin(factory.template) as connection:
        return TemplateContent.read(connection)


def test_reset_restores_rows_and_sequences(postgres_factory: DatabaseFactory, fresh: str) -> None:
    from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
    from consent_ledger.services import ConsentRecord, record_consent

    database = Database.from_url(fresh)
    try:
        with database.write() as session:
            record_consent(
                session,
                ConsentRecord(
                    email="reuse@example.com",
                    purpose="profiling",
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.API,
                    method=ConsentMethod.CHECKBOX,
                    notice_sha256=notice_hash(database, "profiling"),
                ),
            )
    finally:
        database.dispose()
    template = _template(postgres_factory)
    with _pg_admin(_name(fresh)) as connection:
        assert TemplateContent.read(connection) != template
        assert template.restore(connection)
        assert TemplateContent.read(connection) == template


def test_a_changed_schema_is_not_reused(postgres_factory: DatabaseFactory, fresh: str) -> None:
    template = _template(postgres_factory)
    with _pg_admin(_name(fresh)) as connection:
        before = fingerprint(connection)
        connection.execute("ALTER TABLE consent_events DISABLE TRIGGER USER")
        assert fingerprint(connection) != before
        assert not template.restore(connection)
