"""Double opt-in: until the lead confirms from the mailed link, a grant of a purpose
that needs it stays pending (not permitted). Confirming records ``confirmed`` with its
own evidence; confirming twice, or after a withdrawal, records nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from capture.models import DefinitionVersion, Submission
from capture.services import SELECT_STATES, PurposeInfo, purposes_info
from capture.tokens import ConfirmToken
from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.evidence import EvidenceValue
from consent_ledger.models import ConsentState, Subject
from consent_ledger.projection import PENDING
from zeroparty.db import utcnow


@dataclass(frozen=True, slots=True)
class ConfirmationView:
    purposes: tuple[PurposeInfo, ...]
    pending: tuple[str, ...]


def confirmation_view(session: Session, token: ConfirmToken) -> ConfirmationView:
    """What a confirmation link would confirm (read only: GET changes nothing)."""
    info = purposes_info(session)
    states = {
        row.purpose_key: row.status
        for row in session.connection().execute(SELECT_STATES, {"sid": token.subject_id})
    }
    purposes = tuple(info[p] for p in token.purposes if p in info)
    pending = tuple(p.key for p in purposes if states.get(p.key) == PENDING)
    return ConfirmationView(purposes, pending)


def confirm(
    session: Session, token: ConfirmToken, evidence: Mapping[str, EvidenceValue]
) -> tuple[str, ...]:
    """Record ``confirmed`` for each of the token's purposes still pending.

    Confirming twice, or after a withdrawal, records nothing (nothing is pending).
    Returns the purposes confirmed now.
    """
    if session.get(Subject, token.subject_id) is None:
        return ()
    view = confirmation_view(session, token)
    notices = {
        row.purpose_key: row.notice_sha256
        for row in session.execute(
            select(ConsentState.purpose_key, ConsentState.notice_sha256).where(
                ConsentState.subject_id == token.subject_id
            )
        )
    }
    kind = session.execute(
        select(DefinitionVersion.kind)
        .join(Submission, Submission.definition_id == DefinitionVersion.id)
        .where(Submission.id == token.submission_id)
    ).scalar_one_or_none()
    source = ConsentSource.QUIZ if kind == "quiz" else ConsentSource.FORM
    now = utcnow()
    drafts = [
        ledger.EntryDraft(
            subject_id=token.subject_id,
            purpose=purpose,
            action=ConsentAction.CONFIRMED.value,
            source=source.value,
            method=ConsentMethod.DOUBLE_OPT_IN.value,
            occurred_at=now,
            notice_sha256=notices.get(purpose),
            source_ref=f"submission:{token.submission_id}"[:200],
            evidence=evidence,
        )
        for purpose in view.pending
    ]
    ledger.append_many(session, drafts)
    return view.pending
