"""The hash chain as appends build it: seq, links, canonical form, evidence, atomicity."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.entries import (
    ENTRY_FIELDS,
    GENESIS_HASH,
    LedgerEntry,
    evidence_commitment,
    format_timestamp,
    parse_timestamp,
)
from consent_ledger.evidence import EvidenceError, clean_evidence, minimise_ip
from consent_ledger.models import (
    ConsentEvent,
    ConsentEvidence,
    ConsentState,
    LedgerHead,
    Subject,
    SubjectProfile,
)
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.subjects import get_or_create_subject
from consent_ledger.verify import verify_ledger
from tests.factories import notice_hash, record
from zeroparty.db import Database

TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
SHA256_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
BASE = datetime(2026, 1, 1, tzinfo=UTC)

# Every action the ledger knows, in an order that makes sense for one subject.
ALL_ACTIONS = [
    ConsentAction.GRANTED,
    ConsentAction.CONFIRMED,
    ConsentAction.WITHDRAWN,
    ConsentAction.REFUSED,
    ConsentAction.GPC_OPT_OUT,
    ConsentAction.EXPIRED,
    ConsentAction.ERASED,
]


def _stored_entries(database: Database) -> list[LedgerEntry]:
    """The entries as the database holds them, rebuilt field by field."""
    with database.read() as session:
        rows = session.execute(select(ConsentEvent).order_by(ConsentEvent.seq)).scalars().all()
        return [
            LedgerEntry(
                seq=row.seq,
                prev_hash=row.prev_hash,
                subject_id=row.subject_id,
                purpose=row.purpose_key,
                action=row.action,
                confirmation_required=row.confirmation_required,
                notice_sha256=row.notice_sha256,
                source=row.source,
                source_ref=row.source_ref,
                jurisdiction=row.jurisdiction,
                method=row.method,
                locale=row.locale,
                occurred_at=row.occurred_at,
                recorded_at=row.recorded_at,
                evidence_sha256=row.evidence_sha256,
                hash=row.hash,
            )
            for row in rows
        ]


def _head(database: Database) -> tuple[int, str]:
    with database.read() as session:
        head = session.get_one(LedgerHead, ledger.HEAD_ID)
        return head.seq, head.hash


def _counts(database: Database) -> dict[str, int]:
    with database.read() as session:
        return {
            model.__tablename__: session.execute(
                select(func.count()).select_from(model)
            ).scalar_one()
            for model in (
                ConsentEvent,
                ConsentEvidence,
                ConsentState,
                Subject,
                SubjectProfile,
            )
        }


def _subject(database: Database, email: str, jurisdiction: str | None = None) -> str:
    with database.write() as session:
        return get_or_create_subject(session, email, jurisdiction=jurisdiction).id


def _draft(subject_id: str, action: str = "granted", **overrides: object) -> ledger.EntryDraft:
    values: dict[str, object] = {
        "subject_id": subject_id,
        "purpose": "profiling",
        "action": action,
        "source": ConsentSource.API.value,
        "method": ConsentMethod.ELECTRONIC.value,
        "occurred_at": BASE,
        "notice_sha256": "a" * 64 if action == "granted" else None,
    }
    values.update(overrides)
    return ledger.EntryDraft(**values)  # type: ignore[arg-type]


def _record_every_action(database: Database, email: str) -> list[LedgerEntry]:
    entries = []
    for offset, action in enumerate(ALL_ACTIONS):
        system = action in (ConsentAction.EXPIRED, ConsentAction.ERASED)
        with database.write() as session:
            entries.append(
                record_consent(
                    session,
                    ConsentRecord(
                        email=email,
                        purpose="newsletter",
                        action=action,
                        source=ConsentSource.SYSTEM if system else ConsentSource.FORM,
                        method=ConsentMethod.SYSTEM if system else ConsentMethod.CHECKBOX,
                        notice_sha256=(
                            notice_hash(database, "newsletter")
                            if action is ConsentAction.GRANTED
                            else None
                        ),
                        occurred_at=BASE + timedelta(minutes=offset),
                    ),
                )
            )
    return entries


# --- the chain -----------------------------------------------------------------------


def test_every_action_appends_with_contiguous_seq_and_links(database: Database) -> None:
    entries = _record_every_action(database, "every@example.com")

    assert [e.action for e in entries] == [a.value for a in ALL_ACTIONS]
    assert [e.seq for e in entries] == list(range(1, len(ALL_ACTIONS) + 1))
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    assert len({e.hash for e in entries}) == len(entries)
    assert _head(database) == (entries[-1].seq, entries[-1].hash)
    assert _stored_entries(database) == entries


def test_every_action_through_ledger_append(database: Database) -> None:
    subject_id = _subject(database, "raw@example.com")
    appended = []
    for offset, action in enumerate(ALL_ACTIONS):
        with database.write() as session:
            draft = _draft(
                subject_id,
                action.value,
                occurred_at=BASE + timedelta(seconds=offset),
                confirmation_required=action is ConsentAction.GRANTED,
            )
            appended.append(ledger.append(session, draft))

    stored = _stored_entries(database)
    assert stored == appended
    assert [e.seq for e in stored] == list(range(1, 8))
    assert [e.prev_hash for e in stored] == [GENESIS_HASH] + [e.hash for e in stored[:-1]]
    assert stored[0].confirmation_required is True
    with database.connect() as connection:
        assert verify_ledger(connection).ok


def test_hash_is_sha256_of_canonical_form(database: Database) -> None:
    entries = _record_every_action(database, "hash@example.com")
    for entry in [*entries, *_stored_entries(database)]:
        canonical = entry.canonical()
        assert SHA256_HEX_RE.match(entry.hash)
        assert entry.hash == hashlib.sha256(canonical).hexdigest()


def test_canonical_form_is_sorted_compact_json_of_the_entry_fields(database: Database) -> None:
    record(database, "canon@example.com", "profiling", occurred_at=BASE)
    (entry,) = _stored_entries(database)
    canonical = entry.canonical()
    decoded = json.loads(canonical)

    assert list(decoded) == sorted(ENTRY_FIELDS)
    assert "hash" not in decoded
    assert canonical == json.dumps(
        decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert decoded["occurred_at"] == "2026-01-01T00:00:00.000000Z"
    assert TIMESTAMP_RE.match(decoded["recorded_at"])
    assert decoded["seq"] == 1
    assert decoded["prev_hash"] == GENESIS_HASH
    assert decoded["confirmation_required"] is False
    for value in decoded.values():
        assert value is None or isinstance(value, str | int | bool)
    assert entry.as_json() == {**decoded, "hash": entry.hash}


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01T00:00:00.000000Z"),
        (
            datetime(2026, 1, 1, 1, 0, 0, 7, tzinfo=timezone(timedelta(hours=1))),
            "2026-01-01T00:00:00.000007Z",
        ),
        (
            datetime(2025, 12, 31, 19, 30, tzinfo=timezone(timedelta(hours=-4, minutes=-30))),
            "2026-01-01T00:00:00.000000Z",
        ),
        (datetime(2026, 7, 4, 12, 34, 56, 123456, tzinfo=UTC), "2026-07-04T12:34:56.123456Z"),
    ],
)
def test_timestamps_have_one_spelling(moment: datetime, expected: str) -> None:
    assert format_timestamp(moment) == expected
    assert parse_timestamp(expected) == moment


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_timestamp(datetime(2026, 1, 1))


def test_occurred_at_with_an_offset_is_stored_and_hashed_as_utc(database: Database) -> None:
    moment = datetime(2026, 1, 1, 10, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=10)))
    entry = record(database, "offset@example.com", "profiling", occurred_at=moment)
    (stored,) = _stored_entries(database)

    assert stored.occurred_at == moment
    assert stored.occurred_at.utcoffset() == timedelta(0)
    assert json.loads(stored.canonical())["occurred_at"] == "2026-01-01T00:00:00.250000Z"
    assert stored.hash == entry.hash
    # Microseconds survive the database round trip on every backend.
    assert stored.recorded_at == entry.recorded_at


def test_non_ascii_values_are_hashed_as_utf8(database: Database) -> None:
    subject_id = _subject(database, "umlaut@example.com")
    with database.write() as session:
        entry = ledger.append(session, _draft(subject_id, source_ref="Anmeldung: Größe ✓ 日本"))
    (stored,) = _stored_entries(database)
    assert "Anmeldung: Größe ✓ 日本".encode() in stored.canonical()
    assert stored.hash == entry.hash == hashlib.sha256(stored.canonical()).hexdigest()


# --- evidence ------------------------------------------------------------------------


def _evidence_rows(database: Database) -> dict[int, tuple[str, str]]:
    with database.read() as session:
        rows = session.execute(select(ConsentEvidence)).scalars().all()
        return {row.seq: (row.salt, row.body) for row in rows}


def test_evidence_body_is_kept_apart_with_a_salted_commitment(database: Database) -> None:
    evidence: dict[str, str | int | bool | None] = {
        "user_agent": "pytest",
        "page": "https://northwind.example/signup",
        "ip": "203.0.113.0/24",
    }
    first = record(database, "ev1@example.com", "profiling", evidence=evidence)
    second = record(database, "ev2@example.com", "profiling", evidence=evidence)
    bare = record(database, "ev3@example.com", "profiling", evidence={})

    rows = _evidence_rows(database)
    assert set(rows) == {first.seq, second.seq}
    for entry in (first, second):
        salt, body = rows[entry.seq]
        assert re.fullmatch(r"[0-9a-f]{32}", salt)
        assert json.loads(body) == evidence
        assert body == json.dumps(evidence, sort_keys=True, separators=(",", ":"))
        assert entry.evidence_sha256 == evidence_commitment(salt, body)
        assert entry.evidence_sha256 == hashlib.sha256((salt + body).encode()).hexdigest()
        # The hashed entry names the commitment, never the body.
        assert b"pytest" not in entry.canonical()
        assert b"203.0.113" not in entry.canonical()
    # Same body, fresh salt: the commitments cannot be linked or guessed.
    assert rows[first.seq][0] != rows[second.seq][0]
    assert first.evidence_sha256 != second.evidence_sha256
    assert bare.evidence_sha256 is None


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("198.51.100.23", "198.51.100.0/24"),
        ("203.0.113.255", "203.0.113.0/24"),
        (" 10.1.2.3 ", "10.1.2.0/24"),
        ("2001:db8:abcd:12:34:56:78:9a", "2001:db8:abcd::/48"),
        ("2001:0db8:0000:ffff::1", "2001:db8::/48"),
    ],
)
def test_ip_addresses_are_minimised(address: str, network: str) -> None:
    assert minimise_ip(address) == network
    assert clean_evidence({"ip": address})["ip"] == network
    # Minimising twice changes nothing: the API cleans, and the ledger cleans again.
    assert minimise_ip(network) == network


def test_narrow_networks_are_widened_and_wide_ones_kept() -> None:
    assert minimise_ip("198.51.100.128/25") == "198.51.100.0/24"
    assert minimise_ip("10.0.0.0/8") == "10.0.0.0/8"


@pytest.mark.parametrize("bad", ["", "not-an-ip", "999.1.1.1", "198.51.100.0/33", "1.2.3"])
def test_unparseable_ip_evidence_is_refused(bad: str) -> None:
    with pytest.raises(EvidenceError, match="ip"):
        clean_evidence({"ip": bad})


def test_api_minimises_ip_evidence_before_it_is_stored(api: TestClient, database: Database) -> None:
    notice = notice_hash(database, "profiling")
    for email, address, network in [
        ("v4@example.com", "198.51.100.23", "198.51.100.0/24"),
        ("v6@example.com", "2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
    ]:
        response = api.post(
            "/api/consent",
            json={
                "email": email,
                "purpose": "profiling",
                "action": "granted",
                "notice_sha256": notice,
                "source": "crm-import",
                "evidence": {"ip": address, "user_agent": "x" * 400},
            },
        )
        assert response.status_code == 201, response.text
        entry = response.json()
        salt, body = _evidence_rows(database)[entry["seq"]]
        kept = json.loads(body)
        assert kept == {"ip": network, "user_agent": "x" * 256}
        assert address not in body
        assert entry["evidence_sha256"] == evidence_commitment(salt, body)


def test_service_minimises_ip_evidence_before_it_is_stored(database: Database) -> None:
    entry = record(database, "svc@example.com", "profiling", evidence={"ip": "198.51.100.23"})
    _salt, body = _evidence_rows(database)[entry.seq]
    assert json.loads(body)["ip"] == "198.51.100.0/24"


# --- transactions --------------------------------------------------------------------


def test_append_many_is_one_transaction_with_one_chain(database: Database) -> None:
    first = record(database, "before@example.com", "profiling")
    subject_id = _subject(database, "batch@example.com")
    drafts = [
        _draft(subject_id, "granted", occurred_at=BASE, evidence={"ip": "192.0.2.0/24"}),
        _draft(subject_id, "withdrawn", occurred_at=BASE + timedelta(seconds=1)),
        _draft(subject_id, "granted", purpose="newsletter", confirmation_required=True),
        _draft(subject_id, "confirmed", purpose="newsletter"),
    ]
    with database.write() as session:
        batch = ledger.append_many(session, drafts)

    assert [e.seq for e in batch] == [2, 3, 4, 5]
    assert batch[0].prev_hash == first.hash
    for before, after in itertools.pairwise(batch):
        assert after.prev_hash == before.hash
    # One transaction, one clock reading.
    assert len({e.recorded_at for e in batch}) == 1
    assert _stored_entries(database)[1:] == batch
    assert _head(database) == (5, batch[-1].hash)
    assert set(_evidence_rows(database)) == {first.seq, 2}
    with database.read() as session:
        states = {
            s.purpose_key: (s.status, s.permitted, s.last_seq)
            for s in session.execute(
                select(ConsentState).where(ConsentState.subject_id == subject_id)
            ).scalars()
        }
    assert states == {"profiling": ("withdrawn", False, 3), "newsletter": ("confirmed", True, 5)}
    with database.connect() as connection:
        assert verify_ledger(connection).ok


def test_append_many_of_nothing_changes_nothing(database: Database) -> None:
    record(database, "one@example.com", "profiling")
    before = (_head(database), _counts(database))
    with database.write() as session:
        assert ledger.append_many(session, []) == []
    assert (_head(database), _counts(database)) == before


class Boom(Exception):
    """Something going wrong after the append, before the commit."""


def _append_then_fail(database: Database) -> None:
    notice = notice_hash(database, "profiling")
    with database.write() as session:
        entry = record_consent(
            session,
            ConsentRecord(
                email="lost@example.com",
                purpose="profiling",
                action=ConsentAction.GRANTED,
                source=ConsentSource.FORM,
                method=ConsentMethod.CHECKBOX,
                notice_sha256=notice,
                evidence={"ip": "192.0.2.0/24"},
            ),
        )
        assert entry.seq == 2  # appended, and visible inside the transaction
        raise Boom


def test_failing_transaction_leaves_no_entry_and_head_unchanged(database: Database) -> None:
    kept = record(database, "kept@example.com", "profiling")
    before = (_head(database), _counts(database), _stored_entries(database))

    with pytest.raises(Boom):
        _append_then_fail(database)

    assert (_head(database), _counts(database), _stored_entries(database)) == before
    # The next append takes the place the failed one did not keep.
    after = record(database, "next@example.com", "profiling")
    assert after.seq == kept.seq + 1
    assert after.prev_hash == kept.hash


def _append_many(database: Database, drafts: list[ledger.EntryDraft]) -> None:
    with database.write() as session:
        ledger.append_many(session, drafts)


def _create_subject_then_append(database: Database, draft: ledger.EntryDraft) -> None:
    with database.write() as session:
        subject = get_or_create_subject(session, "ghost@example.com")
        ledger.append(session, dataclasses.replace(draft, subject_id=subject.id))


def test_failing_append_many_keeps_none_of_its_entries(database: Database) -> None:
    record(database, "first@example.com", "profiling")
    subject_id = _subject(database, "partial@example.com")
    before = (_head(database), _counts(database), _stored_entries(database))
    drafts = [
        _draft(subject_id, "granted", evidence={"ip": "192.0.2.0/24"}),
        _draft(subject_id, "withdrawn"),
        _draft(subject_id, "granted", purpose="no-such-purpose"),  # foreign key fails
    ]
    with pytest.raises(IntegrityError):
        _append_many(database, drafts)

    assert (_head(database), _counts(database), _stored_entries(database)) == before
    with database.connect() as connection:
        assert verify_ledger(connection).ok


def test_failing_append_rolls_back_a_subject_created_in_the_same_transaction(
    database: Database,
) -> None:
    before = _counts(database)
    with pytest.raises(IntegrityError):
        _create_subject_then_append(database, _draft("", purpose="no-such-purpose"))
    assert _counts(database) == before
    assert _head(database) == (0, GENESIS_HASH)
