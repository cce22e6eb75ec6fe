"""Capture's personal data, for access (export) and erasure requests.

A lead's submissions (quiz outcome, tags, score) and kept answers are theirs: export
returns them, erasure deletes them. Published form versions hold no personal data and
stay; ledger entries that name a submission id keep proving consent without it.
Submissions held under the address until its owner confirms them
(:mod:`capture.pending`) are exported as such and erased with the rest.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from capture import pending
from capture.models import Answer, DefinitionVersion, IdempotencyRecord, Submission
from consent_ledger.entries import format_timestamp
from zeroparty.personal_data import PersonalData, register


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
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.submission_id.in_(ids)))
    session.execute(delete(Answer).where(Answer.subject_id == subject_id))
    session.execute(delete(Submission).where(Submission.subject_id == subject_id))


PROVIDER = PersonalData("capture", export_answers, erase_answers)
register(PROVIDER)
