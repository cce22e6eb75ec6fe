"""Outcomes sales records (opportunity won or lost): what the predictive score learns.

Consent (SPEC rule 3, issue #9): an outcome is recorded only while the lead's consent
for the gating purpose is live (:class:`scoring.services.ConsentMissing` otherwise,
nothing stored), and :func:`scoring.services.purge_lead` deletes it with the lead's
other scoring rows when that consent ends. Training checks the consent again
(:mod:`scoring.training`), so a row that outlived its consent is never used.

One outcome per lead. Sending the same outcome again is harmless (nothing changes);
a different one is refused with 409, naming the outcome already recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from consent_ledger.entries import format_timestamp
from scoring import consent
from scoring.models import LeadOutcome
from scoring.services import ConsentMissing, require_model
from zeroparty.db import utcnow
from zeroparty.errors import Conflict

_outcomes = cast(Table, LeadOutcome.__table__)


class Outcome(StrEnum):
    WON = "won"
    LOST = "lost"

    @property
    def label(self) -> int:
        """1 won, 0 lost: the class the model learns."""
        return 1 if self is Outcome.WON else 0


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    subject_id: str
    outcome: Outcome
    decided_at: datetime
    recorded_by: str
    recorded_at: datetime
    created: bool  # False: the same outcome was recorded before; nothing changed


def record_outcome(
    session: Session,
    subject_id: str,
    outcome: Outcome,
    decided_at: datetime | None,
    *,
    actor: str,
) -> RecordedOutcome:
    """Record how the lead's opportunity ended (``decided_at`` defaults to now)."""
    connection = session.connection()
    active = require_model(connection)
    purpose = active.model.purpose
    # FOR SHARE on PostgreSQL: a withdrawal of the same lead waits for this transaction
    # and then deletes the row, or comes first and this one sees it.
    gate = consent.gate_states(connection, [subject_id], purpose, lock=True).get(subject_id)
    if gate is None or not gate.permitted:
        raise ConsentMissing(
            f"this lead has no live consent for {purpose}: its outcome cannot be used "
            "for the predictive score and is not stored"
        )
    now = utcnow()
    decided, recorded_by = decided_at or now, actor[:100]
    row = {
        "subject_id": subject_id,
        "outcome": outcome.value,
        "decided_at": decided,
        "recorded_by": recorded_by,
        "recorded_at": now,
    }
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    inserted = connection.execute(
        dialect.insert(_outcomes).on_conflict_do_nothing().returning(_outcomes.c.subject_id),
        row,
    ).first()
    if inserted is not None:
        return RecordedOutcome(subject_id, outcome, decided, recorded_by, now, created=True)
    existing = connection.execute(
        select(_outcomes).where(_outcomes.c.subject_id == subject_id)
    ).one()
    same = existing.outcome == outcome.value and (
        decided_at is None or existing.decided_at == decided_at
    )
    if not same:
        raise Conflict(
            f"this lead's outcome is recorded already: {existing.outcome} at "
            f"{format_timestamp(existing.decided_at)} by {existing.recorded_by}",
            fields={"outcome": "recorded already"},
        )
    return RecordedOutcome(
        subject_id,
        Outcome(existing.outcome),
        existing.decided_at,
        existing.recorded_by,
        existing.recorded_at,
        created=False,
    )


def outcome_of(session: Session, subject_id: str) -> RecordedOutcome | None:
    row = session.execute(select(_outcomes).where(_outcomes.c.subject_id == subject_id)).first()
    if row is None:
        return None
    return RecordedOutcome(
        subject_id,
        Outcome(row.outcome),
        row.decided_at,
        row.recorded_by,
        row.recorded_at,
        created=False,
    )
