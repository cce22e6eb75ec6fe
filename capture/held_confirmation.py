"""The link that applies a held submission (:mod:`capture.pending`).

``GET /confirm/held/{token}`` shows what was sent under the address and changes
nothing (mail scanners fetch links); ``POST`` applies it as if the owner of the address
submitted it now (:func:`capture.services.apply_confirmed`), with the confirmation's
evidence on every grant. An expired held submission is never applied; one applied
already (or erased since) has nothing left to confirm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete
from sqlalchemy.orm import Session

from capture import pending, services
from capture.forms import CleanSubmission
from capture.models import PendingSubmission
from capture.quiz import walk
from capture.tokens import HeldToken
from consent_ledger.api import ConsentLedger
from consent_ledger.evidence import EvidenceValue
from zeroparty import i18n
from zeroparty.db import utcnow


class HeldStatus(StrEnum):
    WAITING = "waiting"
    APPLIED = "applied"
    EXPIRED = "expired"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class HeldView:
    """What the link's page shows: the form, the answers sent (label, values), the
    purposes ticked, and where the held submission stands."""

    status: HeldStatus
    form_title: str = ""
    answers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    purposes: tuple[str, ...] = ()
    gpc: bool = False


def _view(
    session: Session,
    ledger: ConsentLedger,
    store: services.DefinitionStore,
    held: pending.HeldSubmission,
    status: HeldStatus,
    language: str,
) -> HeldView:
    published = store.get(session, held.definition_id)
    offered = published.definition.locales or (published.definition.locale,)
    if language in offered:
        published = store.shown(published, language)
    definition = published.definition
    labels = {f.name: f.label for f in definition.fields}
    labels.update({q.key: q.text for q in definition.questions()})
    sent = {**held.values, **(held.quiz_answers or {})}
    titles = {
        key: info.title_in(language)
        for key, info in services.purposes_info(ledger, session).items()
    }
    return HeldView(
        status=status,
        form_title=definition.title,
        answers=tuple((labels.get(name, name), values) for name, values in sent.items()),
        purposes=tuple(titles.get(p, p) for p in held.consent),
        gpc=held.gpc,
    )


def held_view(
    session: Session,
    ledger: ConsentLedger,
    store: services.DefinitionStore,
    token: HeldToken,
    language: str = i18n.SOURCE_LANGUAGE,
) -> HeldView:
    """What the link would apply (read only), in ``language`` where the form has it."""
    held = pending.find(session, token.subject_id, token.submission_id)
    if held is None:
        return HeldView(HeldStatus.GONE)
    status = HeldStatus.EXPIRED if held.expired(utcnow()) else HeldStatus.WAITING
    return _view(session, ledger, store, held, status, language)


def confirm_held(
    session: Session,
    ledger: ConsentLedger,
    store: services.DefinitionStore,
    token: HeldToken,
    confirmation: Mapping[str, EvidenceValue],
    language: str = i18n.SOURCE_LANGUAGE,
) -> HeldView:
    """Apply the held submission (in the caller's write transaction) and forget it.

    The held row is deleted first, in the same transaction, and applied only if this
    call deleted it: two POSTs of one link at once apply it once, the second answers
    :attr:`HeldStatus.GONE` ("nothing to confirm") like a later click."""
    held = pending.find(session, token.subject_id, token.submission_id)
    if held is None:
        return HeldView(HeldStatus.GONE)
    now = utcnow()
    if held.expired(now):
        return _view(session, ledger, store, held, HeldStatus.EXPIRED, language)
    # Take the held row before applying it: of two POSTs of one link at once, the second
    # waits on this row (PostgreSQL) and then deletes nothing, so it applies nothing.
    taken = session.execute(
        delete(PendingSubmission).where(
            PendingSubmission.submission_id == held.submission_id,
            PendingSubmission.subject_id == held.subject_id,
        )
    )
    if int(getattr(taken, "rowcount", 0) or 0) != 1:
        return HeldView(HeldStatus.GONE)
    known = ledger.lead(session, held.subject_id)
    jurisdiction = known.jurisdiction if known is not None else None
    published = store.get(session, held.definition_id)
    quiz = None if held.quiz_answers is None else walk(published.definition, held.quiz_answers)
    request = services.SubmissionRequest(
        published=published,
        submission=CleanSubmission(
            {**held.values, **(held.quiz_answers or {})}, held.consent, email=None
        ),
        notices=held.notices,
        submission_id=held.submission_id,
        idempotency_key="",
        rate_bucket="",
        gpc=held.gpc,
        evidence=held.evidence,
        occurred_at=now,
        quiz=quiz,
    )
    lead = services.Lead(held.subject_id, jurisdiction, created=False)
    services.apply_confirmed(session, ledger, request, lead, confirmation)
    return _view(session, ledger, store, held, HeldStatus.APPLIED, language)
