"""Double opt-in: until the lead confirms from the mailed link, a grant of a purpose
that needs it stays pending (not permitted). Confirming records ``confirmed`` with its
own evidence; confirming twice, or after a withdrawal, records nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from capture.models import DefinitionVersion, Submission
from capture.services import PurposeInfo, purposes_info
from capture.tokens import ConfirmToken
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import PENDING, ConsentChange, ConsentLedger
from consent_ledger.evidence import EvidenceValue
from zeroparty.db import utcnow


@dataclass(frozen=True, slots=True)
class ConfirmationView:
    purposes: tuple[PurposeInfo, ...]
    pending: tuple[str, ...]

    def in_language(self, language: str) -> ConfirmationView:
        """The view with each purpose's title in ``language``."""
        return replace(self, purposes=tuple(p.in_language(language) for p in self.purposes))


def confirmation_view(
    session: Session, ledger: ConsentLedger, token: ConfirmToken
) -> ConfirmationView:
    """What a confirmation link would confirm (read only: GET changes nothing)."""
    info = purposes_info(ledger, session)
    states = {key: state[0] for key, state in ledger.lead_states(session, token.subject_id).items()}
    purposes = tuple(info[p] for p in token.purposes if p in info)
    pending = tuple(p.key for p in purposes if states.get(p.key) == PENDING)
    return ConfirmationView(purposes, pending)


def confirm(
    session: Session,
    ledger: ConsentLedger,
    token: ConfirmToken,
    evidence: Mapping[str, EvidenceValue],
) -> tuple[str, ...]:
    """Record ``confirmed`` for each of the token's purposes still pending.

    Confirming twice, or after a withdrawal, records nothing (nothing is pending).
    Returns the purposes confirmed now.
    """
    if ledger.lead(session, token.subject_id) is None:
        return ()
    view = confirmation_view(session, ledger, token)
    notices = {
        key: state[2] for key, state in ledger.lead_states(session, token.subject_id).items()
    }
    kind = session.execute(
        select(DefinitionVersion.kind)
        .join(Submission, Submission.definition_id == DefinitionVersion.id)
        .where(Submission.id == token.submission_id)
    ).scalar_one_or_none()
    source = ConsentSource.QUIZ if kind == "quiz" else ConsentSource.FORM
    now = utcnow()
    changes = [
        ConsentChange(
            subject_id=token.subject_id,
            purpose=purpose,
            action=ConsentAction.CONFIRMED,
            source=source,
            method=ConsentMethod.DOUBLE_OPT_IN,
            occurred_at=now,
            notice_sha256=notices.get(purpose),
            confirmed=True,
            source_ref=f"submission:{token.submission_id}"[:200],
            evidence=evidence,
        )
        for purpose in view.pending
    ]
    ledger.record(session, changes)
    return view.pending
