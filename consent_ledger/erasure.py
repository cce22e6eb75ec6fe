"""Erasure (GDPR Art. 17): remove a subject's personal data, keep the proof of consent.

:func:`erase_subject` asks every registered :mod:`zeroparty.personal_data` provider to
delete its part (feature packages register theirs: answers, topic choices, scores), then
deletes the ledger's own personal data (the ``subject_profiles`` row with email and name,
the evidence bodies of the subject's entries, the subject's mails in ``mail_outbox``),
appends one ``erased`` entry per purpose the subject has entries for, and marks the
subject erased. The hash-chained entries stay whole: they hold no personal data, and
``ledger verify`` checks evidence commitments only where a body is still kept.

This package imports no feature package: it only calls the providers registered with it.

No copy of the erased rows may stay in the database's files (:mod:`consent_ledger.scrub`):
the erasure marks a scrub due in its own transaction; after it committed,
:func:`scrub_after_erasure` (also under its old name ``scrub_sqlite``) checkpoints and
truncates SQLite's write-ahead log at once (``secure_delete`` already zeroed the bytes
in the database file); on PostgreSQL the scrub job rewrites the tables erasure deletes
from (``VACUUM FULL``) at most once per ``ZEROPARTY_ERASURE_SCRUB_MINUTES``, for every
erasure since its last run. What the write-ahead log, its archive and backups keep is
said in ``docs/operations.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from consent_ledger import ledger, scrub
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.entries import LedgerEntry, format_timestamp
from consent_ledger.listeners import ConsentListener
from consent_ledger.models import ConsentEvent, ConsentEvidence, Subject, SubjectProfile
from consent_ledger.scrub import erased_tables, scrub_now
from zeroparty import personal_data
from zeroparty.db import utcnow
from zeroparty.errors import NotFound
from zeroparty.mail import OutboxMail

log = logging.getLogger("zeroparty.erasure")

LEDGER_PROVIDER = "consent_ledger"

_ev, _evd, _mail = (
    cast(Table, model.__table__) for model in (ConsentEvent, ConsentEvidence, OutboxMail)
)


@dataclass(frozen=True, slots=True)
class ErasureResult:
    subject_id: str
    already_erased: bool
    entries: list[LedgerEntry]
    providers: list[str]


def _export_ledger_data(session: Session, subject_id: str) -> dict[str, Any] | None:
    profile = session.get(SubjectProfile, subject_id)
    mails = session.execute(
        select(OutboxMail.subject, OutboxMail.created_at, OutboxMail.sent_at)
        .where(OutboxMail.subject_id == subject_id)
        .order_by(OutboxMail.created_at)
    ).all()
    return {
        "profile": None
        if profile is None
        else {
            "email": profile.email,
            "name": profile.name,
            "created_at": format_timestamp(profile.created_at),
        },
        "mails": [
            {
                "subject": subject,
                "queued_at": format_timestamp(created),
                "sent_at": format_timestamp(sent) if sent else None,
            }
            for subject, created, sent in mails
        ],
    }


def _erase_ledger_data(session: Session, subject_id: str) -> None:
    seqs = select(_ev.c.seq).where(_ev.c.subject_id == subject_id).scalar_subquery()
    session.execute(delete(_evd).where(_evd.c.seq.in_(seqs)))
    session.execute(delete(_mail).where(_mail.c.subject_id == subject_id))
    session.execute(delete(SubjectProfile).where(SubjectProfile.subject_id == subject_id))


LEDGER_PERSONAL_DATA = personal_data.PersonalData(
    LEDGER_PROVIDER, _export_ledger_data, _erase_ledger_data
)


def erase_subject(
    session: Session,
    subject_id: str,
    *,
    providers: Sequence[personal_data.PersonalData],
    listeners: Sequence[ConsentListener] = (),
    source: ConsentSource = ConsentSource.CONSOLE,
    method: ConsentMethod = ConsentMethod.SYSTEM,
    source_ref: str | None = None,
) -> ErasureResult:
    """Erase ``subject_id``'s personal data in the caller's write transaction.

    Idempotent: a subject erased before gets nothing new. The ``erased`` entries carry
    no evidence (evidence would be personal data about the erased person).
    """
    subject = session.get(Subject, subject_id, with_for_update=True)
    if subject is None:
        raise NotFound("no such lead")
    if subject.erased_at is not None:
        return ErasureResult(subject_id, True, [], [])
    names: list[str] = []
    # Feature packages first: they may still need the profile to find their rows.
    ledger_provider = None
    for provider in providers:
        if provider.name == LEDGER_PROVIDER:
            ledger_provider = provider
            continue
        provider.erase(session, subject_id)
        names.append(provider.name)
    assert ledger_provider is not None
    ledger_provider.erase(session, subject_id)
    names.append(ledger_provider.name)
    purposes = session.execute(
        select(_ev.c.purpose_key).where(_ev.c.subject_id == subject_id).distinct()
    ).scalars()
    now = utcnow()
    drafts = [
        ledger.EntryDraft(
            subject_id=subject_id,
            purpose=purpose,
            action=ConsentAction.ERASED.value,
            source=source.value,
            method=method.value,
            occurred_at=now,
            source_ref=source_ref,
        )
        for purpose in sorted(purposes)
    ]
    entries = ledger.append_many(session, drafts, listeners=listeners)
    subject.erased_at = now
    scrub.mark_due(session)
    return ErasureResult(subject_id, False, entries, names)


scrub_after_erasure = scrub_now
"""Run after an erasure committed, outside any transaction (see :mod:`consent_ledger.scrub`):
SQLite's write-ahead log is truncated at once; on PostgreSQL the erasure marked the
tables' rewrite due and the scrub job does it."""

scrub_sqlite = scrub_after_erasure
"""The name callers knew it by, from when only SQLite needed it."""

__all__ = [
    "ErasureResult",
    "erase_subject",
    "erased_tables",
    "scrub_after_erasure",
    "scrub_sqlite",
]
