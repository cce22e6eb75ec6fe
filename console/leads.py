"""Finding leads and reading their history: search, timeline, state now and at a moment.

A timeline shows every ledger entry of one lead with the exact notice text it names
(looked up by its SHA-256), the form version, source, method, confirmation and the kept
evidence; ``evidence`` is left out for roles that may not see it (marketers never see
IP addresses or user agents).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
class Held:
    """What one package holds about the lead: ``value`` the package's export (JSON
    values: dicts, lists, text, numbers), shown as tables and lists, never as raw JSON."""

    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class LeadCard:
    """What sales and marketing look at first. ``name_from`` says where the name was
    found: ``""`` the lead's profile, else the form it was typed into; ``stage``,
    ``score`` and ``probability`` are ``None`` without scoring data; ``points`` the
    score's points, one dict per rule (rule, points, source, consent_entry)."""

    name: str | None
    name_from: str
    company: str | None
    stage: str | None
    score: float | None
    probability: float | None
    points: list[dict[str, Any]]


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
    held: list[Held]
    card: LeadCard


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


def _held(ledger: ConsentLedger, session: Session, subject_id: str) -> list[Held]:
    """What each package holds about the lead (answers, topics, scores)."""
    sections = []
    for provider in ledger.personal_data_providers:
        if provider.name == LEDGER_PROVIDER:
            continue  # the profile is shown on its own; evidence with each entry
        value = provider.export(session, subject_id)
        if value:
            # Through JSON once: what is shown is exactly what an access request exports.
            sections.append(Held(provider.name, orjson.loads(orjson.dumps(value))))
    return sections


def _typed_fields(definitions: Sequence[Any]) -> dict[tuple[str, int], dict[str, str]]:
    """For each (slug, version): field name -> field type, wherever a field is declared
    in the definition (forms list fields; quizzes may nest them in steps)."""
    found: dict[tuple[str, int], dict[str, str]] = {}

    def walk(node: Any, into: dict[str, str]) -> None:
        if isinstance(node, dict):
            name, kind = node.get("name"), node.get("type")
            if isinstance(name, str) and isinstance(kind, str):
                into[name] = kind
            for child in node.values():
                walk(child, into)
        elif isinstance(node, list):
            for child in node:
                walk(child, into)

    for version in definitions:
        fields: dict[str, str] = {}
        try:
            walk(orjson.loads(version.definition), fields)
        except orjson.JSONDecodeError:
            continue
        found[(version.slug, int(version.version))] = fields
    return found


def _typed_answer(
    submissions: Any, types: dict[tuple[str, int], dict[str, str]], wanted: str
) -> tuple[str, str] | None:
    """The latest answer to a field of type ``wanted`` and the form it was typed into."""
    if not isinstance(submissions, list):
        return None
    for item in reversed(submissions):
        if not isinstance(item, dict) or not isinstance(item.get("answers"), dict):
            continue
        slug, version = item.get("form"), item.get("form_version")
        fields = types.get((str(slug), int(version))) if isinstance(version, int) else None
        for field_name, values in item["answers"].items():
            # Without the form's definition, a field named like the type stands for it.
            kind = fields.get(field_name) if fields else field_name
            if kind == wanted and isinstance(values, list) and values and str(values[0]).strip():
                return str(values[0]).strip(), str(slug)
    return None


def _card(hit: LeadHit, held: list[Held], definitions: Sequence[Any]) -> LeadCard:
    by_name = {section.name: section.value for section in held}
    types = _typed_fields(definitions) if "capture" in by_name else {}
    name, name_from = hit.name, ""
    if not name:
        typed = _typed_answer(by_name.get("capture"), types, "name")
        if typed:
            name, name_from = typed[0], f"typed into {typed[1]}"
    company_typed = _typed_answer(by_name.get("capture"), types, "company")
    company = company_typed[0] if company_typed else None
    scoring = by_name.get("scoring")
    stage = score = probability = None
    points: list[dict[str, Any]] = []
    if isinstance(scoring, dict):
        stage = scoring.get("stage")
        score = scoring.get("score")
        conversion = scoring.get("conversion")
        if isinstance(conversion, dict) and isinstance(conversion.get("probability"), int | float):
            probability = float(conversion["probability"])
        raw_points = scoring.get("points")
        if isinstance(raw_points, list):
            points = [p for p in raw_points if isinstance(p, dict)]
    return LeadCard(name, name_from, company, stage, score, probability, points)


def lead_file(
    ledger: ConsentLedger,
    session: Session,
    subject_id: str,
    *,
    with_evidence: bool,
    at: datetime | None = None,
    definitions: Callable[[Session], Sequence[Any]] | None = None,
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
    held = _held(ledger, session, subject_id)
    hit = _hit(card)
    needs_types = not hit.name or any(section.name == "capture" for section in held)
    versions = definitions(session) if definitions is not None and needs_types else []
    return LeadFile(
        hit=hit,
        jurisdiction=card.jurisdiction,
        locale=card.locale,
        entries=entries,
        truncated=truncated,
        now=current,
        at=at,
        then=then,
        held=held,
        card=_card(hit, held, versions),
    )
