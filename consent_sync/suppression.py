"""The suppression list: the SHA-256 of every normalised address that withdrew a purpose
or was erased, for sending tools that must never (re-)add them.

Only digests leave: a sending tool hashes the address it is about to add the same way
(SHA-256 hex of the address as :func:`consent_ledger.api.normalise_email` makes it,
UTF-8) and looks it up. A live lead is listed while its last word on a purpose is a no
(withdrawn, refused, a GPC opt-out); a grant afterwards takes it off again. An erased
lead is listed for good, by the digest kept at its erasure (:mod:`consent_sync.erased`;
leads erased before that digest was kept cannot be listed: nothing of them is left).

Pages walk leads in id order (the primary key of each source), so the list is read in
constant memory however long it is. Each source is walked on its own table alone and the
rest is read for exactly the ids walked, so a page costs the same at every position; a
page may hold fewer entries than ``limit``, even none, with ``next_after`` moving on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Connection

from consent_ledger.read_model import consent_states, lead_profiles, leads, purposes
from consent_sync.erased import email_sha256
from consent_sync.models import ErasedAddress
from zeroparty.errors import InvalidInput, NotFound

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
WITHDRAWALS = ("withdrawn", "refused", "gpc-opt-out")
"""A lead's own no. Expiry is not one: it lapsed by policy, and may be asked again."""


@dataclass(frozen=True, slots=True)
class Suppressed:
    lead_id: str
    email_sha256: str
    reason: str
    """``withdrawn`` (see ``purposes``) or ``erased``."""
    purposes: list[str]
    since: datetime | None


@dataclass(frozen=True, slots=True)
class SuppressionPage:
    entries: list[Suppressed]
    next_after: str | None


def parse_query(params: Any) -> tuple[str, int]:
    after = params.get("after") or ""
    if len(after) > 32 or not ((after.isascii() and after.isalnum()) or after == ""):
        reason = "must be the next_after of the previous page"
        raise InvalidInput(f"after: {reason}", fields={"after": reason})
    raw = params.get("limit") or ""
    if raw == "":
        return after, DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or not 1 <= int(raw) <= MAX_LIMIT:
        reason = f"must be a number from 1 to {MAX_LIMIT}"
        raise InvalidInput(f"limit: {reason}", fields={"limit": reason})
    return after, int(raw)


_erased = cast(Table, ErasedAddress.__table__)
_s = consent_states

# The page's leads from consent_state alone, in its primary key's order. Joined to the
# leads here (to leave erased ones out), PostgreSQL did not carry the bound across the
# join and merge-joined every lead before the page (at 1M leads: 8 ms at the start, 730
# ms three quarters in). Erased leads are left out by _WITHDRAWALS_OF, which reads only
# the ids walked.
_WITHDRAWN_LEADS = (
    select(_s.c.subject_id)
    .where(_s.c.subject_id > bindparam("after"), _s.c.status.in_(WITHDRAWALS))
    .group_by(_s.c.subject_id)
    .order_by(_s.c.subject_id)
    .limit(bindparam("limit"))
)


def _withdrawn_leads(purpose: str | None) -> Any:
    stmt = _WITHDRAWN_LEADS
    return stmt if purpose is None else stmt.where(_s.c.purpose_key == purpose)


_WITHDRAWALS_OF = (
    select(_s.c.subject_id, _s.c.purpose_key, _s.c.since, lead_profiles.c.email)
    .join(lead_profiles, lead_profiles.c.subject_id == _s.c.subject_id)
    .join(leads, leads.c.subject_id == _s.c.subject_id)
    .where(
        _s.c.subject_id.in_(bindparam("sids", expanding=True)),
        _s.c.status.in_(WITHDRAWALS),
        leads.c.erased_at.is_(None),
    )
    .order_by(_s.c.subject_id, _s.c.purpose_key)
)
_ERASED = (
    select(_erased.c.subject_id, _erased.c.email_sha256, _erased.c.erased_at)
    .where(_erased.c.subject_id > bindparam("after"))
    .order_by(_erased.c.subject_id)
    .limit(bindparam("limit"))
)
_PURPOSE = select(purposes.c.key).where(purposes.c.key == bindparam("purpose"))


def check_purpose(connection: Connection, purpose: str | None) -> None:
    """Refuse (404) a purpose the site does not have."""
    if purpose is not None and connection.execute(_PURPOSE, {"purpose": purpose}).first() is None:
        raise NotFound(f"no purpose {purpose[:64]!r}", fields={"purpose": "unknown purpose"})


def read_page(
    connection: Connection, purpose: str | None, after: str, limit: int
) -> SuppressionPage:
    """At most ``limit`` suppressed addresses after lead ``after``, in lead id order,
    and the ``after`` of the next page (``None``: none left). Each source (withdrawals,
    erasures) walks at most ``limit`` leads; the page holds every entry up to where both
    have walked, so it may hold fewer than ``limit``, even none, before the list ends."""
    params = {"after": after, "limit": limit}
    ids = list(connection.execute(_withdrawn_leads(purpose), params).scalars())
    withdrawn: dict[str, Suppressed] = {}
    if ids:
        stmt = _WITHDRAWALS_OF
        if purpose is not None:
            stmt = stmt.where(_s.c.purpose_key == purpose)
        for row in connection.execute(stmt, {"sids": ids}):
            entry = withdrawn.get(row.subject_id)
            if entry is None:
                withdrawn[row.subject_id] = Suppressed(
                    row.subject_id, email_sha256(row.email), "withdrawn", [], row.since
                )
                entry = withdrawn[row.subject_id]
            entry.purposes.append(row.purpose_key)
    erased = [
        Suppressed(r.subject_id, r.email_sha256, "erased", [], r.erased_at)
        for r in connection.execute(_ERASED, params)
    ]
    # A source that filled its page is known up to its last lead; one that did not, to
    # the end. Entries beyond the nearer of those wait for the next page.
    walked = [page[-1] for page in (ids, [e.lead_id for e in erased]) if len(page) == limit]
    known = min(walked) if walked else None
    merged = sorted(
        (e for e in [*withdrawn.values(), *erased] if known is None or e.lead_id <= known),
        key=lambda s: s.lead_id,
    )
    if len(merged) > limit:
        return SuppressionPage(merged[:limit], merged[limit - 1].lead_id)
    return SuppressionPage(merged, known)


def walk(connection: Connection, purpose: str | None) -> Iterator[Suppressed]:
    after = ""
    while True:
        page = read_page(connection, purpose, after, MAX_LIMIT)
        yield from page.entries
        if page.next_after is None:
            return
        after = page.next_after
