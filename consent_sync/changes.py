"""The change feed: every consent change, in ledger order, for systems that keep a copy.

A consumer keeps the ``seq`` of the last change it applied and asks for the changes
after it (``GET /api/changes?after=SEQ``); a consumer that was down catches up exactly,
because the ledger's ``seq`` runs without gaps and entries are never changed. A page is
read by walking the ledger's primary key from ``after`` (an index walk, never a scan),
with each entry's lead looked up by primary key.

What a change says: its ``type`` (the ledger action, with a grant that only changes the
topics of a purpose already permitted called ``topic-change``), the lead's pseudonymous
id, the purpose, when, how, and the lead's address. An erased lead's changes, those made
before its erasure included, carry no address: only the pseudonymous id and the SHA-256
of its normalised email (:mod:`consent_sync.erased`), so downstream copies can be found
and deleted (GDPR Art. 17(2), 19) without the feed leaking the address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

import orjson
from sqlalchemy import Table, and_, bindparam, case, func, or_, select
from sqlalchemy.engine import Connection

from consent_ledger.api import ConsentLedger
from consent_ledger.read_model import lead_profiles, leads, ledger_entries
from consent_sync.erased import email_sha256
from consent_sync.models import ErasedAddress
from zeroparty.errors import InvalidInput

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class ChangeType(StrEnum):
    GRANTED = "granted"
    PENDING = "pending"
    """A grant waiting for its double opt-in confirmation: nothing is permitted yet."""
    CONFIRMED = "confirmed"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"
    EXPIRED = "expired"
    GPC_OPT_OUT = "gpc-opt-out"
    TOPIC_CHANGE = "topic-change"
    """A grant re-affirmed with a new topic set while the purpose stayed permitted."""
    ERASED = "erased"


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    type: ChangeType
    lead_id: str
    purpose: str
    occurred_at: datetime
    recorded_at: datetime
    source: str
    method: str
    notice_sha256: str | None
    topics: list[str] | None
    email: str | None
    email_sha256: str | None
    erased: bool


@dataclass(frozen=True, slots=True)
class ChangePage:
    changes: list[Change]
    after: int
    head: int

    @property
    def next_after(self) -> int:
        return self.changes[-1].seq if self.changes else self.after

    @property
    def has_more(self) -> bool:
        return self.next_after < self.head


def parse_page_query(params: Any) -> tuple[int, int]:
    """``after`` (default 0) and ``limit`` (1 to :data:`MAX_LIMIT`, default
    :data:`DEFAULT_LIMIT`) of a feed request; ``InvalidInput`` naming each bad one."""
    errors: dict[str, str] = {}
    after = _whole_number(params.get("after"), 0, "after", errors, "a ledger seq: 0 or more")
    limit = _whole_number(
        params.get("limit"), DEFAULT_LIMIT, "limit", errors, f"a number from 1 to {MAX_LIMIT}"
    )
    if "limit" not in errors and not 1 <= limit <= MAX_LIMIT:
        errors["limit"] = f"must be a number from 1 to {MAX_LIMIT}"
    if errors:
        raise InvalidInput("; ".join(f"{k}: {v}" for k, v in errors.items()), fields=errors)
    return after, limit


def _whole_number(
    raw: str | None, default: int, name: str, errors: dict[str, str], meaning: str
) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        errors[name] = f"must be {meaning}"
        return default
    return int(raw)


_erased = cast(Table, ErasedAddress.__table__)
_e = ledger_entries.alias("e")
_before = ledger_entries.alias("before")

# Whether the pair's previous entry left the purpose permitted (a live grant or a
# confirmation): a grant after it that names topics only changes the topics.
_WAS_LIVE = (
    select(
        case(
            (
                or_(
                    _before.c.action == "confirmed",
                    and_(_before.c.action == "granted", ~_before.c.confirmation_required),
                ),
                1,
            ),
            else_=0,
        )
    )
    .where(
        _before.c.subject_id == _e.c.subject_id,
        _before.c.purpose_key == _e.c.purpose_key,
        # ``+ 0``: not a range of the primary key. A planner that sees "every seq
        # below this one" may walk the primary key down from there (PostgreSQL does on
        # small tables), which at a million entries is a scan; the lead's entries of
        # the purpose are a handful.
        _before.c.seq + 0 < _e.c.seq,
    )
    # In the order of the pair's index (lead, purpose, time, seq): a backward walk of
    # a lead's few entries, stopped at the first.
    .order_by(_before.c.occurred_at.desc(), _before.c.seq.desc())
    .limit(1)
    .correlate(_e)
    .scalar_subquery()
)

PAGE = (
    select(
        _e.c.seq,
        _e.c.subject_id,
        _e.c.purpose_key,
        _e.c.action,
        _e.c.confirmation_required,
        _e.c.notice_sha256,
        _e.c.source,
        _e.c.method,
        _e.c.occurred_at,
        _e.c.recorded_at,
        lead_profiles.c.email,
        leads.c.erased_at,
        _erased.c.email_sha256.label("erased_sha256"),
        _WAS_LIVE.label("was_live"),
    )
    .join(leads, leads.c.subject_id == _e.c.subject_id)
    .outerjoin(lead_profiles, lead_profiles.c.subject_id == _e.c.subject_id)
    .outerjoin(_erased, _erased.c.subject_id == _e.c.subject_id)
    .where(_e.c.seq > bindparam("after"))
    .order_by(_e.c.seq)
    .limit(bindparam("limit"))
)
"""One page of the feed: a walk of the ledger's primary key from ``after``."""

HEAD = select(func.max(ledger_entries.c.seq))
"""The ledger's last ``seq`` (0 when empty): the primary key's end, not a scan."""


def ledger_head(connection: Connection) -> int:
    return int(connection.execute(HEAD).scalar() or 0)


def changes_page(connection: Connection, after: int, limit: int) -> ChangePage:
    """The changes after ``after`` (at most ``limit``), in ledger order. ``after``
    beyond the ledger's head is refused: the consumer's position is from another ledger
    (or a restored backup), and catching up from it would silently miss changes."""
    head = ledger_head(connection)
    if after > head:
        reason = f"is beyond the ledger's head ({head}): nothing was recorded after it yet"
        raise InvalidInput(f"after: {reason}", fields={"after": reason})
    rows = connection.execute(PAGE, {"after": after, "limit": limit}).all()
    grants = [r.seq for r in rows if r.action == "granted"]
    topics = _topics_of(connection, grants)
    changes = [_change(row, topics.get(row.seq)) for row in rows]
    return ChangePage(changes, after, head)


def _topics_of(connection: Connection, seqs: list[int]) -> dict[int, list[str]]:
    """The topic set a grant's evidence names (preference center and forms write it)."""
    found: dict[int, list[str]] = {}
    for seq, body in ConsentLedger.evidence_of(connection, seqs).items():
        named = orjson.loads(body).get("topics")
        if isinstance(named, str):
            found[seq] = sorted(t for t in named.split(",") if t)
        elif isinstance(named, list):
            found[seq] = sorted(str(t) for t in named)
    return found


def _type(row: Any, topics: list[str] | None) -> ChangeType:
    if row.action == "granted":
        if row.confirmation_required:
            return ChangeType.PENDING
        if topics is not None and row.was_live == 1:
            return ChangeType.TOPIC_CHANGE
        return ChangeType.GRANTED
    return ChangeType(row.action)


def _change(row: Any, topics: list[str] | None) -> Change:
    erased = row.erased_at is not None
    if erased or row.email is None:
        email, digest = None, row.erased_sha256
    else:
        email, digest = row.email, email_sha256(row.email)
    return Change(
        seq=row.seq,
        type=_type(row, topics),
        lead_id=row.subject_id,
        purpose=row.purpose_key,
        occurred_at=row.occurred_at,
        recorded_at=row.recorded_at,
        source=row.source,
        method=row.method,
        notice_sha256=row.notice_sha256,
        topics=topics,
        email=email,
        email_sha256=digest,
        erased=erased,
    )
