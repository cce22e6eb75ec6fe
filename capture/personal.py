"""Capture's personal data, for access (export) and erasure requests.

A lead's submissions (quiz outcome, tags, score) and kept answers are theirs: export
returns them, erasure deletes them. Published form versions hold no personal data and
stay; ledger entries that name a submission id keep proving consent without it, and
the number of erased submissions per form version and week stays (a count without
subject, so opt-in rates keep the boxes shown beside the grants the ledger keeps).
Submissions held under the address until its owner confirms them
(:mod:`capture.pending`) are exported as such and erased with the rest.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from capture import pending
from capture.models import (
    Answer,
    DefinitionVersion,
    ErasedSubmissions,
    IdempotencyRecord,
    Submission,
)
from consent_ledger.entries import format_timestamp
from zeroparty.personal_data import PersonalData

_erased = cast(Table, ErasedSubmissions.__table__)


def export_answers(session: Session, subject_id: str) -> list[dict[str, Any]] | None:
    rows = session.execute(
        select(Submission, DefinitionVersion.slug, DefinitionVersion.version)
        .join(DefinitionVersion, DefinitionVersion.id == Submission.definition_id)
        .where(Submission.subject_id == subject_id)
        .order_by(Submission.created_at)
    ).all()
    held = pending.export(session, subject_id)
    if not rows and not held:
        return None
    answers: dict[str, dict[str, list[str]]] = {}
    for answer in session.execute(
        select(Answer).where(Answer.subject_id == subject_id).order_by(Answer.id)
    ).scalars():
        answers.setdefault(answer.submission_id, {}).setdefault(answer.field, []).append(
            answer.value
        )
    return [
        {
            "submission": submission.id,
            "form": slug,
            "form_version": version,
            "submitted_at": format_timestamp(submission.created_at),
            "answers": answers.get(submission.id, {}),
            "outcome": submission.outcome,
            "tags": orjson.loads(submission.tags) if submission.tags else None,
            "score": submission.score,
        }
        for submission, slug, version in rows
    ] + [{**entry, "status": "waiting for the owner's confirmation"} for entry in held]


def erase_answers(session: Session, subject_id: str) -> None:
    held = pending.erase(session, subject_id)
    if held:
        session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.submission_id.in_(held)))
    ids = select(Submission.id).where(Submission.subject_id == subject_id)
    _count_erased(session, subject_id)
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.submission_id.in_(ids)))
    session.execute(delete(Answer).where(Answer.subject_id == subject_id))
    session.execute(delete(Submission).where(Submission.subject_id == subject_id))


def _count_erased(session: Session, subject_id: str) -> None:
    """Add the subject's submissions to the erased count per form version and week
    (no subject, no time finer than the week): the boxes they were shown stay in the
    opt-in rates' denominator, as their grants stay in the ledger."""
    weeks: Counter[tuple[int, date]] = Counter()
    for definition_id, created_at in session.execute(
        select(Submission.definition_id, Submission.created_at).where(
            Submission.subject_id == subject_id
        )
    ):
        day = created_at.date()
        weeks[(definition_id, day - timedelta(days=day.weekday()))] += 1
    if not weeks:
        return
    connection = session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    for (definition_id, week), n in sorted(weeks.items()):
        upsert = dialect.insert(_erased).values(
            definition_id=definition_id, week=week, submissions=n
        )
        connection.execute(
            upsert.on_conflict_do_update(
                index_elements=["definition_id", "week"],
                set_={"submissions": _erased.c.submissions + n},
            )
        )


PROVIDER = PersonalData("capture", export_answers, erase_answers)
"""Named in capture's wiring: the app's and the CLI's ledger cover it (nothing registers
at import time)."""
