"""The canonical form of a ledger entry and the hash chain over it.

Canonical form: a JSON object of exactly :data:`ENTRY_FIELDS`, keys sorted, no
whitespace, UTF-8; values are strings, integers, booleans or null only (so the bytes
equal RFC 8785 JCS output). Timestamps are RFC 3339 UTC with six fractional digits
(``2026-11-25T14:00:00.000000Z``).

``hash = SHA-256(canonical form)``; the canonical form includes ``prev_hash``, so each
entry commits to the whole history before it. The first entry's ``prev_hash`` is
:data:`GENESIS_HASH`. The same bytes are the Merkle leaf for proofs (RFC 6962).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS_HASH = "0" * 64

ENTRY_FIELDS = (
    "seq",
    "prev_hash",
    "subject_id",
    "purpose",
    "action",
    "confirmation_required",
    "notice_sha256",
    "source",
    "source_ref",
    "jurisdiction",
    "method",
    "locale",
    "occurred_at",
    "recorded_at",
    "evidence_sha256",
)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339, UTC, microseconds, ``Z``: one spelling per instant."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: ledger timestamps are UTC-aware")
    # isoformat: the same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ") in half the time.
    if moment.tzinfo is UTC:  # what the database gives back: "+00:00" becomes "Z"
        return moment.isoformat("T", "microseconds")[:-6] + "Z"
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat("T", "microseconds") + "Z"


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an offset (``Z`` or ``±hh:mm``) to aware UTC."""
    if not isinstance(text, str) or "T" not in text.upper():
        raise ValueError("expected an RFC 3339 timestamp such as 2026-01-31T09:30:00Z")
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError("timestamp needs a UTC offset (Z or +hh:mm)")
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00:00+01:00 lies before year 1 in UTC
        raise ValueError("timestamp out of range") from exc


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """An entry as it is hashed and published (no personal data)."""

    seq: int
    prev_hash: str
    subject_id: str
    purpose: str
    action: str
    confirmation_required: bool
    notice_sha256: str | None
    source: str
    source_ref: str | None
    jurisdiction: str | None
    method: str
    locale: str | None
    occurred_at: datetime
    recorded_at: datetime
    evidence_sha256: str | None
    hash: str

    def canonical(self) -> bytes:
        return canonical_bytes(self.hashed_fields())

    def hashed_fields(self) -> dict[str, Any]:
        values = asdict(self)
        del values["hash"]
        values["occurred_at"] = format_timestamp(self.occurred_at)
        values["recorded_at"] = format_timestamp(self.recorded_at)
        return values

    def as_json(self) -> dict[str, Any]:
        """The entry as the API and exports show it (hashed fields plus ``hash``)."""
        values = self.hashed_fields()
        values["hash"] = self.hash
        return values


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an entry's hashed fields (see module docstring)."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def entry_hash(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


def seal(fields: Mapping[str, Any]) -> str:
    """The hash of an entry given its hashed fields (timestamps already formatted)."""
    return entry_hash(canonical_bytes(fields))


def evidence_commitment(salt: str, body: str) -> str:
    """``SHA-256(salt || body)``: binds the entry to evidence that may later be erased."""
    return hashlib.sha256(salt.encode() + body.encode()).hexdigest()
