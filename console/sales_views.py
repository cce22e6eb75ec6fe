"""The console's HTTP surface, part four: accounts and the hand-off SLA (issue #9).

Scoring's data comes through the providers the app factory hands the console
(:mod:`console.providers`); a provider left out shows as "no data". Who may do what:
admin, compliance and marketer see accounts and the SLA page; admin and marketer (sales
ops) acknowledge hand-offs; compliance reads the SLA page without acting for sales.
Which leads the SLA page and an account's page showed, and every acknowledgement, go to
the staff audit log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import audit, forms
from console.audit import StaffAction
from console.providers import AccountMemberRecord, AccountRecord, HandoffRecord, SalesRecord
from console.roles import Permission
from console.web import (
    Staff,
    checked_post,
    database_of,
    field,
    providers_of,
    render,
    require,
    staff_page,
)
from zeroparty.db import utcnow
from zeroparty.errors import Conflict, InvalidInput, NotFound

BANT_FIELDS = ("budget", "authority", "need", "timeline")
# The choices scoring accepts (scoring.qualification); it checks them again.
AUTHORITY_CHOICES = ("decision_maker", "influencer", "user", "none")
TIMELINE_CHOICES = ("immediate", "quarter", "half_year", "year", "later", "none")
ACCOUNTS_LIMIT = 500
ACCOUNTS_PAGE = 50
DOMAIN_RE = re.compile(r"[a-z0-9][a-z0-9.-]{0,252}")
HANDOFFS_LIMIT = 200
MAX_DOMAIN = 253
ACTOR_PREFIX = "staff:"  # like "api:<key name>" and "system:…" in scoring's records
NOTICES = {
    "acked": "Acknowledged: the SLA clock of this hand-off is stopped.",
    "already": "This hand-off was acknowledged before; nothing changed.",
}
LEAD_NOTICES = {
    "bant": "Qualification recorded; the lead is rescored.",
    "outcome": "Outcome recorded.",
    "outcome-same": "This outcome was recorded before; nothing changed.",
}


def staff_actor(staff: Staff) -> str:
    """How a staff member is named in scoring's records (who acknowledged)."""
    return f"{ACTOR_PREFIX}{staff.email}"


# ---------------------------------------------------------------- accounts


def _stage_filter(raw: str | None, names: Sequence[str]) -> str | None:
    if raw is None or raw.strip() == "":
        return None
    for name in names:
        if name.lower() == raw.strip().lower():
            return name
    raise InvalidInput(
        "stage: one of " + ", ".join(names), fields={"stage": "one of " + ", ".join(names)}
    )


@dataclass(frozen=True, slots=True)
class AccountsPage:
    """A page of accounts: ``start`` how many come before it, ``total`` how many match
    (``None``: unknown), ``after`` the domain it starts after, ``problems`` the inputs
    left out (named on the page, which then shows the first page)."""

    accounts: list[AccountRecord]
    start: int
    total: int | None
    after: str
    problems: dict[str, str]
    stages: tuple[str, ...] = ()

    @property
    def next_after(self) -> str | None:
        if len(self.accounts) < ACCOUNTS_PAGE:
            return None
        if self.total is not None and self.start + len(self.accounts) >= self.total:
            return None
        return self.accounts[-1].domain


def _accounts_params(
    params: Mapping[str, str], names: Sequence[str]
) -> tuple[str | None, str, int, dict[str, str]]:
    problems: dict[str, str] = {}
    stage = None
    try:
        stage = _stage_filter(params.get("stage"), names)
    except InvalidInput as exc:
        problems.update(exc.fields or {"stage": exc.message})
    after = params.get("after", "").strip().lower()
    if after and not DOMAIN_RE.fullmatch(after):
        problems["after"] = "a domain name to start after"
        after = ""
    raw_start = params.get("start", "").strip()
    start = 0
    if raw_start:
        if raw_start.isdigit() and len(raw_start) <= 9:
            start = int(raw_start)
        else:
            problems["start"] = "a number of accounts from 0"
    if problems:
        after, start = "", 0
    return stage, after, start, problems


def _accounts(request: Request, params: Mapping[str, str]) -> AccountsPage | None:
    providers = providers_of(request)
    with database_of(request).read() as session:
        names = providers.stage_names(session) if providers.stage_names is not None else ()
        stage, after, start, problems = _accounts_params(params, names)
        if providers.accounts_after is None:
            if providers.accounts is None:
                return None
            found = list(providers.accounts(session, stage, ACCOUNTS_LIMIT))
            return AccountsPage(found, 0, None, "", problems, names)
        found = list(providers.accounts_after(session, stage, after, ACCOUNTS_PAGE))
        total = providers.account_count(session, stage) if providers.account_count else None
        if after and not found and total:
            problems["after"] = f"no accounts after “{after}”"
            after, start = "", 0
            found = list(providers.accounts_after(session, stage, "", ACCOUNTS_PAGE))
        if total is not None and start + len(found) > total:
            start = max(0, total - len(found))  # a start that does not fit: as far as known
        return AccountsPage(found, start, total, after, problems, names)


@staff_page
async def accounts_page(request: Request) -> Response:
    """``GET /console/accounts[?stage=&after=&start=]``: accounts by company domain, a
    page at a time with the count of all; a stage or page that cannot be used is named
    (422) and the first page shown."""
    staff = await require(request, Permission.VIEW_ACCOUNTS)
    params = {key: value[:400] for key, value in request.query_params.items()}
    found = await database_of(request).run(_accounts, request, params)
    names = found.stages if found is not None else ()
    stage = None if found is None or "stage" in found.problems else params.get("stage")
    stage = next((n for n in names if stage and n.lower() == stage.strip().lower()), None)
    context = {
        "page": found,
        "accounts": found.accounts if found else None,
        "stage": stage,
        "stages": names,
        "truncated": found is not None
        and found.total is None
        and len(found.accounts) >= ACCOUNTS_LIMIT,
        "limit": ACCOUNTS_LIMIT,
    }
    status = 422 if found is not None and found.problems else 200
    return render(request, "accounts.html", context, staff=staff, status=status)


def _account(
    request: Request, staff: Staff, domain: str
) -> tuple[AccountRecord, list[AccountMemberRecord]]:
    provider = providers_of(request).account
    if provider is None:
        raise NotFound("no such account")
    database = database_of(request)
    with database.read() as session:
        found = provider(session, domain)
        if found is None:
            raise NotFound("no such account")
        account, members = found[0], list(found[1])
    with database.write() as session:
        # Which leads were shown (by pseudonymous id), like a lead search.
        detail = f"{account.domain}: " + " ".join(m.subject_id for m in members[:20])
        audit.record(session, staff.id, StaffAction.ACCOUNT_VIEW, detail=detail)
    return account, members


@staff_page
async def account_page(request: Request) -> Response:
    """``GET /console/accounts/{domain}``: one account with its members."""
    staff = await require(request, Permission.VIEW_ACCOUNTS)
    domain = request.path_params["domain"].strip().lower()
    if not domain or len(domain) > MAX_DOMAIN:
        raise NotFound("no such account")
    account, members = await run_in_threadpool(_account, request, staff, domain)
    context = {"account": account, "members": members}
    return render(request, "account.html", context, staff=staff)


# ---------------------------------------------------------------- hand-off SLA


@dataclass(frozen=True, slots=True)
class HandoffRow:
    """A hand-off as the SLA page shows it: overdue or the time left, in words."""

    handoff: HandoffRecord
    overdue: bool
    remaining: str
    due_soon: bool = False


def _span(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    parts.append(f"{minutes} min")
    return " ".join(parts)


def handoff_rows(found: Sequence[HandoffRecord], now: datetime) -> list[HandoffRow]:
    rows = []
    for handoff in found:
        left = handoff.due_at - now
        overdue = left < timedelta(0)
        text = f"overdue by {_span(left)}" if overdue else f"{_span(left)} left"
        rows.append(HandoffRow(handoff, overdue, text, handoff.state == "due_soon"))
    return rows


def _handoffs(
    request: Request, staff: Staff, now: datetime
) -> tuple[list[HandoffRow] | None, Mapping[str, int]]:
    """The rows the page shows (``None``: no scoring) and how many wait in all."""
    providers = providers_of(request)
    if providers.handoffs is None:
        return None, {}
    database = database_of(request)
    with database.read() as session:
        rows = handoff_rows(providers.handoffs(session, now, HANDOFFS_LIMIT), now)
        counts = (
            providers.handoff_counts(session, now) if providers.handoff_counts is not None else {}
        )
    if rows:
        # The page shows leads' emails: which leads it showed goes to the staff log.
        with database.write() as session:
            shown = " ".join(row.handoff.subject_id for row in rows[:20])
            audit.record(
                session, staff.id, StaffAction.SLA_VIEW, detail=f"{len(rows)} lead(s): {shown}"
            )
    return rows, counts


def _sla_page(request: Request, staff: Staff, extra: dict[str, Any], status: int = 200) -> Response:
    now = utcnow()
    done = request.query_params.get("done")
    rows, counts = _handoffs(request, staff, now)
    context = {
        "rows": rows,
        "counts": counts,
        "cut": [
            f"{HANDOFFS_LIMIT:,} of {counts[key]:,} {label}"
            for key, label in (
                ("breached", "breached"),
                ("due_soon", "due soon"),
                ("on_time", "on time"),
            )
            if counts.get(key, 0) > HANDOFFS_LIMIT
        ],
        "now": now,
        "may_ack": staff.may(Permission.ACKNOWLEDGE_HANDOFFS),
        "done": NOTICES.get(done or ""),
        "error": None,
        "limit": HANDOFFS_LIMIT,
        **extra,
    }
    return render(request, "sla.html", context, staff=staff, status=status)


@staff_page
async def sla_page(request: Request) -> Response:
    """``GET /console/sla``: hand-offs waiting for sales (breached, due soon, then the
    rest), with who may acknowledge."""
    staff = await require(request, Permission.VIEW_SLA)
    return await run_in_threadpool(_sla_page, request, staff, {})


def _acknowledge(request: Request, staff: Staff, subject_id: str) -> bool:
    provider = providers_of(request).acknowledge
    if provider is None:
        raise NotFound("hand-offs cannot be acknowledged here: no scoring")
    with database_of(request).write() as session:
        ack = provider(session, subject_id, staff_actor(staff), utcnow())
        outcome = "acknowledged" if ack.created else f"already acknowledged by {ack.actor}"
        audit.record(
            session,
            staff.id,
            StaffAction.HANDOFF_ACK,
            subject_id=subject_id,
            detail=f"{ack.stage}: {outcome}",
        )
    return ack.created


@staff_page
async def acknowledge_handoff(request: Request) -> Response:
    """``POST /console/sla/{id}/ack``: sales took the lead's current hand-off."""
    staff, _form = await checked_post(request, Permission.ACKNOWLEDGE_HANDOFFS)
    subject_id = forms.parse_subject_id(request.path_params["subject_id"])
    try:
        created = await run_in_threadpool(_acknowledge, request, staff, subject_id)
    except (Conflict, NotFound) as exc:
        extra = {"error": exc.message}
        return await run_in_threadpool(_sla_page, request, staff, extra, exc.status_code)
    return RedirectResponse(
        f"/console/sla?done={'acked' if created else 'already'}", status_code=303
    )


# ---------------------------------------------------------------- BANT and outcomes


def sales_of(request: Request, subject_id: str) -> SalesRecord | None:
    """What sales recorded about the lead, for its page (``None``: no scoring)."""
    provider = providers_of(request).sales_record
    if provider is None:
        return None
    with database_of(request).read() as session:
        return provider(session, subject_id)


def lead_notice(request: Request) -> str | None:
    return LEAD_NOTICES.get(request.query_params.get("done") or "")


def _record_bant(request: Request, staff: Staff, subject_id: str, values: dict[str, str]) -> None:
    provider = providers_of(request).record_bant
    if provider is None:
        raise NotFound("qualification cannot be recorded here: no scoring")
    with database_of(request).write() as session:
        provider(session, subject_id, values, staff_actor(staff), utcnow())
        given = ", ".join(name for name, value in values.items() if value)
        audit.record(
            session, staff.id, StaffAction.LEAD_QUALIFY, subject_id=subject_id, detail=given
        )


@staff_page
async def record_bant(request: Request) -> Response:
    """``POST /console/leads/{id}/bant``: budget, authority, need, timeline."""
    staff, form = await checked_post(request, Permission.RECORD_SALES)
    subject_id = forms.parse_subject_id(request.path_params["subject_id"])
    values = {name: field(form, name) for name in BANT_FIELDS}
    await run_in_threadpool(_record_bant, request, staff, subject_id, values)
    return RedirectResponse(f"/console/leads/{subject_id}?done=bant", status_code=303)


def _record_outcome(request: Request, staff: Staff, subject_id: str, outcome: str) -> bool:
    provider = providers_of(request).record_outcome
    if provider is None:
        raise NotFound("outcomes cannot be recorded here: no scoring")
    with database_of(request).write() as session:
        created = provider(session, subject_id, outcome, staff_actor(staff))
        audit.record(
            session,
            staff.id,
            StaffAction.LEAD_OUTCOME,
            subject_id=subject_id,
            detail=outcome if created else f"{outcome} (recorded before)",
        )
    return created


@staff_page
async def record_outcome(request: Request) -> Response:
    """``POST /console/leads/{id}/outcome``: the lead's opportunity won or lost."""
    staff, form = await checked_post(request, Permission.RECORD_SALES)
    subject_id = forms.parse_subject_id(request.path_params["subject_id"])
    created = await run_in_threadpool(
        _record_outcome, request, staff, subject_id, field(form, "outcome")
    )
    done = "outcome" if created else "outcome-same"
    return RedirectResponse(f"/console/leads/{subject_id}?done={done}", status_code=303)


routes = [
    Route("/console/accounts", accounts_page, methods=["GET"]),
    Route("/console/accounts/{domain}", account_page, methods=["GET"]),
    Route("/console/sla", sla_page, methods=["GET"]),
    Route("/console/sla/{subject_id}/ack", acknowledge_handoff, methods=["POST"]),
    Route("/console/leads/{subject_id}/bant", record_bant, methods=["POST"]),
    Route("/console/leads/{subject_id}/outcome", record_outcome, methods=["POST"]),
]
