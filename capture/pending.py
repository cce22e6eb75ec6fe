"""Held submissions: what was sent under an existing lead's address, waiting for proof.

Anyone can type anyone's address into a form. When the address already belongs to a
lead, the submission speaks for that lead only once the sender has shown control of the
address (the link mailed to it): until then nothing of it reaches the lead (no answers,
quiz results, scores, grants, refusals or GPC opt-outs) and it waits here, for at most
:data:`HOLD_DAYS` days. Following the link applies it as if the owner submitted it then
(:mod:`capture.held_confirmation`); an expired row is never applied, and the periodic
job of :mod:`capture.jobs` deletes it.

The payload holds only what applying needs: the values that could be kept (fields that
are needed or serve a purpose; the rest would never be kept anyway), the purposes
ticked and the notice versions shown, the GPC signal, the quiz answers, and the
submission's evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from capture.models import PendingSubmission
from consent_ledger.evidence import EvidenceValue
from zeroparty.db import utcnow

HOLD_DAYS = 7
HOLD = timedelta(days=HOLD_DAYS)

_pending = cast(Table, PendingSubmission.__table__)
_INSERT = insert(_pending)


@dataclass(frozen=True, slots=True)
class HeldSubmission:
    """A held submission as stored (see the module docstring)."""

    submission_id: str
    subject_id: str
    definition_id: int
    values: Mapping[str, tuple[str, ...]]
    consent: tuple[str, ...]
    notices: Mapping[str, str]
    gpc: bool
    quiz_answers: Mapping[str, tuple[str, ...]] | None
    evidence: Mapping[str, EvidenceValue]
    created_at: datetime
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def payload(self) -> str:
        data: dict[str, Any] = {
            "v": {k: list(v) for k, v in self.values.items()},
            "c": list(self.consent),
            "n": dict(self.notices),
            "g": self.gpc,
            "q": None
            if self.quiz_answers is None
            else {k: list(v) for k, v in self.quiz_answers.items()},
            "e": dict(self.evidence),
        }
        return orjson.dumps(data).decode()


def hold(connection: Connection, held: HeldSubmission) -> None:
    """Store ``held`` in the caller's transaction."""
    connection.execute(
        _INSERT,
        {
            "submission_id": held.submission_id,
            "definition_id": held.definition_id,
            "subject_id": held.subject_id,
            "payload": held.payload(),
            "created_at": held.created_at,
            "expires_at": held.expires_at,
        },
    )


def find(session: Session, subject_id: str, submission_id: str) -> HeldSubmission | None:
    """The held submission ``submission_id`` of ``subject_id`` (expired or not)."""
    row = session.execute(
        select(PendingSubmission).where(
            PendingSubmission.submission_id == submission_id,
            PendingSubmission.subject_id == subject_id,
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    data = orjson.loads(row.payload)
    quiz = data.get("q")
    return HeldSubmission(
        submission_id=row.submission_id,
        subject_id=row.subject_id,
        definition_id=row.definition_id,
        values={k: tuple(v) for k, v in data["v"].items()},
        consent=tuple(data["c"]),
        notices=dict(data["n"]),
        gpc=bool(data["g"]),
        quiz_answers=None if quiz is None else {k: tuple(v) for k, v in quiz.items()},
        evidence=dict(data["e"]),
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


def forget(session: Session, submission_id: str) -> None:
    session.execute(
        delete(PendingSubmission).where(PendingSubmission.submission_id == submission_id)
    )


def delete_expired(session: Session, now: datetime | None = None) -> int:
    """Delete every held submission past its expiry; returns how many."""
    result = session.execute(
        delete(PendingSubmission).where(PendingSubmission.expires_at <= (now or utcnow()))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def erase(session: Session, subject_id: str) -> list[str]:
    """Delete ``subject_id``'s held submissions; returns their ids."""
    ids = list(
        session.execute(
            select(PendingSubmission.submission_id).where(
                PendingSubmission.subject_id == subject_id
            )
        ).scalars()
    )
    if ids:
        session.execute(delete(PendingSubmission).where(PendingSubmission.subject_id == subject_id))
    return ids


def export(session: Session, subject_id: str) -> list[dict[str, Any]]:
    """``subject_id``'s held submissions, for an access request."""
    ids = session.execute(
        select(PendingSubmission.submission_id)
        .where(PendingSubmission.subject_id == subject_id)
        .order_by(PendingSubmission.created_at)
    ).scalars()
    found = [find(session, subject_id, submission_id) for submission_id in ids]
    return [
        {
            "submission": held.submission_id,
            "waiting_for_confirmation_until": held.expires_at.isoformat(),
            "answers": {k: list(v) for k, v in held.values.items()},
            "quiz_answers": None
            if held.quiz_answers is None
            else {k: list(v) for k, v in held.quiz_answers.items()},
            "consent": list(held.consent),
        }
        for held in found
        if held is not None
    ]
