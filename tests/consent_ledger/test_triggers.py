"""Append-only tables are guarded by the database itself, not only by the ORM.

Every refused statement runs against one filled database, each in its own transaction
(subtests), and the tables are compared before and after: nothing may have changed.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from consent_ledger.actions import ConsentAction
from consent_ledger.models import ConsentEvent, NoticeVersion
from consent_ledger.verify import verify_ledger
from tests.factories import record
from zeroparty.db import Database

APPEND_ONLY_MESSAGE = "append-only"
APPEND_ONLY_TABLES = ("consent_events", "notice_versions")

CHANGES = [
    "UPDATE consent_events SET action = 'granted' WHERE seq = 3",
    "UPDATE consent_events SET hash = prev_hash WHERE seq = 1",
    "UPDATE consent_events SET seq = seq + 100",
    "UPDATE consent_events SET occurred_at = recorded_at WHERE seq = 2",
    "UPDATE consent_events SET evidence_sha256 = NULL",
    "DELETE FROM consent_events WHERE seq = 3",
    "DELETE FROM consent_events WHERE seq = 2",
    "DELETE FROM consent_events",
    "UPDATE notice_versions SET text = 'You agree to everything.'",
    "UPDATE notice_versions SET sha256 = 'f' || substr(sha256, 2) WHERE id = 1",
    "UPDATE notice_versions SET version = version + 1 WHERE id = 1",
    "DELETE FROM notice_versions WHERE id = 1",
    "DELETE FROM notice_versions",
]

TRUNCATES = [
    "TRUNCATE consent_events CASCADE",
    "TRUNCATE consent_events, consent_evidence",
    "TRUNCATE notice_versions",
    "TRUNCATE notice_versions CASCADE",
    "TRUNCATE notice_versions, consent_events CASCADE",
]


def _snapshot(database: Database) -> dict[str, list[Any]]:
    with database.connect() as connection:
        return {
            table: [
                tuple(row) for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
            ]
            for table in APPEND_ONLY_TABLES
        }


def _assert_intact(database: Database, before: dict[str, list[Any]]) -> None:
    assert _snapshot(database) == before
    with database.connect() as connection:
        report = verify_ledger(connection)
    assert report.problem is None, report.problem


@pytest.fixture
def filled(database: Database) -> Database:
    """A ledger with a few entries (with and without evidence) beside the demo notices."""
    record(database, "a@example.com", "profiling")
    record(database, "b@example.com", "newsletter", evidence={})
    record(database, "a@example.com", "profiling", ConsentAction.WITHDRAWN)
    return database


def _execute_and_commit(database: Database, statement: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(text(statement))


def test_update_and_delete_are_refused_by_the_database(
    filled: Database, subtests: pytest.Subtests
) -> None:
    before = _snapshot(filled)
    assert before["consent_events"]
    assert before["notice_versions"]
    for statement in CHANGES:
        with subtests.test(statement=statement):
            with filled.engine.connect() as connection:
                with pytest.raises(DatabaseError, match=APPEND_ONLY_MESSAGE):
                    connection.execute(text(statement))
                connection.rollback()
            # A transaction that tries to commit the statement commits nothing of it.
            with pytest.raises(DatabaseError, match=APPEND_ONLY_MESSAGE):
                _execute_and_commit(filled, statement)
            _assert_intact(filled, before)


def test_refusal_rolls_back_the_rest_of_the_transaction(filled: Database) -> None:
    before = _snapshot(filled)
    insert = (
        "INSERT INTO notice_versions (purpose_key, locale, version, text, sha256, created_at) "
        "SELECT purpose_key, locale, version + 100, text, sha256, created_at "
        "FROM notice_versions WHERE id = 1"
    )
    with pytest.raises(DatabaseError, match=APPEND_ONLY_MESSAGE):
        _insert_then_delete(filled, insert)
    _assert_intact(filled, before)


def _insert_then_delete(database: Database, insert: str) -> None:
    with database.engine.begin() as connection:
        connection.execute(text(insert))
        connection.execute(text("DELETE FROM consent_events WHERE seq = 1"))


def test_orm_changes_are_refused_too(filled: Database, subtests: pytest.Subtests) -> None:
    before = _snapshot(filled)
    for change in ("update-event", "delete-event", "update-notice", "delete-notice"):
        with subtests.test(change=change):
            with pytest.raises(DatabaseError, match=APPEND_ONLY_MESSAGE):
                _orm_change(filled, change)
            _assert_intact(filled, before)


def _orm_change(database: Database, change: str) -> None:
    with database.write() as session:
        event = session.execute(select(ConsentEvent).where(ConsentEvent.seq == 1)).scalar_one()
        notice = session.execute(select(NoticeVersion).limit(1)).scalar_one()
        if change == "update-event":
            event.action = "withdrawn"
        elif change == "delete-event":
            session.delete(event)
        elif change == "update-notice":
            notice.text = "Something else entirely."
        else:
            session.delete(notice)


def test_inserts_are_still_allowed(filled: Database) -> None:
    """The guard is against change, not growth: the ledger and notices grow by INSERT."""
    before = _snapshot(filled)["notice_versions"]
    _execute_and_commit(
        filled,
        "INSERT INTO notice_versions (purpose_key, locale, version, text, sha256, created_at) "
        "SELECT purpose_key, locale, version + 1, text || ' (v2)', sha256, created_at "
        "FROM notice_versions WHERE id = 1",
    )
    assert len(_snapshot(filled)["notice_versions"]) == len(before) + 1
    record(filled, "c@example.com", "profiling")
    assert len(_snapshot(filled)["consent_events"]) == 4


def test_triggers_exist_for_both_tables(database: Database) -> None:
    with database.connect() as connection:
        for table in APPEND_ONLY_TABLES:
            if database.dialect == "sqlite":
                query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"
                expected = {f"{table}_no_update", f"{table}_no_delete"}
            else:
                query = (
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:t AS regclass) "
                    "AND NOT tgisinternal AND tgenabled = 'O'"
                )
                expected = {f"{table}_no_change", f"{table}_no_truncate"}
            names = set(connection.execute(text(query), {"t": table}).scalars())
            assert names == expected, table


def test_truncate_is_refused_on_postgresql(filled: Database, subtests: pytest.Subtests) -> None:
    if filled.dialect != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's; SQLite has only DELETE, refused above")
    before = _snapshot(filled)
    for statement in TRUNCATES:
        with subtests.test(statement=statement):
            with filled.engine.connect() as connection:
                with pytest.raises(DatabaseError, match=APPEND_ONLY_MESSAGE):
                    connection.execute(text(statement))
                connection.rollback()
            _assert_intact(filled, before)
