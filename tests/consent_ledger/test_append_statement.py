"""The append statements: on PostgreSQL one statement links each entry (the database
fills in ``seq`` and ``prev_hash`` and hashes the canonical bytes), and a new lead is
created with the profile in one round trip. The chain must come out exactly as
``entries.seal`` computes it, whatever the entry's text holds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.entries import canonical_bytes, format_timestamp
from consent_ledger.models import ConsentEvent, ConsentEvidence, LedgerHead, Subject
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.subjects import create_subject, ensure_subject
from consent_ledger.verify import verify_ledger
from tests.factories import notice_hash
from zeroparty.db import Database

# Text that imitates the keys the canonical bytes are cut at.
TRICKY = (
    ',"prev_hash":"' + "0" * 64 + '",',
    ',"seq":0,',
    '"seq":0',
    "\\",
    'quote " and backslash \\ and ünïcødé ✓ and \u2028',
)


def _fields(source_ref: str | None, seq: int, prev_hash: str) -> dict[str, object]:
    moment = format_timestamp(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    return {
        "seq": seq,
        "prev_hash": prev_hash,
        "subject_id": "a" * 32,
        "purpose": "newsletter",
        "action": "granted",
        "confirmation_required": False,
        "notice_sha256": "b" * 64,
        "source": "api",
        "source_ref": source_ref,
        "jurisdiction": "DE",
        "method": "checkbox",
        "locale": "de",
        "occurred_at": moment,
        "recorded_at": moment,
        "evidence_sha256": None,
    }


@given(
    source_ref=st.one_of(st.none(), st.text(max_size=60), st.sampled_from(TRICKY)),
    seq=st.integers(min_value=1, max_value=2**63 - 1),
    prev_hash=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
)
def test_canonical_parts_put_together_give_the_canonical_bytes(
    source_ref: str | None, seq: int, prev_hash: str
) -> None:
    fields = _fields(source_ref, seq, prev_hash)
    before, middle, after = ledger._canonical_parts(fields)
    assembled = before + prev_hash.encode() + middle + str(seq).encode() + after
    assert assembled == canonical_bytes(fields)


def _draft(subject_id: str, source_ref: str | None, offset: int = 0) -> ledger.EntryDraft:
    return ledger.EntryDraft(
        subject_id=subject_id,
        purpose="profiling",
        action=ConsentAction.WITHDRAWN.value,
        source=ConsentSource.API.value,
        method=ConsentMethod.CHECKBOX.value,
        occurred_at=datetime.now(UTC) - timedelta(minutes=offset),
        source_ref=source_ref,
        evidence={"ip": "198.51.100.7", "user_agent": source_ref or "pytest"},
    )


def test_entries_with_tricky_text_chain_and_verify(database: Database) -> None:
    with database.write_connection() as connection:
        subject = ensure_subject(connection, "tricky@example.com")
    for source_ref in TRICKY:
        with database.write_connection() as connection:
            ledger.append(connection, _draft(subject.id, source_ref))
    with database.write_connection() as connection:
        batch = ledger.append_many(
            connection, [_draft(subject.id, ref, offset) for offset, ref in enumerate(TRICKY)]
        )
    assert [e.seq for e in batch] == list(range(len(TRICKY) + 1, 2 * len(TRICKY) + 1))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(batch))
    with database.connect() as connection:
        report = verify_ledger(connection)
    assert report.ok, report
    assert report.entries == 2 * len(TRICKY)


def test_a_link_that_does_not_check_out_is_refused(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the bytes the database hashes ever differ from the canonical form, the
    append fails before anything is committed (PostgreSQL: the database computes the
    link; SQLite: Python does, so the check has nothing to catch there)."""
    if database.dialect != "postgresql":
        pytest.skip("the link is computed by the database on PostgreSQL only")
    with database.write_connection() as connection:
        subject = ensure_subject(connection, "mismatch@example.com")

    def wrong_parts(fields: dict[str, object]) -> tuple[bytes, bytes, bytes]:
        before, middle, after = real_parts(fields)
        return before, middle + b" ", after

    real_parts = ledger._canonical_parts
    monkeypatch.setattr(ledger, "_canonical_parts", wrong_parts)
    with (
        pytest.raises(ledger.LedgerCorrupt, match="linked it to a different hash"),
        database.write_connection() as connection,
    ):
        ledger.append(connection, _draft(subject.id, "x"))
    with database.read() as session:
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(ConsentEvidence)).scalar_one() == 0
        assert session.execute(select(LedgerHead.seq)).scalar_one() == 0


def test_create_subject_for_a_new_email(database: Database) -> None:
    with database.write_connection() as connection:
        created = create_subject(
            connection, "new@example.com", name="New", locale="de", jurisdiction="DE"
        )
    with database.write_connection() as connection:
        again = ensure_subject(connection, "new@example.com")
    assert again == created
    with database.read() as session:
        subject = session.get_one(Subject, created.id)
        assert (subject.locale, subject.jurisdiction) == ("de", "DE")
        assert subject.created_at.tzinfo is not None


def test_a_new_lead_by_record_consent_gets_subject_profile_and_entry(database: Database) -> None:
    record = ConsentRecord(
        email="fresh@example.com",
        purpose="profiling",
        action=ConsentAction.GRANTED,
        source=ConsentSource.API,
        method=ConsentMethod.CHECKBOX,
        notice_sha256=notice_hash(database, "profiling"),
        jurisdiction="FR",
        locale="fr",
        name="Fresh",
    )
    with database.write_connection() as connection:
        entry = record_consent(connection, record)
    with database.write_connection() as connection:
        known = ensure_subject(connection, "fresh@example.com")
    assert known.id == entry.subject_id
    assert (known.locale, known.jurisdiction) == ("fr", "FR")
    assert (entry.seq, entry.jurisdiction, entry.locale) == (1, "FR", "fr")


def test_create_subject_yields_to_a_lead_that_exists(database: Database) -> None:
    """On PostgreSQL another transaction may have created the lead after the caller's
    look-up; the profile insert yields and that lead is used, no orphan left behind.
    (On SQLite the IMMEDIATE transaction rules that out, and the insert would fail.)"""
    if database.dialect != "postgresql":
        pytest.skip("SQLite's IMMEDIATE write transaction keeps other writers out")
    with database.write_connection() as connection:
        first = ensure_subject(connection, "twice@example.com", jurisdiction="DE")
    with database.write_connection() as connection:
        second = create_subject(connection, "twice@example.com", jurisdiction="FR")
    assert second == first
    with database.read() as session:
        assert session.execute(select(func.count()).select_from(Subject)).scalar_one() == 1


def test_a_batch_larger_than_one_pipeline_chains_under_one_lock(database: Database) -> None:
    """Imports append thousands of entries in one transaction: beyond
    ``ONE_STATEMENT_MAX`` they are chained in Python under one head lock (the head moves
    once), with late entries and confirmations projected as for small batches."""
    with database.write_connection() as connection:
        subject = ensure_subject(connection, "batch@example.com")
    notice = notice_hash(database, "profiling")
    size = ledger.ONE_STATEMENT_MAX * 2 + 3
    drafts = [
        ledger.EntryDraft(
            subject_id=subject.id,
            purpose="profiling",
            action=(ConsentAction.GRANTED if k % 3 else ConsentAction.WITHDRAWN).value,
            source=ConsentSource.IMPORT.value,
            method=ConsentMethod.CHECKBOX.value,
            # Out of order on purpose: some entries happened before earlier ones.
            occurred_at=datetime.now(UTC) - timedelta(minutes=(k * 7) % size),
            notice_sha256=notice if k % 3 else None,
            source_ref=f"line {k}",
            evidence={"ip": "198.51.100.7"} if k % 2 else {},
        )
        for k in range(size)
    ]
    with database.write_connection() as connection:
        entries = ledger.append_many(connection, drafts)
    assert [e.seq for e in entries] == list(range(1, size + 1))
    with database.read() as session:
        head = session.execute(select(LedgerHead.seq, LedgerHead.hash)).one()
    assert (head.seq, head.hash) == (entries[-1].seq, entries[-1].hash)
    with database.connect() as connection:
        report = verify_ledger(connection)
    assert report.ok, report
