"""Finding leads and reading their history: search, timeline, state now and at a moment.

A timeline shows every ledger entry of one lead with the exact notice text it names
(looked up by its SHA-256), the form version, source, method, confirmation and the kept
evidence; ``evidence`` is left out for roles that may not see it (marketers never see
IP addresses or user agents).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.orm import Session

from consent_ledger.api import ConsentAnswer, ConsentLedger
from zeroparty.db import utcnow
from zeroparty.errors import InvalidInput, NotFound

SEARCH_LIMIT = 50
TIMELINE_LIMIT = 2000
LEDGER_PROVIDER = "consent_ledger"


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


def search(ledger: ConsentLedger, session: Session, query: str) -> list[LeadHit]:
    """Leads whose id is ``query``, whose email is ``query``, or else whose email starts
    with it (emails are stored lower-cased; so is the query)."""
    text = query.strip().lower()
    if not text:
        return []
    if len(text) > 320:
        raise InvalidInput("search: at most 320 characters", fields={"q": "too long"})
    return [_hit(card) for card in ledger.search_leads(session, text, SEARCH_LIMIT)]


def _hit(card: Any) -> LeadHit:
    return LeadHit(
        card.subject_id, card.email, card.name, card.created_at, card.erased_at is not None
    )


def _entries(
    ledger: ConsentLedger, session: Session, subject_id: str, with_evidence: bool
) -> tuple[list[TimelineEntry], bool]:
    rows = ledger.timeline(session, subject_id, TIMELINE_LIMIT + 1)
    truncated = len(rows) > TIMELINE_LIMIT
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
            notice_text=row.notice_text,
            evidence=(
                orjson.loads(row.evidence_body)
                if with_evidence and row.evidence_body is not None
                else None
            ),
            evidence_kept=row.evidence_body is not None,
            hash=row.hash,
        )
        for row in rows[:TIMELINE_LIMIT]
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


def _held(ledger: ConsentLedger, session: Session, subject_id: str) -> list[tuple[str, str]]:
    """What each package holds about the lead (answers, topics, scores), as JSON text."""
    sections = []
    for provider in ledger.personal_data_providers:
        if provider.name == LEDGER_PROVIDER:
            continue  # the profile is shown on its own; evidence with each entry
        value = provider.export(session, subject_id)
        if value:
            text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            sections.append((provider.name, text.decode()))
    return sections


def lead_file(
    ledger: ConsentLedger,
    session: Session,
    subject_id: str,
    *,
    with_evidence: bool,
    at: datetime | None = None,
) -> LeadFile:
    """Everything the console shows about one lead."""
    card = ledger.lead_card(session, subject_id)
    if card is None:
        raise NotFound("no such lead")
    entries, truncated = _entries(ledger, session, subject_id, with_evidence)
    purposes = ledger.purpose_keys(session)
    now = utcnow()
    current = [ledger.consent_at(session, subject_id, p, now) for p in purposes]
    then = [ledger.consent_at(session, subject_id, p, at) for p in purposes] if at else []
    return LeadFile(
        hit=_hit(card),
        jurisdiction=card.jurisdiction,
        locale=card.locale,
        entries=entries,
        truncated=truncated,
        now=current,
        at=at,
        then=then,
        held=_held(ledger, session, subject_id),
    )
