"""Entries read back from ``consent_events``, in the exact form they were hashed.

The one place that knows how a stored row maps onto :data:`entries.ENTRY_FIELDS`;
verification, the Merkle tree and receipts all read entries through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, select

from consent_ledger.entries import ENTRY_FIELDS, LedgerEntry, canonical_bytes
from consent_ledger.models import ConsentEvent

_ev = cast(Table, ConsentEvent.__table__)

# Columns in ENTRY_FIELDS order, then the stored hash.
HASHED_COLUMNS = (
    _ev.c.seq,
    _ev.c.prev_hash,
    _ev.c.subject_id,
    _ev.c.purpose_key,
    _ev.c.action,
    _ev.c.confirmation_required,
    _ev.c.notice_sha256,
    _ev.c.source,
    _ev.c.source_ref,
    _ev.c.jurisdiction,
    _ev.c.method,
    _ev.c.locale,
    _ev.c.occurred_at,
    _ev.c.recorded_at,
    _ev.c.evidence_sha256,
    _ev.c.hash,
)
_OCCURRED, _RECORDED, _CONFIRM = 12, 13, 5


def entry_select() -> Select[Any]:
    """``SELECT`` of the hashed columns plus ``hash`` (add filters and ordering)."""
    return select(*HASHED_COLUMNS)


def _timestamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hashed_values(row: Sequence[Any]) -> dict[str, Any]:
    """The hashed fields of a row selected by :func:`entry_select` (hash excluded)."""
    values = list(row[: len(ENTRY_FIELDS)])
    values[_CONFIRM] = bool(values[_CONFIRM])
    values[_OCCURRED] = _timestamp(values[_OCCURRED])
    values[_RECORDED] = _timestamp(values[_RECORDED])
    return dict(zip(ENTRY_FIELDS, values, strict=True))


def canonical_of_row(row: Sequence[Any]) -> bytes:
    """The canonical bytes of a stored entry: its hash preimage and its Merkle leaf."""
    return canonical_bytes(hashed_values(row))


def entry_of_row(row: Sequence[Any]) -> LedgerEntry:
    values = list(row)
    return LedgerEntry(
        seq=values[0],
        prev_hash=values[1],
        subject_id=values[2],
        purpose=values[3],
        action=values[4],
        confirmation_required=bool(values[5]),
        notice_sha256=values[6],
        source=values[7],
        source_ref=values[8],
        jurisdiction=values[9],
        method=values[10],
        locale=values[11],
        occurred_at=values[12],
        recorded_at=values[13],
        evidence_sha256=values[14],
        hash=values[15],
    )
