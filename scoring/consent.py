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

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, bindparam, cast, or_, select
from sqlalchemy.engine import Connection

from consent_ledger.api import ConsentLedger
from consent_ledger.read_model import consent_states
from scoring.models import ScoringModelVersion
from zeroparty.db import Prepared

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
    stmt = _GATES
    if lock and connection.dialect.name == "postgresql":
        stmt = _GATES_LOCKED
    return {
        row.subject_id: GateState(
            bool(row.permitted), row.since, int(row.last_seq), str(row.status)
        )
        for row in stmt.execute(connection, {"purpose": purpose, "ids": sorted(subject_ids)})
    }


# On the driver's cursor: every event batch asks this.
_GATES_SELECT = select(
    _cs.c.subject_id, _cs.c.permitted, _cs.c.since, _cs.c.last_seq, _cs.c.status
).where(
    _cs.c.purpose_key == bindparam("purpose"),
    _cs.c.subject_id.in_(bindparam("ids", expanding=True)),
)
_GATES = Prepared(_GATES_SELECT)
_GATES_LOCKED = Prepared(_GATES_SELECT.with_for_update(read=True))


_PERMITTED = select(_cs.c.purpose_key).where(
    _cs.c.subject_id == bindparam("subject_id"), _cs.c.permitted
)


def permitted_purposes(connection: Connection, subject_id: str) -> set[str]:
    return set(connection.execute(_PERMITTED, {"subject_id": subject_id}).scalars())


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


def permitting_entries(
    connection: Connection,
    purpose: str,
    moments: Iterable[tuple[str, datetime]],
    gates: Mapping[str, GateState],
) -> dict[tuple[str, datetime], int | None]:
    """For each ``(subject_id, at)``: the ``seq`` of the ledger entry under which
    ``purpose`` was live at ``at``, or ``None`` if it was not (the gating purpose is
    opt-in: no entry, no permission). ``gates``: the leads' current states.

    The kept state answers when the permission that is live now had begun by ``at``;
    the other moments are answered by the ledger, in one statement for all of them."""
    found: dict[tuple[str, datetime], int | None] = {}
    folded: list[tuple[str, datetime]] = []
    for subject_id, at in moments:
        now = gates.get(subject_id)
        if now is None:
            found[(subject_id, at)] = None
        elif now.permitted and now.since is not None and now.since <= at:
            found[(subject_id, at)] = now.last_seq
        else:
            folded.append((subject_id, at))
    if folded:
        found.update(ConsentLedger.permitting_entries(connection, purpose, folded))
    return found


# "id:sha256" of the latest scoring model: a column hot queries carry, so a process
# confirms its cached model without a statement of its own (scoring.services).
LATEST_MODEL_KEY = (
    select(cast(ScoringModelVersion.id, String) + ":" + ScoringModelVersion.sha256)
    .order_by(ScoringModelVersion.id.desc())
    .limit(1)
    .scalar_subquery()
)


def gates_and_permitted(
    connection: Connection, subject_ids: Collection[str], purpose: str, *, lock: bool = False
) -> tuple[dict[str, GateState], dict[str, set[str]], str | None]:
    """:func:`gate_states` and :func:`permitted_purposes_of` in one statement: the
    gating state of each lead (absent: nothing recorded) and the purposes each permits
    (each id is a key); and :data:`LATEST_MODEL_KEY` (``None`` when no row was found).
    With ``lock`` (PostgreSQL), the rows read are held ``FOR SHARE``: the gating state,
    and the permissions the caller keeps answers under."""
    permitted: dict[str, set[str]] = {sid: set() for sid in subject_ids}
    gates: dict[str, GateState] = {}
    latest: str | None = None
    if not permitted:
        return gates, permitted, latest
    stmt = _GATES_AND_PERMITTED
    if lock and connection.dialect.name == "postgresql":
        stmt = _GATES_AND_PERMITTED_LOCKED
    rows = stmt.execute(connection, {"ids": list(permitted), "purpose": purpose})
    for sid, key, allowed, since, last_seq, status, model_key in rows:
        latest = model_key
        if allowed:
            permitted[sid].add(key)
        if key == purpose:
            gates[sid] = GateState(bool(allowed), since, int(last_seq), str(status))
    return gates, permitted, latest


_GATES_AND_PERMITTED_SELECT = select(
    _cs.c.subject_id,
    _cs.c.purpose_key,
    _cs.c.permitted,
    _cs.c.since,
    _cs.c.last_seq,
    _cs.c.status,
    LATEST_MODEL_KEY,
).where(
    _cs.c.subject_id.in_(bindparam("ids", expanding=True)),
    or_(_cs.c.permitted, _cs.c.purpose_key == bindparam("purpose")),
)
# On the driver's cursor: the first statement of every scoring of answers or events.
_GATES_AND_PERMITTED = Prepared(_GATES_AND_PERMITTED_SELECT)
_GATES_AND_PERMITTED_LOCKED = Prepared(_GATES_AND_PERMITTED_SELECT.with_for_update(read=True))
