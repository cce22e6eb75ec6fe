"""Finding leads and reading their history: search, timeline, state now and at a moment.

A timeline shows every ledger entry of one lead with the exact notice text it names
(looked up by its SHA-256), the form version, source, method, confirmation and the kept
evidence; ``evidence`` is left out for roles that may not see it (marketers never see
IP addresses or user agents).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import ColumnElement, Table, and_, select
from sqlalchemy.orm import Session

from consent_ledger.models import (
    ConsentEvent,
    ConsentEvidence,
    NoticeVersion,
    Purpose,
    Subject,
    SubjectProfile,
)
from consent_ledger.state import ConsentAnswer, consent_at
from zeroparty import personal_data
from zeroparty.db import utcnow
from zeroparty.errors import InvalidInput, NotFound

SEARCH_LIMIT = 50
TIMELINE_LIMIT = 2000
SUBJECT_ID = re.compile(r"^[0-9a-f]{32}$")
LEDGER_PROVIDER = "consent_ledger"

_ev, _evd, _sp = (
    cast(Table, model.__table__) for model in (ConsentEvent, ConsentEvidence, SubjectProfile)
)


@dataclass(frozen=True, slots=True)
class LeadHit:
    subject_id: str
    email: str | None
    name: str | None
    created_at: datetime
    erased: bool


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    seq: int
    purpose: str
    action: str
    confirmation_required: bool
    occurred_at: datetime
    recorded_at: datetime
    source: str
    source_ref: str | None
    method: str
    jurisdiction: str | None
    locale: str | None
    notice_sha256: str | None
    notice_text: str | None
    evidence: dict[str, Any] | None
    evidence_kept: bool
    hash: str
    confirmation: str = ""


@dataclass(frozen=True, slots=True)
class LeadFile:
    hit: LeadHit
    jurisdiction: str | None
    locale: str | None
    entries: list[TimelineEntry]
    truncated: bool
    now: list[ConsentAnswer]
    at: datetime | None
    then: list[ConsentAnswer]
    held: list[tuple[str, str]]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(session: Session, query: str) -> list[LeadHit]:
    """Leads whose id is ``query``, whose email is ``query``, or else whose email starts
    with it (emails are stored lower-cased; so is the query)."""
    text = query.strip().lower()
    if not text:
        return []
    if len(text) > 320:
        raise InvalidInput("search: at most 320 characters", fields={"q": "too long"})
    if SUBJECT_ID.match(text):
        stmt = (
            select(Subject, SubjectProfile)
            .outerjoin(SubjectProfile, SubjectProfile.subject_id == Subject.id)
            .where(Subject.id == text)
        )
        return [_hit(subject, profile) for subject, profile in session.execute(stmt)]
    by_email = select(Subject, SubjectProfile).join(
        SubjectProfile, SubjectProfile.subject_id == Subject.id
    )
    # A whole address is found through the unique index; only a beginning needs a scan.
    exact = session.execute(by_email.where(SubjectProfile.email == text)).all()
    if exact:
        return [_hit(subject, profile) for subject, profile in exact]
    prefix: ColumnElement[bool] = SubjectProfile.email.like(_escape_like(text) + "%", escape="\\")
    if session.get_bind().dialect.name == "sqlite":
        # SQLite compares UTF-8 bytes: this range holds exactly the strings that start
        # with ``text`` and lets the index on email bound the scan (LIKE alone cannot:
        # SQLite's LIKE ignores case).
        prefix = and_(
            SubjectProfile.email >= text, SubjectProfile.email < text + "\U0010ffff", prefix
        )
    stmt = by_email.where(prefix).order_by(SubjectProfile.email).limit(SEARCH_LIMIT)
    return [_hit(subject, profile) for subject, profile in session.execute(stmt)]


def _hit(subject: Subject, profile: SubjectProfile | None) -> LeadHit:
    return LeadHit(
        subject.id,
        profile.email if profile else None,
        profile.name if profile else None,
        subject.created_at,
        subject.erased_at is not None,
    )


def _entries(
    session: Session, subject_id: str, with_evidence: bool
) -> tuple[list[TimelineEntry], bool]:
    stmt = (
        select(_ev, _evd.c.body)
        .select_from(_ev.outerjoin(_evd, _evd.c.seq == _ev.c.seq))
        .where(_ev.c.subject_id == subject_id)
        .order_by(_ev.c.seq)
        .limit(TIMELINE_LIMIT + 1)
    )
    rows = session.execute(stmt).all()
    truncated = len(rows) > TIMELINE_LIMIT
    rows = rows[:TIMELINE_LIMIT]
    hashes = {row.notice_sha256 for row in rows if row.notice_sha256}
    notices = select(NoticeVersion.sha256, NoticeVersion.text)
    found = session.execute(notices.where(NoticeVersion.sha256.in_(hashes)))
    texts: dict[str, str] = {sha: text for sha, text in found}  # noqa: C416  (rows, not pairs)
    entries = [
        TimelineEntry(
            seq=row.seq,
            purpose=row.purpose_key,
            action=row.action,
            confirmation_required=bool(row.confirmation_required),
            occurred_at=row.occurred_at,
            recorded_at=row.recorded_at,
            source=row.source,
            source_ref=row.source_ref,
            method=row.method,
            jurisdiction=row.jurisdiction,
            locale=row.locale,
            notice_sha256=row.notice_sha256,
            notice_text=texts.get(row.notice_sha256 or ""),
            evidence=orjson.loads(row.body) if with_evidence and row.body is not None else None,
            evidence_kept=row.body is not None,
            hash=row.hash,
        )
        for row in rows
    ]
    return _with_confirmations(entries), truncated


def _with_confirmations(entries: list[TimelineEntry]) -> list[TimelineEntry]:
    """Say, for each grant, whether it needed a double opt-in confirmation and which
    later entry confirmed it (or that it is still pending)."""
    described = []
    for index, entry in enumerate(entries):
        text = ""
        if entry.action == "granted":
            text = "not required"
            if entry.confirmation_required:
                confirmed = next(
                    (
                        later
                        for later in entries[index + 1 :]
                        if later.purpose == entry.purpose and later.action == "confirmed"
                    ),
                    None,
                )
                text = (
                    f"confirmed by entry #{confirmed.seq} on "
                    f"{confirmed.occurred_at:%Y-%m-%d %H:%M:%S} UTC"
                    if confirmed
                    else "required, still pending"
                )
            elif entry.method == "double-opt-in":
                text = "confirmed before it was recorded (double opt-in)"
        described.append(replace(entry, confirmation=text))
    return described


def _held(session: Session, subject_id: str) -> list[tuple[str, str]]:
    """What each package holds about the lead (answers, topics, scores), as JSON text."""
    sections = []
    for provider in personal_data.providers():
        if provider.name == LEDGER_PROVIDER:
            continue  # the profile is shown on its own; evidence with each entry
        value = provider.export(session, subject_id)
        if value:
            text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            sections.append((provider.name, text.decode()))
    return sections


def lead_file(
    session: Session, subject_id: str, *, with_evidence: bool, at: datetime | None = None
) -> LeadFile:
    """Everything the console shows about one lead."""
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise NotFound("no such lead")
    profile = session.get(SubjectProfile, subject_id)
    entries, truncated = _entries(session, subject_id, with_evidence)
    purposes = list(session.scalars(select(Purpose.key).order_by(Purpose.key)))
    now = utcnow()
    current = [consent_at(session, subject_id, p, now) for p in purposes]
    then = [consent_at(session, subject_id, p, at) for p in purposes] if at else []
    return LeadFile(
        hit=_hit(subject, profile),
        jurisdiction=subject.jurisdiction,
        locale=subject.locale,
        entries=entries,
        truncated=truncated,
        now=current,
        at=at,
        then=then,
        held=_held(session, subject_id),
    )


def purpose_keys(session: Session) -> list[str]:
    return list(session.scalars(select(Purpose.key).order_by(Purpose.key)))
