"""Appending to the ledger.

Every append runs inside the caller's write transaction and takes the ``ledger_head``
row lock first, so across processes and hosts exactly one writer extends the chain at a
time: ``seq`` has no gaps, no two entries share a predecessor, and the entry, its
evidence, the projection and the head commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from consent_ledger import listeners, projection
from consent_ledger.actions import ConsentAction
from consent_ledger.append_sql import AppendSql, append_sql, driver_cursor
from consent_ledger.entries import LedgerEntry, format_timestamp, seal
from consent_ledger.evidence import EvidenceValue, clean_evidence, seal_evidence
from consent_ledger.models import ConsentEvent, ConsentEvidence, ConsentState, LedgerHead
from zeroparty.db import utcnow

HEAD_ID = 1

_events = cast(Table, ConsentEvent.__table__)
_evidence = cast(Table, ConsentEvidence.__table__)
_state = cast(Table, ConsentState.__table__)
_head = cast(Table, LedgerHead.__table__)

# Statements are built once: building them per call costs more than SQLite's insert.
_LOCK_HEAD = select(_head.c.seq, _head.c.hash).where(_head.c.id == HEAD_ID).with_for_update()
_SELECT_STATE = select(
    _state.c.status,
    _state.c.permitted,
    _state.c.since,
    _state.c.notice_sha256,
    _state.c.last_seq,
    _state.c.last_occurred_at,
).where(_state.c.subject_id == bindparam("sid"), _state.c.purpose_key == bindparam("pk"))
_INSERT_STATE = insert(_state)
_UPDATE_STATE = (
    update(_state)
    .where(_state.c.subject_id == bindparam("sid"), _state.c.purpose_key == bindparam("pk"))
    .values(
        status=bindparam("status"),
        permitted=bindparam("permitted"),
        since=bindparam("since"),
        notice_sha256=bindparam("notice_sha256"),
        last_seq=bindparam("last_seq"),
        last_occurred_at=bindparam("last_occurred_at"),
    )
)
_PAIR_FACTS = (
    select(
        _events.c.seq,
        _events.c.action,
        _events.c.confirmation_required,
        _events.c.notice_sha256,
        _events.c.occurred_at,
    )
    .where(_events.c.subject_id == bindparam("sid"), _events.c.purpose_key == bindparam("pk"))
    .order_by(_events.c.occurred_at, _events.c.seq)
)


class LedgerCorrupt(RuntimeError):
    """The ledger head is missing: the database was not migrated or was tampered with."""


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """An entry before it has a place in the chain. Validated by the caller."""

    subject_id: str
    purpose: str
    action: str
    source: str
    method: str
    occurred_at: datetime
    notice_sha256: str | None = None
    confirmation_required: bool = False
    source_ref: str | None = None
    jurisdiction: str | None = None
    locale: str | None = None
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)


def lock_head(connection: Connection) -> tuple[int, str]:
    """Lock the head row for this transaction; returns the last ``seq`` and ``hash``."""
    head = connection.execute(_LOCK_HEAD).one_or_none()
    if head is None:
        raise LedgerCorrupt("ledger_head row missing: run `zeroparty db upgrade`")
    return int(head.seq), str(head.hash)


def append(session: Session | Connection, draft: EntryDraft) -> LedgerEntry:
    """Append one entry; see :func:`append_many`."""
    return append_many(session, [draft])[0]


def append_many(session: Session | Connection, drafts: Sequence[EntryDraft]) -> list[LedgerEntry]:
    """Append ``drafts`` in order, in the (write) transaction of ``session``: an ORM
    session (:meth:`Database.write`) or a plain connection
    (:meth:`Database.write_connection`, cheaper: appends are Core statements only).

    The caller commits. Until then the head row stays locked, so keep the rest of the
    transaction short.
    """
    if not drafts:
        return []
    connection = session.connection() if isinstance(session, Session) else session
    sql = append_sql(connection.dialect.name)
    with driver_cursor(connection) as cursor:
        cursor.execute(sql.lock_head)
        head = cursor.fetchone()
        if head is None:
            raise LedgerCorrupt("ledger_head row missing: run `zeroparty db upgrade`")
        seq, prev_hash = int(head[0]), str(head[1])
        recorded_at = utcnow()
        entries: list[LedgerEntry] = []
        evidence_rows: list[tuple[object, ...]] = []
        for draft in drafts:
            seq += 1
            commitment = None
            if draft.evidence:
                # Minimised here, at the one place evidence enters the ledger, whoever calls.
                sealed = seal_evidence(clean_evidence(draft.evidence))
                commitment = sealed.commitment
                evidence_rows.append((seq, sealed.salt, sealed.body))
            entry = _sealed_entry(draft, seq, prev_hash, recorded_at, commitment)
            entries.append(entry)
            prev_hash = entry.hash
        bind = sql.bind_time
        cursor.executemany(
            sql.insert_event,
            [
                (
                    e.seq,
                    e.subject_id,
                    e.purpose,
                    e.action,
                    e.confirmation_required,
                    e.notice_sha256,
                    e.source,
                    e.source_ref,
                    e.jurisdiction,
                    e.method,
                    e.locale,
                    bind(e.occurred_at),
                    bind(e.recorded_at),
                    e.evidence_sha256,
                    e.prev_hash,
                    e.hash,
                )
                for e in entries
            ],
        )
        if evidence_rows:
            cursor.executemany(sql.insert_evidence, evidence_rows)
        for entry in entries:
            if not _upsert_state(cursor, sql, entry):
                _project(connection, entry)
        cursor.execute(sql.update_head, (seq, prev_hash))
    if listeners.registered():
        # Derived data (scores) follows a withdrawal in this same transaction (rule 2).
        if isinstance(session, Session):
            listeners.notify(session, entries)
        else:
            # Listeners work with an ORM session. One bound to this connection joins its
            # transaction, and neither commits it nor, when closed, rolls it back.
            with Session(bind=session) as orm:
                listeners.notify(orm, entries)
    return entries


def _sealed_entry(
    draft: EntryDraft, seq: int, prev_hash: str, recorded_at: datetime, commitment: str | None
) -> LedgerEntry:
    fields: dict[str, object] = {
        "seq": seq,
        "prev_hash": prev_hash,
        "subject_id": draft.subject_id,
        "purpose": draft.purpose,
        "action": draft.action,
        "confirmation_required": draft.confirmation_required,
        "notice_sha256": draft.notice_sha256,
        "source": draft.source,
        "source_ref": draft.source_ref,
        "jurisdiction": draft.jurisdiction,
        "method": draft.method,
        "locale": draft.locale,
        "occurred_at": format_timestamp(draft.occurred_at),
        "recorded_at": format_timestamp(recorded_at),
        "evidence_sha256": commitment,
    }
    return LedgerEntry(
        seq=seq,
        prev_hash=prev_hash,
        subject_id=draft.subject_id,
        purpose=draft.purpose,
        action=draft.action,
        confirmation_required=draft.confirmation_required,
        notice_sha256=draft.notice_sha256,
        source=draft.source,
        source_ref=draft.source_ref,
        jurisdiction=draft.jurisdiction,
        method=draft.method,
        locale=draft.locale,
        occurred_at=draft.occurred_at,
        recorded_at=recorded_at,
        evidence_sha256=commitment,
        hash=seal(fields),
    )


def _upsert_state(cursor: Any, sql: AppendSql, entry: LedgerEntry) -> bool:
    """The projection in one statement where that is exact; ``False`` when the entry
    needs :func:`_project` (a confirmation, a grant without notice, or a late entry)."""
    negative = projection.is_negative(entry.action)
    if entry.action == ConsentAction.CONFIRMED or (not negative and entry.notice_sha256 is None):
        return False
    fact = projection.ConsentFact(
        entry.seq,
        entry.action,
        entry.confirmation_required,
        entry.notice_sha256,
        entry.occurred_at,
    )
    new = projection.apply(None, fact)
    bind = sql.bind_time
    cursor.execute(
        sql.upsert_state,
        (
            entry.subject_id,
            entry.purpose,
            new.status,
            new.permitted,
            bind(new.since) if new.since is not None else None,
            new.notice_sha256,
            new.last_seq,
            bind(new.last_occurred_at),
            1 if negative else 0,
        ),
    )
    return cursor.fetchone() is not None


def _project(connection: Connection, entry: LedgerEntry) -> None:
    """Bring ``consent_state`` up to date with ``entry`` (inside the head lock)."""
    pair = {"sid": entry.subject_id, "pk": entry.purpose}
    fact = projection.ConsentFact(
        entry.seq,
        entry.action,
        entry.confirmation_required,
        entry.notice_sha256,
        entry.occurred_at,
    )
    row = connection.execute(_SELECT_STATE, pair).one_or_none()
    if row is None:
        new = projection.apply(None, fact)
        connection.execute(_INSERT_STATE, _state_row(entry.subject_id, entry.purpose, new))
        return
    current = projection.StateValue(*row)
    if projection.comes_after(fact, current):
        new = projection.apply(current, fact)
    else:
        # An entry that happened before the last one applied (consent gathered offline,
        # recorded late): replay the pair in order rather than guess.
        facts = [projection.ConsentFact(*r) for r in connection.execute(_PAIR_FACTS, pair)]
        folded = projection.fold(facts)
        assert folded is not None  # the pair has at least this entry
        new = folded
    connection.execute(_UPDATE_STATE, {**pair, **_state_values(new)})


def _state_values(value: projection.StateValue) -> dict[str, object]:
    return {
        "status": value.status,
        "permitted": value.permitted,
        "since": value.since,
        "notice_sha256": value.notice_sha256,
        "last_seq": value.last_seq,
        "last_occurred_at": value.last_occurred_at,
    }


def _state_row(subject_id: str, purpose: str, value: projection.StateValue) -> dict[str, object]:
    return {"subject_id": subject_id, "purpose_key": purpose, **_state_values(value)}
