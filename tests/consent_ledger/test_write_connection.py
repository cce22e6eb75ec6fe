"""Recording consent on a plain connection (``Database.write_connection()``): the same
entries, projection and guarantees as through an ORM session, for less."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentLedger
from consent_ledger.entries import LedgerEntry
from consent_ledger.listeners import ConsentListener
from consent_ledger.models import ConsentEvent, Subject
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.state import consent_now
from consent_ledger.subjects import ensure_subject, get_or_create_subject
from consent_ledger.verify import verify_ledger
from tests.factories import notice_hash
from tests.fixtures.statements import StatementCounter
from zeroparty.db import Database
from zeroparty.errors import InvalidInput


def _record(
    database: Database, action: ConsentAction, email: str = "ann@example.com"
) -> ConsentRecord:
    granted = action is ConsentAction.GRANTED
    return ConsentRecord(
        email=email,
        purpose="profiling",
        action=action,
        source=ConsentSource.API,
        method=ConsentMethod.CHECKBOX,
        notice_sha256=notice_hash(database, "profiling") if granted else None,
        jurisdiction="DE",
        evidence={"ip": "198.51.100.23", "user_agent": "pytest"},
    )


def _append_then_fail(
    database: Database, record: ConsentRecord, told: Sequence[ConsentListener] = ()
) -> None:
    with database.write_connection() as connection:
        record_consent(connection, record, listeners=told)
        raise RuntimeError("after the append, before the commit")


def _entries(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one())


def test_grant_and_withdrawal_on_a_connection(database: Database) -> None:
    with database.write_connection() as connection:
        granted = record_consent(connection, _record(database, ConsentAction.GRANTED))
    with database.read() as session:
        assert consent_now(session, "ann@example.com", "profiling").permitted
    with database.write_connection() as connection:
        withdrawn = record_consent(connection, _record(database, ConsentAction.WITHDRAWN))
    assert (granted.seq, withdrawn.seq) == (1, 2)
    assert withdrawn.prev_hash == granted.hash
    assert withdrawn.subject_id == granted.subject_id
    with database.read() as session:
        assert not consent_now(session, "ann@example.com", "profiling").permitted
        assert verify_ledger(session.connection()).ok


def test_a_failed_transaction_leaves_nothing(database: Database) -> None:
    with pytest.raises(RuntimeError):
        _append_then_fail(database, _record(database, ConsentAction.GRANTED, "bob@example.com"))
    assert _entries(database) == 0
    with database.read() as session:
        assert session.execute(select(func.count()).select_from(Subject)).scalar_one() == 0
        assert verify_ledger(session.connection()).ok


def test_bad_input_on_a_connection_changes_nothing(database: Database) -> None:
    bad = ConsentRecord(
        email="ann@example.com",
        purpose="profiling",
        action=ConsentAction.GRANTED,
        source=ConsentSource.API,
        method=ConsentMethod.CHECKBOX,
        notice_sha256="0" * 64,
    )
    with pytest.raises(InvalidInput), database.write_connection() as connection:
        record_consent(connection, bad)
    assert _entries(database) == 0


@pytest.fixture
def seen_by_listener() -> tuple[list[tuple[bool, int]], ConsentListener]:
    seen: list[tuple[bool, int]] = []

    def listener(tx: Session | Connection, entries: Sequence[LedgerEntry]) -> None:
        # What a listener writes belongs to the appending transaction; on a plain
        # connection it is given that connection (no ORM session is made for it).
        tx.execute(text("UPDATE subjects SET locale = 'xx'"))
        seen.append((isinstance(tx, Connection), len(entries)))

    return seen, listener


def test_listeners_join_the_connections_transaction(
    database: Database, seen_by_listener: tuple[list[tuple[bool, int]], ConsentListener]
) -> None:
    seen, listener = seen_by_listener
    with database.write_connection() as connection:
        record_consent(connection, _record(database, ConsentAction.GRANTED), listeners=[listener])
    bob = _record(database, ConsentAction.WITHDRAWN, "bob@example.com")
    with pytest.raises(RuntimeError):  # rolls back the entry and what the listener did
        _append_then_fail(database, bob, [listener])
    assert seen == [(True, 1), (True, 1)]
    assert _entries(database) == 1
    with database.read() as session:
        locales = session.execute(select(Subject.locale)).scalars().all()
    assert locales == ["xx"]  # the committed listener write only; bob was rolled back


def test_a_known_lead_takes_a_new_jurisdiction_and_a_missing_locale(database: Database) -> None:
    with database.write_connection() as connection:
        first = ensure_subject(connection, "carl@example.com")
        again = ensure_subject(connection, "carl@example.com", locale="de", jurisdiction="US-CA")
        kept = ensure_subject(connection, "carl@example.com", locale="fr")
    assert first.id == again.id == kept.id
    assert (again.locale, again.jurisdiction) == ("de", "US-CA")
    assert (kept.locale, kept.jurisdiction) == ("de", "US-CA")  # a locale is not replaced
    with database.write() as session:
        subject = get_or_create_subject(session, "carl@example.com", jurisdiction="DE")
        assert (subject.id, subject.locale, subject.jurisdiction) == (first.id, "de", "DE")


def test_a_listener_reads_the_evidence_it_is_told_of_without_reading_it_back(
    database: Database, statement_counter: StatementCounter
) -> None:
    """While listeners run, :meth:`ConsentLedger.evidence_of` answers for the entries
    just appended from memory (the body written, byte for byte), and still reads
    older entries' evidence from the database; outside a listener it reads as before."""
    with database.write_connection() as connection:
        first = record_consent(connection, _record(database, ConsentAction.GRANTED))
    seen: dict[str, Any] = {}

    def listener(session: Session | Connection, entries: Sequence[LedgerEntry]) -> None:
        (entry,) = entries
        with statement_counter.count() as sql:
            seen["own"] = ConsentLedger.evidence_of(session, [entry.seq])
        seen["own_statements"] = len(sql)
        seen["both"] = ConsentLedger.evidence_of(session, [first.seq, entry.seq])
        seen["seq"] = entry.seq

    with database.write_connection() as connection:
        record_consent(connection, _record(database, ConsentAction.WITHDRAWN), listeners=[listener])
    with database.read() as session:
        rows = session.execute(text("SELECT seq, body FROM consent_evidence")).all()
        stored = {int(seq): str(body) for seq, body in rows}
        assert ConsentLedger.evidence_of(session, [first.seq, seen["seq"]]) == stored
    assert seen["own_statements"] == 0
    assert seen["own"] == {seen["seq"]: stored[seen["seq"]]}
    assert seen["both"] == stored
