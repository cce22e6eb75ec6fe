"""Erasure (GDPR Art. 17): remove a subject's personal data, keep the proof of consent.

:func:`erase_subject` asks every registered :mod:`zeroparty.personal_data` provider to
delete its part (feature packages register theirs: answers, topic choices, scores), then
deletes the ledger's own personal data (the ``subject_profiles`` row with email and name,
the evidence bodies of the subject's entries, the subject's mails in ``mail_outbox``),
appends one ``erased`` entry per purpose the subject has entries for, and marks the
subject erased. The hash-chained entries stay whole: they hold no personal data, and
``ledger verify`` checks evidence commitments only where a body is still kept.

This package imports no feature package: it only calls the providers registered with it.

After the erasure's transaction, :func:`scrub_after_erasure` (also under its old name
``scrub_sqlite``) makes sure no copy of the erased rows stays in the database's files. On
SQLite it checkpoints and truncates the write-ahead log, so the erased bytes are gone
from the ``-wal`` file too (``secure_delete`` already zeroes them in the database file).
On PostgreSQL a deleted row stays in its table's and its indexes' pages until the space
is reused; a plain ``VACUUM`` marks it free but leaves its bytes there; so the tables
erasure deletes from are rewritten (``VACUUM FULL``: new files, the old ones unlinked).
What the write-ahead log, its archive and backups keep is said in ``docs/operations.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.entries import LedgerEntry, format_timestamp
from consent_ledger.listeners import ConsentListener
from consent_ledger.models import ConsentEvent, ConsentEvidence, Subject, SubjectProfile
from zeroparty import personal_data
from zeroparty.db import Database, utcnow
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
    return ErasureResult(subject_id, False, entries, names)


# Tables an erasure deletes or rewrites personal rows in: every table of the schema with
# a ``subject_id`` column (each package's, whatever the app is wired with) and the
# evidence bodies, except the append-only ones (their trigger refuses deletes: nothing
# erased is in them, and rewriting the ledger would only cost time).
_ERASED_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = current_schema()
  AND (c.relname IN ('consent_evidence', 'subject_profiles', 'mail_outbox')
       OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'subject_id' AND NOT a.attisdropped))
  AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid
                  AND t.tgname = c.relname || '_no_change')
ORDER BY c.relname
"""
LOCK_TIMEOUT = "10s"
"""How long the rewrite of one table waits for its lock before it gives up (logged; the
next erasure or retention run rewrites it again), so that it never queues writers behind
it for long."""


def erased_tables(database: Database) -> list[str]:
    """On PostgreSQL, the tables :func:`scrub_after_erasure` rewrites."""
    with database.engine.connect() as connection:
        return list(connection.exec_driver_sql(_ERASED_TABLES).scalars())


def scrub_after_erasure(database: Database) -> bool:
    """Run after an erasure committed, outside any transaction: no copy of the erased
    rows stays in the database's files (see the module's docstring). Returns whether it
    completed (``False``: SQLite readers held an old snapshot, or a PostgreSQL table's
    lock was not granted in time; run it again)."""
    if database.dialect == "postgresql":
        return _rewrite_tables(database)
    if database.dialect != "sqlite":
        return True
    with database.engine.connect() as connection:
        busy, _log_frames, _checkpointed = connection.exec_driver_sql(
            "PRAGMA wal_checkpoint(TRUNCATE)"
        ).one()
        connection.commit()
    if busy:
        log.warning("WAL checkpoint after erasure incomplete: readers active; retried later")
    return not busy


def _rewrite_tables(database: Database) -> bool:
    tables = erased_tables(database)
    done = True
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        for table in tables:
            try:
                # VACUUM cannot run in a transaction block: autocommit, one per table.
                connection.exec_driver_sql(f'VACUUM FULL "{table}"')
            except OperationalError as exc:
                done = False
                log.warning(
                    "rewrite of %s after erasure not done: %s", table, type(exc.orig).__name__
                )
    return done


scrub_sqlite = scrub_after_erasure
"""The name callers knew it by, from when only SQLite needed it."""
