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

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, case, func, select
from sqlalchemy.engine import Connection

from consent_ledger.read_model import consent_states, email_domain, lead_profiles
from scoring import services
from scoring.lifecycle import MAX_STAGES, Lifecycle
from scoring.models import LeadAttribute, Qualification, ScoredLead
from scoring.rules import ScoringModel

COMMITTEE_FIELDS = ("job_title",)
MAX_COMMITTEE = 50
# Leads per account asked for up to which a stage filter starts from the stage's leads
# rather than walking domains (see :func:`list_accounts`).
SPARSE_STAGE = 20

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

_leads, _attrs, _qual = (
    cast(Table, m.__table__) for m in (ScoredLead, LeadAttribute, Qualification)
)
_cs, _profiles = consent_states, lead_profiles
# A member's place in the lifecycle in force: its stages are parameters (``rank_1`` …,
# see :func:`rank_params`), so the statements below are built once for any lifecycle.
_RANK = case(
    *((_leads.c.stage == bindparam(f"rank_{i}"), i) for i in range(1, MAX_STAGES + 1)),
    else_=0,
)


def rank_params(lifecycle: Lifecycle) -> dict[str, str]:
    """The parameters of :data:`_RANK` for ``lifecycle`` (unused places match nothing)."""
    names = list(lifecycle.stages) + [""] * (MAX_STAGES - len(lifecycle.stages))
    return {f"rank_{i}": name for i, name in enumerate(names, start=1)}


def _stage_of(lifecycle: Lifecycle, rank: int) -> str:
    return lifecycle.stages[rank - 1] if rank >= 1 else lifecycle.start


def free_mail_domains(model: ScoringModel) -> frozenset[str]:
    return FREE_MAIL | frozenset(model.free_mail)


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].lower()


def forms_account(email: str, model: ScoringModel) -> bool:
    """Whether a lead with ``email`` belongs to an account (not a free-mail address)."""
    return domain_of(email) not in free_mail_domains(model)


# Indexed (``ix_subject_profiles_email_domain``): every statement below walks or looks
# up this very expression, so a page reads only its own domains' members.
_domain = email_domain(_profiles.c.email)


def _members(*columns: Any) -> Select[Any]:
    """``columns`` of permissioned, scored leads (gating consent for ``:purpose`` live
    now), driven from ``subject_profiles`` so that a condition on :data:`_domain` is an
    index range or look-up and each profile is joined to its scoring row and consent."""
    return (
        select(*columns)
        .select_from(_profiles)
        .join(_leads, _leads.c.subject_id == _profiles.c.subject_id)
        .join(
            _cs,
            (_cs.c.subject_id == _profiles.c.subject_id)
            & (_cs.c.purpose_key == bindparam("purpose"))
            & _cs.c.permitted,
        )
    )


# Statements are built once (with the page's values as parameters): building them per
# call cost more than running them for a small account.
_NOT_FREE_MAIL = _domain.not_in(bindparam("free_mail", expanding=True))
# The next ``:width`` domains after ``:after`` that any profile has: the domain index
# alone, no lead read (a domain of unscored profiles is among them and forms no account).
_NEXT_DOMAINS = (
    select(_domain)
    .where(_domain > bindparam("after"), _NOT_FREE_MAIL)
    .distinct()
    .order_by(_domain)
    .limit(bindparam("width"))
)
_ACCOUNT_COLUMNS = (
    _domain.label("domain"),
    func.count().label("members"),
    func.sum(_leads.c.score).label("score"),
    func.max(_leads.c.score).label("top_score"),
    func.max(_RANK).label("rank"),
)
_AT_STAGE = func.max(_RANK) == bindparam("rank")
# The accounts of the domains in (``:after``, ``:last``], in order, ``:limit`` at most.
_PAGE = (
    _members(*_ACCOUNT_COLUMNS)
    .where(_domain > bindparam("after"), _domain <= bindparam("last"), _NOT_FREE_MAIL)
    .group_by(_domain)
    .order_by(_domain)
    .limit(bindparam("limit"))
)
_PAGE_AT_STAGE = _PAGE.having(_AT_STAGE)
# A stage with few leads is read from them instead (``ix_scoring_leads_stage_subject``):
# how many leads it has, counted up to ``:cap`` only; the domains after ``:after`` of
# its permissioned leads, in order; and those of ``:domains`` whose account is at it.
_STAGE_LEADS = select(func.count()).select_from(
    select(_leads.c.subject_id)
    .where(_leads.c.stage == bindparam("stage"))
    .limit(bindparam("cap"))
    .subquery()
)
_STAGE_DOMAINS = (
    _members(_domain)
    .where(_leads.c.stage == bindparam("stage"), _domain > bindparam("after"), _NOT_FREE_MAIL)
    .distinct()
    .order_by(_domain)
)
_ACCOUNTS_AT_STAGE = (
    _members(*_ACCOUNT_COLUMNS)
    .where(_domain.in_(bindparam("domains", expanding=True)))
    .group_by(_domain)
    .having(_AT_STAGE)
    .order_by(_domain)
)
# Members of one domain and committees of given domains: the callers never pass a
# free-mail domain (checked in Python, or taken from a page), so no free-mail filter.
_ACCOUNT = (
    _members(
        _leads.c.subject_id,
        _leads.c.score,
        _leads.c.stage,
        _RANK.label("rank"),
        _profiles.c.email,
    )
    .where(_domain == bindparam("domain"))
    .order_by(_leads.c.subject_id)
)
# A member's current authority is its latest ``authority`` row (a cleared one is NULL),
# looked up per member by the subject/field index.
_AUTHORITY = (
    select(_qual.c.value)
    .where(_qual.c.subject_id == _profiles.c.subject_id, _qual.c.field == "authority")
    .order_by(_qual.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
_COMMITTEES = (
    _members(_domain.label("domain"), _attrs.c.value.label("title"), _AUTHORITY.label("authority"))
    .outerjoin(
        _attrs,
        (_attrs.c.subject_id == _profiles.c.subject_id)
        & (_attrs.c.kind == "field")
        & _attrs.c.name.in_(COMMITTEE_FIELDS),
    )
    .where(_domain.in_(bindparam("domains", expanding=True)))
    .distinct()
)
_JOB_TITLES = select(_attrs.c.subject_id, _attrs.c.value).where(
    _attrs.c.subject_id.in_(bindparam("subject_ids", expanding=True)),
    _attrs.c.kind == "field",
    _attrs.c.name == "job_title",
)


@dataclass(frozen=True, slots=True)
class Account:
    domain: str
    members: int
    score: float
    top_score: float
    stage: str
    committee: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Member:
    subject_id: str
    email: str
    stage: str
    score: float
    job_title: str | None


def _committees(
    connection: Connection, model: ScoringModel, domains: list[str]
) -> dict[str, tuple[str, ...]]:
    """Job titles and current BANT authorities of the members of ``domains`` (none a
    free-mail domain), in one pass over those members."""
    if not domains:
        return {}
    found: dict[str, set[str]] = defaultdict(set)
    for row in connection.execute(_COMMITTEES, {"purpose": model.purpose, "domains": domains}):
        for value in (row.title, row.authority):
            if value is not None:
                found[row.domain].add(str(value).strip())
    return {
        domain: tuple(sorted(v for v in values if v)[:MAX_COMMITTEE])
        for domain, values in found.items()
    }


def _walk(
    connection: Connection, model: ScoringModel, stage: str | None, limit: int, after: str
) -> list[Any]:
    """The page's accounts by walking domains in order from ``after``.

    A page never aggregates every lead: it takes the next ``limit`` domains from the
    domain index, aggregates the members of that range of domains only (grouped and
    filtered by stage in SQL) and, while the page is not full (domains without a
    permissioned member, or not at ``stage``), goes on with the next range, as wide as
    the accounts still missing need at the rate found so far (twice as wide while none
    was found). Two bounded statements per round keep both planners on the index
    whatever their statistics say: one grouped query over all domains with ``HAVING …
    LIMIT`` made PostgreSQL aggregate everything, since it cannot tell how many groups
    pass.
    """
    free_mail = sorted(free_mail_domains(model))
    page = _PAGE if stage is None else _PAGE_AT_STAGE
    rows: list[Any] = []
    width, walked = limit, 0
    while len(rows) < limit:
        domains = list(
            connection.scalars(
                _NEXT_DOMAINS, {"after": after, "free_mail": free_mail, "width": width}
            )
        )
        if not domains:
            break
        params = {
            "purpose": model.purpose,
            "free_mail": free_mail,
            "after": after,
            "last": domains[-1],
            "limit": limit - len(rows),
            "rank": None if stage is None else model.lifecycle.rank(stage),
            **rank_params(model.lifecycle),
        }
        rows += connection.execute(page, params)
        if len(domains) < width:
            break  # the last domain was in this range
        walked += len(domains)
        missing = limit - len(rows)
        after = domains[-1]
        width = math.ceil(missing * walked / len(rows) * 1.25) if rows else width * 2
    return rows


def _from_stage(
    connection: Connection, model: ScoringModel, stage: str, limit: int, after: str
) -> list[Any]:
    """The page's accounts at ``stage``, from the leads at ``stage``: an account at a
    stage has a member at it, so the candidates are those members' domains (in order),
    checked ``limit`` at a time (a member further on takes a candidate out)."""
    candidates = list(
        connection.scalars(
            _STAGE_DOMAINS,
            {
                "purpose": model.purpose,
                "stage": stage,
                "after": after,
                "free_mail": sorted(free_mail_domains(model)),
            },
        )
    )
    rows: list[Any] = []
    while candidates and len(rows) < limit:
        chunk, candidates = (
            candidates[: limit - len(rows)],
            candidates[limit - len(rows) :],
        )
        rows += connection.execute(
            _ACCOUNTS_AT_STAGE,
            {
                "purpose": model.purpose,
                "domains": chunk,
                "rank": model.lifecycle.rank(stage),
                **rank_params(model.lifecycle),
            },
        )
    return rows


def list_accounts(
    connection: Connection, *, stage: str | None, limit: int, after: str = ""
) -> list[Account]:
    """Accounts by domain after ``after`` (keyset pagination), those at ``stage`` only
    if given; then one query for the page's committees.

    Walking domains (:func:`_walk`) finds a page after reading about the page's own
    members when most accounts qualify; at a stage few leads reach, it would read
    nearly every lead (in domain order, slower than one pass in table order) before
    the page is full. So a stage with at most :data:`SPARSE_STAGE` leads per account
    asked for is read from its leads instead (:func:`_from_stage`).
    """
    model = services.require_model(connection).model
    rows: list[Any]
    cap = limit * SPARSE_STAGE
    if (
        stage is not None
        and (connection.scalar(_STAGE_LEADS, {"stage": stage, "cap": cap + 1}) or 0) <= cap
    ):
        rows = _from_stage(connection, model, stage, limit, after)
    else:
        rows = _walk(connection, model, stage, limit, after)
    committees = _committees(connection, model, [r.domain for r in rows])
    return [
        Account(
            r.domain,
            int(r.members),
            float(round(r.score, 2)),
            float(r.top_score),
            _stage_of(model.lifecycle, int(r.rank)),
            committees.get(r.domain, ()),
        )
        for r in rows
    ]


def get_account(connection: Connection, domain: str) -> tuple[Account, list[Member]] | None:
    """The account of ``domain`` with its permissioned members, or ``None`` (no
    permissioned member, or a free-mail domain). Its members are found by the domain
    index."""
    model = services.require_model(connection).model
    domain = domain.lower()
    if domain in free_mail_domains(model):
        return None
    rows = list(
        connection.execute(
            _ACCOUNT,
            {"purpose": model.purpose, "domain": domain, **rank_params(model.lifecycle)},
        )
    )
    if not rows:
        return None
    titles = {
        r.subject_id: r.value
        for r in connection.execute(_JOB_TITLES, {"subject_ids": [r.subject_id for r in rows]})
    }
    account = Account(
        domain,
        len(rows),
        float(round(sum(r.score for r in rows), 2)),
        float(max(r.score for r in rows)),
        _stage_of(model.lifecycle, max(int(r.rank) for r in rows)),
        _committees(connection, model, [domain]).get(domain, ()),
    )
    return account, [
        Member(r.subject_id, r.email, str(r.stage), r.score, titles.get(r.subject_id)) for r in rows
    ]
