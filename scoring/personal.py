"""Scoring's personal data, for access (export) and erasure requests.

A lead's kept answers, events, points, score, stage history and webhooks are about
them: export returns them, erasure deletes them. ``scoring_dropped_events`` names
nobody and stays.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from consent_ledger.entries import format_timestamp
from scoring import services
from scoring.models import (
    LeadAttribute,
    LeadEvent,
    ScoredLead,
    ScorePoint,
    StageChange,
    Webhook,
)
from zeroparty.personal_data import PersonalData, register

_TABLES = [
    cast(Table, m.__table__)
    for m in (ScorePoint, LeadEvent, LeadAttribute, StageChange, Webhook, ScoredLead)
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
    if explanation.score is None and not explanation.changes and not events and not answers:
        return None
    return {
        "stage": explanation.stage.value,
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
    }


def erase_scoring(session: Session, subject_id: str) -> None:
    for table in _TABLES:
        session.execute(delete(table).where(table.c.subject_id == subject_id))


PROVIDER = PersonalData("scoring", export_scoring, erase_scoring)
register(PROVIDER)
