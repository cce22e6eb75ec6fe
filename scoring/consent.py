"""Is a lead's consent for the gating purpose live, now and when something happened?

Scoring reads ``consent_state`` (the ledger's kept projection) and, where that cannot
answer for a past moment, folds the ledger itself with the same pure function the
projection uses. Each answer names the ledger entry that permitted it.

Locking: writers read the gating state ``FOR SHARE`` on PostgreSQL, so a withdrawal
(which updates that row) and a scoring or dispatch of the same lead are ordered: the
withdrawal waits for the scoring to commit and then removes what it wrote, or the
scoring waits for the withdrawal and sees it. On SQLite writers are serialised anyway.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from consent_ledger.read_model import consent_states
from consent_ledger.state import folded_state_at

_cs = consent_states


@dataclass(frozen=True, slots=True)
class GateState:
    """A lead's current state for the gating purpose."""

    permitted: bool
    since: datetime | None
    last_seq: int
    status: str = "granted"
    """The last effective action (``pending``: a grant awaiting its double opt-in)."""


def gate_states(
    connection: Connection, subject_ids: Collection[str], purpose: str, *, lock: bool = False
) -> dict[str, GateState]:
    """Current gating state of each of ``subject_ids`` (absent: nothing recorded)."""
    if not subject_ids:
        return {}
    stmt = select(
        _cs.c.subject_id, _cs.c.permitted, _cs.c.since, _cs.c.last_seq, _cs.c.status
    ).where(_cs.c.purpose_key == purpose, _cs.c.subject_id.in_(list(subject_ids)))
    if lock and connection.dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    return {
        row.subject_id: GateState(
            bool(row.permitted), row.since, int(row.last_seq), str(row.status)
        )
        for row in connection.execute(stmt)
    }


def permitted_purposes(connection: Connection, subject_id: str) -> set[str]:
    rows = connection.execute(
        select(_cs.c.purpose_key).where(_cs.c.subject_id == subject_id, _cs.c.permitted)
    )
    return {row.purpose_key for row in rows}


def permitted_purposes_of(
    connection: Connection, subject_ids: Collection[str]
) -> dict[str, set[str]]:
    """:func:`permitted_purposes` of many leads in one statement (each id is a key)."""
    permitted: dict[str, set[str]] = {sid: set() for sid in subject_ids}
    if not permitted:
        return permitted
    rows = connection.execute(
        select(_cs.c.subject_id, _cs.c.purpose_key).where(
            _cs.c.subject_id.in_(list(permitted)), _cs.c.permitted
        )
    )
    for row in rows:
        permitted[row.subject_id].add(row.purpose_key)
    return permitted


def permitting_entry(
    connection: Connection, subject_id: str, purpose: str, at: datetime, now: GateState | None
) -> int | None:
    """The ``seq`` of the ledger entry under which ``purpose`` was live at ``at``, or
    ``None`` if it was not (the gating purpose is opt-in: no entry, no permission).

    The kept state answers when the permission that is live now had begun by ``at``;
    otherwise the pair's entries up to ``at`` are folded.
    """
    if now is None:
        return None
    if now.permitted and now.since is not None and now.since <= at:
        return now.last_seq
    state = folded_state_at(connection, subject_id, purpose, at)
    if state is None or not state.permitted:
        return None
    return state.last_seq
