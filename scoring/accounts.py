"""Accounts (account-based view): permissioned leads grouped by company e-mail domain.

Rules:
- An account is the e-mail domain (after ``@``, exact: ``eu.acme.example`` and
  ``acme.example`` are two accounts) of at least one permissioned, scored lead.
- Free-mail domains never form an account: the built-in :data:`FREE_MAIL` plus the
  site's ``[scoring.accounts] free_mail`` list.
- Members are leads with a scoring row whose gating consent is live *now*: accounts are
  computed at read time, in SQL, from ``scoring_leads`` and ``consent_state``, so a
  withdrawal (which also deletes the lead's scoring row) takes a member out at once.
- Account score = the **sum** of its members' current scores (a wider engaged buying
  committee is a stronger account); ``top_score`` is the best member's score.
- Account stage = the furthest stage any member reached.
- Buying committee = the distinct job titles (``job_title`` answers kept for a purpose
  the member still permits) and BANT authorities of its members.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, case, func, select
from sqlalchemy.engine import Connection

from consent_ledger.models import ConsentState, SubjectProfile
from scoring import services
from scoring.models import LeadAttribute, Qualification, ScoredLead
from scoring.rules import ScoringModel
from scoring.stages import Stage

COMMITTEE_FIELDS = ("job_title",)
MAX_COMMITTEE = 50

# Common consumer mail providers (and their country variants); sites add theirs.
FREE_MAIL = frozenset(
    {
        "aol.com",
        "gmail.com",
        "googlemail.com",
        "gmx.at",
        "gmx.ch",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "hey.com",
        "hotmail.co.uk",
        "hotmail.com",
        "hotmail.de",
        "hotmail.fr",
        "icloud.com",
        "live.com",
        "mac.com",
        "mail.com",
        "mail.ru",
        "me.com",
        "msn.com",
        "outlook.com",
        "outlook.de",
        "pm.me",
        "proton.me",
        "protonmail.com",
        "qq.com",
        "t-online.de",
        "tutanota.com",
        "web.de",
        "yahoo.co.uk",
        "yahoo.com",
        "yahoo.de",
        "yahoo.fr",
        "yandex.com",
        "yandex.ru",
        "ymail.com",
        "zoho.com",
        "163.com",
        "126.com",
    }
)

_leads, _cs, _profiles, _attrs, _qual = (
    cast(Table, m.__table__)
    for m in (ScoredLead, ConsentState, SubjectProfile, LeadAttribute, Qualification)
)
_RANK = case({stage.value: stage.rank for stage in Stage}, value=_leads.c.stage, else_=0)
_BY_RANK = {stage.rank: stage for stage in Stage}


def free_mail_domains(model: ScoringModel) -> frozenset[str]:
    return FREE_MAIL | frozenset(model.free_mail)


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].lower()


def forms_account(email: str, model: ScoringModel) -> bool:
    """Whether a lead with ``email`` belongs to an account (not a free-mail address)."""
    return domain_of(email) not in free_mail_domains(model)


def _domain(connection: Connection) -> Any:
    # Emails are stored normalised (lower-case, one '@' before the domain part).
    email = _profiles.c.email
    if connection.dialect.name == "postgresql":
        return func.split_part(email, "@", 2)
    return func.substr(email, func.instr(email, "@") + 1)


def _members(connection: Connection, model: ScoringModel) -> Any:
    """Permissioned, scored leads with their domain, free-mail excluded (a subquery)."""
    domain = _domain(connection)
    return (
        select(
            domain.label("domain"),
            _leads.c.subject_id,
            _leads.c.score,
            _leads.c.stage,
            _RANK.label("rank"),
            _profiles.c.email,
        )
        .join(_profiles, _profiles.c.subject_id == _leads.c.subject_id)
        .join(
            _cs,
            (_cs.c.subject_id == _leads.c.subject_id)
            & (_cs.c.purpose_key == model.purpose)
            & _cs.c.permitted,
        )
        .where(domain.not_in(sorted(free_mail_domains(model))))
        .subquery("members")
    )


@dataclass(frozen=True, slots=True)
class Account:
    domain: str
    members: int
    score: float
    top_score: float
    stage: Stage
    committee: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Member:
    subject_id: str
    email: str
    stage: Stage
    score: float
    job_title: str | None


def _committees(
    connection: Connection, members: Any, domains: list[str]
) -> dict[str, tuple[str, ...]]:
    if not domains:
        return {}
    found: dict[str, set[str]] = defaultdict(set)
    titles = (
        select(members.c.domain, _attrs.c.value)
        .join(_attrs, _attrs.c.subject_id == members.c.subject_id)
        .where(
            members.c.domain.in_(domains),
            _attrs.c.kind == "field",
            _attrs.c.name.in_(COMMITTEE_FIELDS),
        )
        .distinct()
    )
    latest = select(func.max(_qual.c.id)).group_by(_qual.c.subject_id, _qual.c.field)
    authorities = (
        select(members.c.domain, _qual.c.value)
        .join(_qual, _qual.c.subject_id == members.c.subject_id)
        .where(
            members.c.domain.in_(domains),
            _qual.c.field == "authority",
            _qual.c.value.is_not(None),
            _qual.c.id.in_(latest.scalar_subquery()),
        )
        .distinct()
    )
    for row in connection.execute(titles.union(authorities)):
        found[row.domain].add(str(row.value).strip())
    return {
        domain: tuple(sorted(v for v in values if v)[:MAX_COMMITTEE])
        for domain, values in found.items()
    }


def list_accounts(
    connection: Connection, *, stage: Stage | None, limit: int, after: str = ""
) -> list[Account]:
    """Accounts by domain after ``after`` (keyset pagination), those at ``stage`` only
    if given. One grouped query over the members, one for the page's committees."""
    model = services.require_model(connection).model
    members = _members(connection, model)
    stmt = (
        select(
            members.c.domain,
            func.count().label("members"),
            func.sum(members.c.score).label("score"),
            func.max(members.c.score).label("top_score"),
            func.max(members.c.rank).label("rank"),
        )
        .where(members.c.domain > after)
        .group_by(members.c.domain)
        .order_by(members.c.domain)
        .limit(limit)
    )
    if stage is not None:
        stmt = stmt.having(func.max(members.c.rank) == stage.rank)
    rows = list(connection.execute(stmt))
    committees = _committees(connection, members, [r.domain for r in rows])
    return [
        Account(
            r.domain,
            int(r.members),
            float(round(r.score, 2)),
            float(r.top_score),
            _BY_RANK[int(r.rank)],
            committees.get(r.domain, ()),
        )
        for r in rows
    ]


def get_account(connection: Connection, domain: str) -> tuple[Account, list[Member]] | None:
    """The account of ``domain`` with its permissioned members, or ``None`` (no
    permissioned member, or a free-mail domain)."""
    model = services.require_model(connection).model
    domain = domain.lower()
    if domain in free_mail_domains(model):
        return None
    members = _members(connection, model)
    rows = list(
        connection.execute(
            select(members).where(members.c.domain == domain).order_by(members.c.subject_id)
        )
    )
    if not rows:
        return None
    titles = {
        r.subject_id: r.value
        for r in connection.execute(
            select(_attrs.c.subject_id, _attrs.c.value).where(
                _attrs.c.subject_id.in_([r.subject_id for r in rows]),
                _attrs.c.kind == "field",
                _attrs.c.name == "job_title",
            )
        )
    }
    account = Account(
        domain,
        len(rows),
        float(round(sum(r.score for r in rows), 2)),
        float(max(r.score for r in rows)),
        _BY_RANK[max(int(r.rank) for r in rows)],
        _committees(connection, members, [domain]).get(domain, ()),
    )
    return account, [
        Member(r.subject_id, r.email, Stage(r.stage), r.score, titles.get(r.subject_id))
        for r in rows
    ]
