"""Recording consent and reading notices: the ledger's service surface."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.append_sql import append_sql
from consent_ledger.entries import LedgerEntry
from consent_ledger.evidence import EvidenceValue
from consent_ledger.listeners import ConsentListener
from consent_ledger.models import NoticeVersion, Purpose
from consent_ledger.state import UnknownPurpose
from consent_ledger.subjects import SubjectRef, create_subject, ensure_subject, needs_update
from zeroparty.db import Transaction, connection_of, driver_cursor, utcnow
from zeroparty.errors import InvalidInput

# How far in the future a reported time may lie (clock skew between hosts).
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A grant or withdrawal to record for a lead identified by normalised email."""

    email: str
    purpose: str
    action: ConsentAction
    source: ConsentSource
    method: ConsentMethod
    notice_sha256: str | None = None
    occurred_at: datetime | None = None
    source_ref: str | None = None
    jurisdiction: str | None = None
    locale: str | None = None
    name: str | None = None
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NoticeView:
    purpose: str
    title: str
    category: str
    mechanism: str
    locale: str
    version: int
    notice_sha256: str
    text: str


def notice_for(session: Session, purpose: str, notice_sha256: str) -> NoticeVersion | None:
    """The notice version of ``purpose`` with this text hash (any locale), if any."""
    stmt = (
        select(NoticeVersion)
        .where(NoticeVersion.purpose_key == purpose, NoticeVersion.sha256 == notice_sha256)
        .order_by(NoticeVersion.version.desc())
        .limit(1)
    )
    return session.execute(stmt).scalar_one_or_none()


def record_consent(
    session: Transaction,
    record: ConsentRecord,
    *,
    listeners: Sequence[ConsentListener] = (),
) -> LedgerEntry:
    """Validate ``record`` against the site's purposes and notices and append it, in the
    caller's write transaction (an ORM session or a plain connection).

    A grant must name the notice version that was shown (by its hash), and that version
    must belong to the purpose. A grant of a double opt-in purpose is pending until a
    ``confirmed`` entry follows, unless its method says it was confirmed already.
    """
    connection = connection_of(session)
    # Purpose, notice and lead in one statement on the driver's cursor: this runs for
    # every consent recorded, and SQLAlchemy's execution would cost more than SQLite's.
    with driver_cursor(connection) as cursor:
        sql = append_sql(connection.dialect.name)
        cursor.execute(sql.record_context, (record.notice_sha256, record.email, record.purpose))
        row = cursor.fetchone()
    if row is None:
        raise UnknownPurpose(record.purpose)
    double_opt_in, notice_locale = bool(row[0]), row[1]
    now = utcnow()
    occurred_at = record.occurred_at or now
    if occurred_at > now + CLOCK_SKEW:
        raise InvalidInput(
            "occurred_at: lies in the future", fields={"occurred_at": "lies in the future"}
        )
    if record.notice_sha256 is not None:
        if notice_locale is None:
            reason = f"is not a notice version of purpose {record.purpose!r}"
            raise InvalidInput(f"notice_sha256: {reason}", fields={"notice_sha256": reason})
        if record.action is ConsentAction.GRANTED and row[5]:
            # Issue 16: the text no longer says what is done; agreeing to it permits nothing.
            reason = "this notice version was replaced by a material change: show the current text"
            raise InvalidInput(f"notice_sha256: {reason}", fields={"notice_sha256": reason})
    elif record.action is ConsentAction.GRANTED:
        reason = "required when consent is granted: the hash of the notice text shown"
        raise InvalidInput(f"notice_sha256: {reason}", fields={"notice_sha256": reason})
    locale = record.locale or notice_locale
    known = SubjectRef(row[2], row[3], row[4]) if row[2] is not None else None
    if known is not None and not needs_update(known, locale, record.jurisdiction):
        subject = known
    else:
        # Unknown: created at once (the look-up above just found none); known but taking
        # a jurisdiction or a locale: updated.
        make = create_subject if known is None else ensure_subject
        subject = make(
            connection,
            record.email,
            name=record.name,
            locale=locale,
            jurisdiction=record.jurisdiction,
        )
    confirmation_required = (
        record.action is ConsentAction.GRANTED
        and double_opt_in
        and record.method is not ConsentMethod.DOUBLE_OPT_IN
    )
    draft = ledger.EntryDraft(
        subject_id=subject.id,
        purpose=record.purpose,
        action=record.action.value,
        source=record.source.value,
        method=record.method.value,
        occurred_at=occurred_at,
        notice_sha256=record.notice_sha256,
        confirmation_required=confirmation_required,
        source_ref=record.source_ref,
        jurisdiction=record.jurisdiction or subject.jurisdiction,
        locale=record.locale or notice_locale or subject.locale,
        evidence=record.evidence,
    )
    return ledger.append(session, draft, listeners=listeners)


def current_notices(session: Session, locale: str | None = None) -> list[NoticeView]:
    """Every purpose with the current (latest) notice version per locale."""
    latest = (
        select(
            NoticeVersion.purpose_key,
            NoticeVersion.locale,
            func.max(NoticeVersion.version).label("version"),
        )
        .group_by(NoticeVersion.purpose_key, NoticeVersion.locale)
        .subquery()
    )
    stmt = (
        select(Purpose, NoticeVersion)
        .join(NoticeVersion, NoticeVersion.purpose_key == Purpose.key)
        .join(
            latest,
            (latest.c.purpose_key == NoticeVersion.purpose_key)
            & (latest.c.locale == NoticeVersion.locale)
            & (latest.c.version == NoticeVersion.version),
        )
        .order_by(Purpose.key, NoticeVersion.locale)
    )
    if locale is not None:
        stmt = stmt.where(NoticeVersion.locale == locale)
    return [
        NoticeView(
            purpose=p.key,
            title=p.title,
            category=p.category,
            mechanism=p.mechanism,
            locale=n.locale,
            version=n.version,
            notice_sha256=n.sha256,
            text=n.text,
        )
        for p, n in session.execute(stmt).all()
    ]
