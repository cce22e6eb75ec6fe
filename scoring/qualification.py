"""Qualification: BANT (budget, authority, need, timeline) that sales records per lead.

Each value is recorded with who and when, and kept as history: the latest row per field
is the current value (``None`` clears it). Recording needs a live consent for the gating
purpose (SPEC rule 3), like a stage move; the rows are deleted with that consent
(:func:`scoring.services.purge_lead`) and on erasure.

BANT counts in rules as fields named ``bant.budget``, ``bant.authority``, ``bant.need``
and ``bant.timeline``: a fit rule such as ``field = "bant.budget"``, ``range = [10000,
1e9]`` scores them like a form answer (:func:`scoring.services._facts` hands them to the
engine). Product-qualified signals are plain event types (``feature_used``,
``usage_limit_reached``) with behaviour rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from consent_ledger.entries import format_timestamp
from scoring import consent, services
from scoring.models import Qualification

BANT_FIELDS = ("budget", "authority", "need", "timeline")
BANT_RULE_FIELDS = tuple(f"bant.{name}" for name in BANT_FIELDS)
AUTHORITY_VALUES = ("decision_maker", "influencer", "user", "none")
TIMELINE_VALUES = ("immediate", "quarter", "half_year", "year", "later", "none")
MAX_BUDGET = 1e12
MAX_NEED = 500

_qual = cast(Table, Qualification.__table__)


@dataclass(frozen=True, slots=True)
class BantValue:
    field: str
    value: str | None
    actor: str
    recorded_at: datetime


def current(connection: Connection, subject_id: str) -> dict[str, BantValue]:
    """The lead's current BANT values (cleared fields absent)."""
    latest = (
        select(func.max(_qual.c.id))
        .where(_qual.c.subject_id == subject_id)
        .group_by(_qual.c.field)
        .scalar_subquery()
    )
    rows = connection.execute(
        select(_qual).where(_qual.c.id.in_(latest), _qual.c.value.is_not(None))
    )
    return {r.field: BantValue(r.field, r.value, r.actor, r.recorded_at) for r in rows}


def history(connection: Connection, subject_id: str) -> list[BantValue]:
    """Every value recorded for the lead, oldest first."""
    rows = connection.execute(
        select(_qual).where(_qual.c.subject_id == subject_id).order_by(_qual.c.id)
    )
    return [BantValue(r.field, r.value, r.actor, r.recorded_at) for r in rows]


def record(
    session: Session,
    subject_id: str,
    values: dict[str, str | None],
    *,
    actor: str,
    now: datetime,
) -> dict[str, BantValue]:
    """Record ``values`` (already checked: keys among :data:`BANT_FIELDS`) for a lead
    whose gating consent is live, rescore it, and return its current BANT.

    Raises :class:`scoring.services.ConsentMissing` (nothing recorded) otherwise."""
    connection = session.connection()
    active = services.require_model(connection)
    gate = consent.gate_states(connection, [subject_id], active.model.purpose, lock=True).get(
        subject_id
    )
    if gate is None or not gate.permitted:
        raise services.ConsentMissing(
            f"this lead has no live consent for {active.model.purpose}: "
            "nothing about it is recorded for sales"
        )
    connection.execute(
        insert(_qual),
        [
            {
                "subject_id": subject_id,
                "field": name,
                "value": value,
                "actor": actor[:100],
                "recorded_at": now,
                "consent_seq": gate.last_seq,
            }
            for name, value in sorted(values.items())
        ],
    )
    services.rescore_lead(session, active, subject_id, now=now)
    return current(connection, subject_id)


def export(connection: Connection, subject_id: str) -> list[dict[str, object]]:
    """The lead's BANT history, for an access request."""
    return [
        {
            "field": v.field,
            "value": v.value,
            "recorded_by": v.actor,
            "recorded_at": format_timestamp(v.recorded_at),
        }
        for v in history(connection, subject_id)
    ]
