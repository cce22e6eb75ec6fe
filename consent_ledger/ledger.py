"""Appending to the ledger.

Every append runs inside the caller's write transaction and takes the ``ledger_head``
row lock first, so across processes and hosts exactly one writer extends the chain at a
time: ``seq`` has no gaps, no two entries share a predecessor, and the entry, its
evidence, the projection and the head commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection

from consent_ledger import listeners as listeners_module
from consent_ledger import projection
from consent_ledger.actions import ConsentAction
from consent_ledger.append_sql import AppendSql, append_sql
from consent_ledger.entries import (
    GENESIS_HASH,
    LedgerEntry,
    canonical_bytes,
    format_timestamp,
    seal,
)
from consent_ledger.evidence import EvidenceValue, clean_evidence, seal_evidence
from consent_ledger.models import ConsentEvent, ConsentEvidence, ConsentState, LedgerHead
from zeroparty.db import Transaction, connection_of, driver_cursor, utcnow

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


# On PostgreSQL, batches up to this size are appended one statement per entry, in one
# pipeline (sql.append_entry); larger ones (imports) are chained here under one lock.
# Each of those statements moves the head, and a row updated N times in one transaction
# leaves N versions that every later look-up in it walks: quadratic for an import of
# 50,000 rows, harmless for a form's few boxes.
ONE_STATEMENT_MAX = 16


NO_HEAD = "ledger_head row missing: run `zeroparty db upgrade`"


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
        raise LedgerCorrupt(NO_HEAD)
    return int(head.seq), str(head.hash)


def append(
    session: Transaction,
    draft: EntryDraft,
    *,
    listeners: Sequence[listeners_module.ConsentListener] = (),
) -> LedgerEntry:
    """Append one entry; see :func:`append_many`."""
    return append_many(session, [draft], listeners=listeners)[0]


def append_many(
    session: Transaction,
    drafts: Sequence[EntryDraft],
    *,
    listeners: Sequence[listeners_module.ConsentListener] = (),
) -> list[LedgerEntry]:
    """Append ``drafts`` in order, in the (write) transaction of ``session``: an ORM
    session (:meth:`Database.write`) or a plain connection
    (:meth:`Database.write_connection`, cheaper: appends are Core statements only).

    The caller commits. Until then the head row stays locked, so keep the rest of the
    transaction short. ``listeners`` are told of the entries in this transaction (the
    :class:`consent_ledger.api.ConsentLedger` passes those the app was built with).
    """
    if not drafts:
        return []
    connection = connection_of(session)
    sql = append_sql(connection.dialect.name)
    recorded_at = utcnow()
    sealed = [_sealed_evidence(draft) for draft in drafts]
    with driver_cursor(connection) as cursor:
        if sql.append_entry is not None and len(drafts) <= ONE_STATEMENT_MAX:
            entries = _append_postgres(connection, cursor, sql, drafts, sealed, recorded_at)
        else:
            entries = _append_chained(connection, cursor, sql, drafts, sealed, recorded_at)
    told = listeners
    if told:
        # Derived data (scores) follows a withdrawal in this same transaction (rule 2).
        # While they run, listeners read the new entries' evidence from memory.
        bodies = {e.seq: s[1][1] if s[1] else None for e, s in zip(entries, sealed, strict=True)}
        reset = _TOLD_EVIDENCE.set(bodies)
        try:
            for listener in told:
                listener(session, entries)
        finally:
            _TOLD_EVIDENCE.reset(reset)
    return entries


# The evidence bodies (JSON text, by seq; None: no evidence) of the entries listeners
# are being told of: what :func:`told_evidence` answers from memory instead of reading
# back what was just written.
_TOLD_EVIDENCE: ContextVar[Mapping[int, str | None] | None] = ContextVar(
    "told_evidence", default=None
)


def told_evidence() -> Mapping[int, str | None]:
    """The evidence bodies of the entries the running listeners are told of, by seq
    (``None``: the entry has none); empty outside a listener call."""
    return _TOLD_EVIDENCE.get() or {}


def _sealed_evidence(draft: EntryDraft) -> tuple[str | None, tuple[str, str] | None]:
    """The commitment to the draft's evidence and its (salt, body), if it has any."""
    if not draft.evidence:
        return None, None
    # Minimised here, at the one place evidence enters the ledger, whoever calls.
    sealed = seal_evidence(clean_evidence(draft.evidence))
    return sealed.commitment, (sealed.salt, sealed.body)


def _hashed_fields(
    draft: EntryDraft, seq: int, prev_hash: str, recorded_at: datetime, commitment: str | None
) -> dict[str, object]:
    return {
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


def _entry(
    draft: EntryDraft,
    seq: int,
    prev_hash: str,
    recorded_at: datetime,
    commitment: str | None,
    entry_hash: str,
) -> LedgerEntry:
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
        hash=entry_hash,
    )


def _event_row(entry: LedgerEntry, bind: Any) -> tuple[object, ...]:
    return (
        entry.seq,
        entry.subject_id,
        entry.purpose,
        entry.action,
        entry.confirmation_required,
        entry.notice_sha256,
        entry.source,
        entry.source_ref,
        entry.jurisdiction,
        entry.method,
        entry.locale,
        bind(entry.occurred_at),
        bind(entry.recorded_at),
        entry.evidence_sha256,
        entry.prev_hash,
        entry.hash,
    )


def _append_chained(
    connection: Connection,
    cursor: Any,
    sql: AppendSql,
    drafts: Sequence[EntryDraft],
    sealed: Sequence[tuple[str | None, tuple[str, str] | None]],
    recorded_at: datetime,
) -> list[LedgerEntry]:
    """Lock the head once, hash the entries here, write them with a few statements and
    move the head once. SQLite (the write transaction began IMMEDIATE, so reading the
    head is enough to own it) and large batches on PostgreSQL (``FOR UPDATE``)."""
    cursor.execute(sql.lock_head)
    head = cursor.fetchone()
    if head is None:
        raise LedgerCorrupt(NO_HEAD)
    seq, prev_hash = int(head[0]), str(head[1])
    entries: list[LedgerEntry] = []
    evidence_rows: list[tuple[object, ...]] = []
    for draft, (commitment, evidence) in zip(drafts, sealed, strict=True):
        seq += 1
        if evidence is not None:
            evidence_rows.append((seq, *evidence))
        fields = _hashed_fields(draft, seq, prev_hash, recorded_at, commitment)
        entry = _entry(draft, seq, prev_hash, recorded_at, commitment, seal(fields))
        entries.append(entry)
        prev_hash = entry.hash
    bind = sql.bind_time
    cursor.executemany(sql.insert_event, [_event_row(e, bind) for e in entries])
    if evidence_rows:
        cursor.executemany(sql.insert_evidence, evidence_rows)
    for entry in entries:
        params = _state_params(sql, entry, entry.seq)
        if params is None:
            _project(connection, entry)
            continue
        cursor.execute(sql.upsert_state, params)
        if cursor.fetchone() is None:
            _project(connection, entry)
    cursor.execute(sql.update_head, (seq, prev_hash))
    return entries


# Placeholders for the two chain fields while the canonical bytes are cut around them.
# In the canonical JSON (keys sorted, no whitespace) a key is preceded by a comma and a
# bare quote, which a string value can never contain unescaped: the cuts are exact.
_PREV_MARK = b',"prev_hash":"' + b"0" * 64 + b'"'
_SEQ_MARK = b',"seq":0,'


def _canonical_parts(fields: dict[str, object]) -> tuple[bytes, bytes, bytes]:
    """The entry's canonical bytes with ``prev_hash`` and ``seq`` cut out (see
    append_sql._postgres_append_entry): ``a + prev_hash + b + str(seq) + c``."""
    data = canonical_bytes({**fields, "prev_hash": GENESIS_HASH, "seq": 0})
    prev_at = data.index(_PREV_MARK) + len(b',"prev_hash":"')
    seq_at = data.index(_SEQ_MARK, prev_at) + len(b',"seq":')
    return data[:prev_at], data[prev_at + 64 : seq_at], data[seq_at + 1 :]


def _append_postgres(
    connection: Connection,
    cursor: Any,
    sql: AppendSql,
    drafts: Sequence[EntryDraft],
    sealed: Sequence[tuple[str | None, tuple[str, str] | None]],
    recorded_at: datetime,
) -> list[LedgerEntry]:
    """PostgreSQL: one statement per entry locks the head, links and writes the entry
    (sql.append_entry); several entries go in one pipeline. Each link the database
    computed is checked here before the caller can commit."""
    assert sql.append_entry is not None
    bind = sql.bind_time
    prepared = []
    rows = []
    for draft, (commitment, evidence) in zip(drafts, sealed, strict=True):
        fields = _hashed_fields(draft, 0, GENESIS_HASH, recorded_at, commitment)
        state = _state_params(sql, draft, 0)
        # The statement takes the projection's values less last_seq (it is the new
        # entry's seq, known there), then do-upsert and wins-ties.
        projection_values = (
            (*state[:6], state[7], True, state[8]) if state else (*(None,) * 7, False, 0)
        )
        prepared.append((draft, fields, commitment))
        rows.append(
            (
                *_canonical_parts(fields),
                draft.subject_id,
                draft.purpose,
                draft.action,
                draft.confirmation_required,
                draft.notice_sha256,
                draft.source,
                draft.source_ref,
                draft.jurisdiction,
                draft.method,
                draft.locale,
                bind(draft.occurred_at),
                bind(recorded_at),
                commitment,
                *(evidence or (None, None)),
                evidence is not None,
                *projection_values,
            )
        )
    if len(rows) == 1:
        cursor.execute(sql.append_entry, rows[0])
        results = [cursor.fetchone()]
    else:
        cursor.executemany(sql.append_entry, rows, returning=True)
        results = [cursor.fetchone()]
        while cursor.nextset():
            results.append(cursor.fetchone())
    entries: list[LedgerEntry] = []
    needs_projection = []
    for (draft, fields, commitment), result in zip(prepared, results, strict=True):
        if result is None:
            raise LedgerCorrupt(NO_HEAD)
        seq, prev_hash, entry_hash, projected = int(result[0]), result[1], result[2], result[3]
        fields["seq"], fields["prev_hash"] = seq, prev_hash
        if seal(fields) != entry_hash:
            raise LedgerCorrupt(f"entry {seq}: the database linked it to a different hash")
        entry = _entry(draft, seq, prev_hash, recorded_at, commitment, entry_hash)
        entries.append(entry)
        if not projected:
            needs_projection.append(entry)
    if len(entries) == 1:
        for entry in needs_projection:
            _project(connection, entry)
    else:
        # The projection of these entries is replayed from the ledger pair by pair, now
        # that every entry of the batch is in: order-independent, so it cannot matter
        # that later entries of the batch were projected before them.
        pairs = {(e.subject_id, e.purpose): None for e in needs_projection}
        for subject_id, purpose in pairs:
            _replay(connection, subject_id, purpose)
    return entries


def _state_params(
    sql: AppendSql, entry: LedgerEntry | EntryDraft, seq: int
) -> tuple[object, ...] | None:
    """``upsert_state``'s parameters for ``entry`` at ``seq``, or ``None`` when the
    projection needs :func:`_project` (a confirmation, or a grant without notice)."""
    negative = projection.is_negative(entry.action)
    if entry.action == ConsentAction.CONFIRMED or (not negative and entry.notice_sha256 is None):
        return None
    fact = projection.ConsentFact(
        seq, entry.action, entry.confirmation_required, entry.notice_sha256, entry.occurred_at
    )
    new = projection.apply(None, fact)
    bind = sql.bind_time
    return (
        entry.subject_id,
        entry.purpose,
        new.status,
        new.permitted,
        bind(new.since) if new.since is not None else None,
        new.notice_sha256,
        new.last_seq,
        bind(new.last_occurred_at),
        1 if negative else 0,
    )


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
        _replay(connection, entry.subject_id, entry.purpose, exists=True)
        return
    connection.execute(_UPDATE_STATE, {**pair, **_state_values(new)})


def _replay(
    connection: Connection, subject_id: str, purpose: str, *, exists: bool | None = None
) -> None:
    """Set the pair's ``consent_state`` to the fold of all its entries."""
    pair = {"sid": subject_id, "pk": purpose}
    facts = [projection.ConsentFact(*r) for r in connection.execute(_PAIR_FACTS, pair)]
    folded = projection.fold(facts)
    assert folded is not None  # the pair has at least the entry being projected
    if exists is None:
        exists = connection.execute(_SELECT_STATE, pair).first() is not None
    if exists:
        connection.execute(_UPDATE_STATE, {**pair, **_state_values(folded)})
    else:
        connection.execute(_INSERT_STATE, _state_row(subject_id, purpose, folded))


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
