"""Scoring's personal data, for access (export) and erasure requests.

A lead's kept answers, events, points, score, stage history, webhooks, recorded
outcome, BANT qualification history, hand-off acknowledgements and conversion
probability are about them: export returns them, erasure deletes them (the probability
is computed, never stored). ``scoring_dropped_events`` names nobody and stays; a
trained model holds weights and aggregates, no lead.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from consent_ledger.entries import format_timestamp
from scoring import conversion, crm_notices, qualification, services, sla
from scoring.models import (
    HandoffAck,
    LeadAttribute,
    LeadEvent,
    LeadOutcome,
    Qualification,
    ScoredLead,
    ScorePoint,
    StageChange,
    Webhook,
)
from scoring.outcomes import outcome_of
from zeroparty.db import utcnow
from zeroparty.personal_data import PersonalData

_TABLES = [
    cast(Table, m.__table__)
    for m in (
        ScorePoint,
        LeadEvent,
        LeadAttribute,
        LeadOutcome,
        Qualification,
        HandoffAck,
        StageChange,
        Webhook,
        ScoredLead,
    )
]


def export_scoring(session: Session, subject_id: str) -> dict[str, Any] | None:
    connection = session.connection()
    explanation = services.explain(connection, subject_id)
    events = [
        {
            "id": e.id,
            "type": e.type,
            "occurred_at": format_timestamp(e.occurred_at),
            "properties": orjson.loads(e.properties),
        }
        for e in session.execute(
            select(LeadEvent)
            .where(LeadEvent.subject_id == subject_id)
            .order_by(LeadEvent.occurred_at)
        ).scalars()
    ]
    answers = [
        {"kind": a.kind, "name": a.name, "value": a.value, "source": a.source_ref}
        for a in session.execute(
            select(LeadAttribute).where(LeadAttribute.subject_id == subject_id)
        ).scalars()
    ]
    outcome = outcome_of(session, subject_id)
    predictions = conversion.predict(connection, [subject_id])
    if (
        explanation.score is None
        and not explanation.changes
        and not events
        and not answers
        and outcome is None
    ):
        return None
    return {
        "stage": explanation.stage,
        "score": explanation.score,
        "points": [
            {"rule": p.rule, "points": p.points, "source": p.source, "consent_entry": p.consent_seq}
            for p in explanation.points
        ],
        "stage_changes": [
            {**c, "at": format_timestamp(c["at"])}  # type: ignore[arg-type]
            for c in explanation.changes
        ],
        "events": events,
        "answers": answers,
        "outcome": {
            "outcome": outcome.outcome.value,
            "decided_at": format_timestamp(outcome.decided_at),
            "recorded_by": outcome.recorded_by,
        }
        if outcome is not None
        else None,
        "conversion": predictions[subject_id].as_json() if subject_id in predictions else None,
        "qualification": qualification.export(connection, subject_id),
        "handoff_acks": sla.export_acks(connection, subject_id),
    }


def erase_scoring(session: Session, subject_id: str) -> None:
    connection = session.connection()
    handed_off = crm_notices.handed_off_stage(connection, subject_id)
    for table in _TABLES:
        session.execute(delete(table).where(table.c.subject_id == subject_id))
    if handed_off is not None:
        # The CRM that holds the lead is told to delete its copy (GDPR Art. 17(2), 19).
        crm_notices.queue_erasure(connection, subject_id, handed_off, utcnow())


PROVIDER = PersonalData("scoring", export_scoring, erase_scoring)
"""Named in :mod:`scoring.wiring`."""
