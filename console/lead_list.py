"""The lead list: every lead, newest first, filtered by what was typed (an email, its
beginning, or a lead id), lifecycle stage, a purpose the lead permits now, the form or
quiz and the source of its entries, and when it was first seen; with the true count
and numbered pages.

A filter value that cannot be used (an unknown stage or purpose, a date that is not a
date, a page past the last) is named in a message and left out; the list then shows its
first page, never an error page without the list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from consent_ledger import read_model
from consent_ledger.actions import ConsentSource
from consent_ledger.api import ConsentLedger
from console.forms import SLUG
from console.providers import ConsoleProviders

PAGE_SIZE = 50
MAX_QUERY = 320
MAX_PAGE = 1_000_000
LEAD_ID = re.compile(r"[0-9a-f]{32}")
FILTERS = ("q", "stage", "purpose", "form", "source", "from", "to")


@dataclass(frozen=True, slots=True)
class LeadFilters:
    q: str | None = None
    stage: str | None = None
    purpose: str | None = None
    form: str | None = None
    source: str | None = None
    since: date | None = None
    until: date | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, name) is not None for name in self.__slots__)

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for the pages' links)."""
        values = {
            "q": self.q,
            "stage": self.stage,
            "purpose": self.purpose,
            "form": self.form,
            "source": self.source,
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
        }
        return {key: value for key, value in values.items() if value}


@dataclass(frozen=True, slots=True)
class LeadRow:
    subject_id: str
    email: str | None
    name: str | None
    created_at: datetime
    erased: bool
    stage: str | None
    score: float | None
    permitted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Choices:
    stages: tuple[str, ...]
    purposes: list[str]
    forms: list[str]
    sources: list[str]


@dataclass(frozen=True, slots=True)
class LeadListPage:
    filters: LeadFilters
    problems: dict[str, str]
    rows: list[LeadRow]
    total: int
    page: int
    pages: int
    choices: Choices
    scored: bool
    query: dict[str, str] = field(default_factory=dict)

    @property
    def first_shown(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1 if self.rows else 0

    @property
    def last_shown(self) -> int:
        return (self.page - 1) * PAGE_SIZE + len(self.rows)


def _day(raw: str, name: str, problems: dict[str, str]) -> date | None:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        problems[name] = f"“{raw[:40]}” is not a date like 2026-11-25"
        return None
    if not 1970 <= day.year <= 9998:
        problems[name] = "out of range"
        return None
    return day


def parse_filters(
    params: Mapping[str, str], choices: Choices
) -> tuple[LeadFilters, int, dict[str, str]]:
    """The usable filters and page number, and a problem per value left out."""
    problems: dict[str, str] = {}

    def value(name: str) -> str | None:
        raw = params.get(name, "").strip()
        return raw or None

    q = value("q")
    if q is not None:
        q = q.lower()
        if len(q) > MAX_QUERY:
            problems["q"] = f"at most {MAX_QUERY} characters"
            q = None
    stage = value("stage")
    if stage is not None:
        known = {name.lower(): name for name in choices.stages}
        if not choices.stages:
            problems["stage"] = "no stages: scoring is not available"
            stage = None
        elif stage.lower() in known:
            stage = known[stage.lower()]
        else:
            problems["stage"] = "one of " + ", ".join(choices.stages)
            stage = None
    purpose = value("purpose")
    if purpose is not None and purpose not in choices.purposes:
        problems["purpose"] = "one of " + ", ".join(choices.purposes)
        purpose = None
    form = value("form")
    if form is not None and not SLUG.match(form):
        problems["form"] = "a form or quiz slug (lower-case letters, digits, - and _)"
        form = None
    source = value("source")
    if source is not None and source not in choices.sources:
        problems["source"] = "one of " + ", ".join(choices.sources)
        source = None
    since = _day(raw, "from", problems) if (raw := value("from")) else None
    until = _day(raw, "to", problems) if (raw := value("to")) else None
    if since and until and until < since:
        problems["to"] = "must not be before from"
        until = None
    page = 1
    raw_page = value("page")
    if raw_page is not None:
        if raw_page.isdigit() and 1 <= int(raw_page) <= MAX_PAGE:
            page = int(raw_page)
        else:
            problems["page"] = "a page number from 1"
    filters = LeadFilters(q, stage, purpose, form, source, since, until)
    return filters, page, problems


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(
    filters: LeadFilters, providers: ConsoleProviders, dialect: str, first_stage: str
) -> list[ColumnElement[bool]]:
    leads, profiles = read_model.leads, read_model.lead_profiles
    entries, states = read_model.ledger_entries, read_model.consent_states
    where: list[ColumnElement[bool]] = []
    if filters.q is not None:
        if LEAD_ID.fullmatch(filters.q):
            where.append(leads.c.subject_id == filters.q)
        else:
            prefix: ColumnElement[bool] = profiles.c.email.like(
                _escape_like(filters.q) + "%", escape="\\"
            )
            if dialect == "sqlite":
                # SQLite's LIKE ignores case and so cannot use the index on email: this
                # range (emails are stored lower-cased) can, and holds exactly the
                # addresses that start with the text.
                prefix = and_(
                    profiles.c.email >= filters.q,
                    profiles.c.email < filters.q + "\U0010ffff",
                    prefix,
                )
            where.append(prefix)
    if filters.stage is not None and providers.stage_condition is not None:
        where.append(providers.stage_condition(leads.c.subject_id, filters.stage, first_stage))
    if filters.purpose is not None:
        where.append(
            exists().where(
                states.c.subject_id == leads.c.subject_id,
                states.c.purpose_key == filters.purpose,
                states.c.permitted.is_(True),
            )
        )
    if filters.form is not None:
        where.append(
            exists().where(
                entries.c.subject_id == leads.c.subject_id,
                entries.c.source_ref.like(_escape_like(filters.form) + "@v%", escape="\\"),
            )
        )
    if filters.source is not None:
        where.append(
            exists().where(
                entries.c.subject_id == leads.c.subject_id, entries.c.source == filters.source
            )
        )
    if filters.since is not None:
        where.append(leads.c.created_at >= datetime.combine(filters.since, time(), tzinfo=UTC))
    if filters.until is not None:
        end = datetime.combine(filters.until, time(), tzinfo=UTC) + timedelta(days=1)
        where.append(leads.c.created_at < end)
    return where


def _base(
    where: Sequence[ColumnElement[bool]], columns: Sequence[ColumnElement[Any]]
) -> Select[Any]:
    leads, profiles = read_model.leads, read_model.lead_profiles
    return (
        select(*columns)
        .select_from(leads.outerjoin(profiles, profiles.c.subject_id == leads.c.subject_id))
        .where(*where)
    )


def choices_of(ledger: ConsentLedger, session: Session, providers: ConsoleProviders) -> Choices:
    forms: list[str] = []
    if providers.definition_versions is not None:
        forms = sorted({v.slug for v in providers.definition_versions(session)})
    return Choices(
        providers.stage_names(session) if providers.stage_names is not None else (),
        ledger.purpose_keys(session),
        forms,
        [s.value for s in ConsentSource],
    )


def lead_list(
    ledger: ConsentLedger,
    session: Session,
    providers: ConsoleProviders,
    params: Mapping[str, str],
) -> LeadListPage:
    """One page of the list: the count of every lead the filters match, and the page."""
    choices = choices_of(ledger, session, providers)
    filters, page, problems = parse_filters(params, choices)
    dialect = session.get_bind().dialect.name
    first_stage = choices.stages[0] if choices.stages else "Lead"
    where = _conditions(filters, providers, dialect, first_stage)
    leads, profiles, states = read_model.leads, read_model.lead_profiles, read_model.consent_states
    total = int(session.execute(_base(where, [func.count()])).scalar_one())
    pages = max(1, -(-total // PAGE_SIZE))
    if page > pages:
        problems["page"] = f"there {'is' if pages == 1 else 'are'} only {pages} page" + (
            "" if pages == 1 else "s"
        )
        page = 1
    rows = session.execute(
        _base(
            where,
            [
                leads.c.subject_id,
                profiles.c.email,
                profiles.c.name,
                leads.c.created_at,
                leads.c.erased_at,
            ],
        )
        .order_by(leads.c.created_at.desc(), leads.c.subject_id.desc())
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    ids = [row.subject_id for row in rows]
    permitted: dict[str, list[str]] = {}
    if ids:
        for subject_id, purpose in session.execute(
            select(states.c.subject_id, states.c.purpose_key)
            .where(states.c.subject_id.in_(ids), states.c.permitted.is_(True))
            .order_by(states.c.purpose_key)
        ):
            permitted.setdefault(subject_id, []).append(purpose)
    stages = providers.lead_stages(session, ids) if providers.lead_stages and ids else {}
    scored = providers.lead_stages is not None
    found = [
        LeadRow(
            subject_id=row.subject_id,
            email=row.email,
            name=row.name,
            created_at=row.created_at,
            erased=row.erased_at is not None,
            stage=(stages[row.subject_id].stage if row.subject_id in stages else first_stage)
            if scored
            else None,
            score=stages[row.subject_id].score if row.subject_id in stages else None,
            permitted=tuple(permitted.get(row.subject_id, ())),
        )
        for row in rows
    ]
    return LeadListPage(
        filters, problems, found, total, page, pages, choices, scored, filters.query()
    )
