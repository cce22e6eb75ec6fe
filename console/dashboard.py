"""The console's home: the numbers a marketer and a compliance officer look at first,
each a tile with a headline figure, a line of detail, a small chart and a link to the
page that explains it.

Everything is read in one read transaction: the ledger through
:mod:`consent_ledger.read_model` and :class:`ConsentLedger`, data-subject requests from
:mod:`consent_ledger.requests`, forms and scoring through the console's providers. A
tile the staff member's role may not see is not built (its queries are not made).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent_ledger import read_model
from consent_ledger import requests as subject_requests
from consent_ledger.actions import ConsentAction
from consent_ledger.api import ConsentLedger
from console import health, reports
from console.charts import Chart, Series, format_value
from console.providers import ConsoleProviders
from console.roles import Permission
from zeroparty.db import utcnow

WEEKS = 8
HEALTH_RUNS = 8


@dataclass(frozen=True, slots=True)
class Tile:
    """One tile: ``figure`` the headline number (as text), ``detail`` one line under it,
    ``chart`` drawn beside it (``None``: nothing to draw), ``href`` where to read more,
    ``alert``: the figure needs someone's attention."""

    key: str
    title: str
    figure: str
    detail: str
    chart: Chart | None
    href: str
    link: str
    alert: bool = False


@dataclass(frozen=True, slots=True)
class Dashboard:
    since: date
    tiles: list[Tile]
    missing: list[str]


def _week_categories(weeks: list[date]) -> list[str]:
    return [w.strftime("%d %b") for w in weeks]


def _weekly(counts: dict[date, int], weeks: list[date]) -> list[int]:
    return [counts.get(w, 0) for w in weeks]


def _leads_tile(session: Session, since: datetime, weeks: list[date]) -> Tile:
    leads = read_model.leads
    day = func.date(leads.c.created_at)
    total, erased = session.execute(
        select(func.count(), func.count(leads.c.erased_at)).select_from(leads)
    ).one()
    rows = session.execute(
        select(day, func.count()).where(leads.c.created_at >= since).group_by(day)
    ).all()
    per_week: dict[date, int] = defaultdict(int)
    for value, count in rows:
        per_week[reports._monday(reports._as_date(value))] += int(count)
    new = _weekly(per_week, weeks)
    chart = Chart(
        "dash-leads",
        "New leads per week",
        "Leads first seen each week (from a form, a quiz, an import or the API).",
        _week_categories(weeks),
        [Series("new leads", new)],
    )
    live = int(total) - int(erased)
    return Tile(
        "leads",
        "Leads",
        f"{live:,}",
        f"{new[-1]:,} new this week, {sum(new):,} in {len(weeks)} weeks; {int(erased):,} erased",
        chart,
        "/console/leads",
        "All leads",
    )


def _permitted_tile(ledger: ConsentLedger, session: Session) -> Tile:
    states = read_model.consent_states
    counted: dict[str, int] = dict(
        session.execute(
            select(states.c.purpose_key, func.count())
            .where(states.c.permitted.is_(True))
            .group_by(states.c.purpose_key)
        ).all()
    )
    purposes = ledger.purpose_keys(session)
    values = [int(counted.get(p, 0)) for p in purposes]
    chart = Chart(
        "dash-permitted",
        "Leads permitted per purpose",
        "Leads whose consent for each purpose is live now (granted, confirmed where "
        "double opt-in applies, not withdrawn or expired).",
        purposes,
        [Series("permitted leads", values)],
    )
    best = max(zip(values, purposes, strict=True), default=(0, "—"))
    return Tile(
        "permitted",
        "Permitted leads per purpose",
        f"{sum(values):,}",
        f"live consents over {len(purposes)} purposes; most: {best[1]} ({best[0]:,})",
        chart,
        f"/console/leads?purpose={best[1]}" if best[0] else "/console/leads",
        f"Leads permitting {best[1]}" if best[0] else "All leads",
    )


def _rate_tiles(
    ledger: ConsentLedger,
    session: Session,
    providers: ConsoleProviders,
    since: datetime,
    weeks: list[date],
) -> tuple[list[Tile], list[str]]:
    actions = [
        a.value for a in (ConsentAction.GRANTED, ConsentAction.WITHDRAWN, ConsentAction.CONFIRMED)
    ]
    rows = reports._daily(ledger, session, since, actions)
    tiles: list[Tile] = []
    missing: list[str] = []
    if providers.submission_weeks is not None:
        by_purpose, _by_form = reports._opt_in_rates(
            rows, weeks, providers.submission_weeks(session, since)
        )
        shown = sum(int(r[2]) for r in by_purpose.rows)
        ticked = sum(int(r[3]) for r in by_purpose.rows)
        rate = reports._pct(ticked, shown)
        tiles.append(
            Tile(
                "opt-in",
                "Opt-in rate",
                format_value(rate, "%") if shown else "—",
                f"{ticked:,} of {shown:,} consent boxes shown in {len(weeks)} weeks were ticked",
                by_purpose.chart,
                "/console/reports",
                "Opt-in rates per purpose and form",
            )
        )
    else:
        missing.append("opt-in rate (no form data: capture is not connected)")
    double = reports._double_opt_in(rows, weeks)
    asked = sum(int(r[1]) for r in double.rows)
    confirmed = sum(int(r[2]) for r in double.rows)
    tiles.append(
        Tile(
            "double-opt-in",
            "Double opt-in rate",
            format_value(reports._pct(confirmed, asked), "%") if asked else "—",
            f"{confirmed:,} confirmations for {asked:,} grants awaiting one in {len(weeks)} weeks",
            double.chart,
            "/console/reports",
            "Double opt-in per week",
        )
    )
    flows = reports._grants_withdrawals(rows, weeks)
    grants = sum(int(r[1]) for r in flows.rows)
    withdrawals = sum(int(r[2]) for r in flows.rows)
    tiles.append(
        Tile(
            "grants",
            "Grants and withdrawals",
            f"{grants - withdrawals:+,}",
            f"{grants:,} grants, {withdrawals:,} withdrawals in {len(weeks)} weeks",
            flows.chart,
            "/console/ledger",
            "The ledger",
        )
    )
    return tiles, missing


def _requests_tile(session: Session, now: datetime) -> Tile:
    table = subject_requests.DataSubjectRequest
    due = [
        due_at
        for (due_at,) in session.execute(
            select(table.due_at).where(table.status == subject_requests.RequestStatus.OPEN.value)
        )
    ]
    buckets = {"overdue": 0, "this week": 0, "next week": 0, "later": 0}
    for due_at in due:
        left = due_at - now
        if left < timedelta(0):
            buckets["overdue"] += 1
        elif left < timedelta(days=7):
            buckets["this week"] += 1
        elif left < timedelta(days=14):
            buckets["next week"] += 1
        else:
            buckets["later"] += 1
    chart = Chart(
        "dash-requests",
        "Open data-subject requests by due date",
        "Open access, erasure and other requests: past their deadline, due within 7 days, "
        "within 14 days, or later.",
        list(buckets),
        [Series("open requests", list(buckets.values()))],
    )
    overdue = buckets["overdue"]
    return Tile(
        "requests",
        "Requests due",
        f"{len(due):,}",
        (f"⚠ {overdue:,} overdue; " if overdue else "none overdue; ")
        + f"{buckets['this week']:,} due within 7 days",
        chart,
        "/console/requests",
        "Data-subject requests",
        alert=overdue > 0,
    )


def _sla_tile(
    session: Session, providers: ConsoleProviders, now: datetime, since: datetime, weeks: list[date]
) -> Tile | None:
    if providers.sla_weeks is None or providers.handoff_counts is None:
        return None
    report = reports._sla(providers.sla_weeks(session, since), weeks)
    missed = sum(int(r[2]) for r in report.rows)
    met = sum(int(r[1]) for r in report.rows)
    breached = providers.handoff_counts(session, now).get("breached", 0)
    return Tile(
        "sla",
        "Hand-off SLA breaches",
        f"{breached:,}",
        f"open now past their response time; in {len(weeks)} weeks {met:,} in time, "
        f"{missed:,} late or overdue",
        report.chart,
        "/console/sla",
        "Hand-off SLA",
        alert=breached > 0,
    )


def _health_tile(session: Session) -> Tile:
    runs = list(reversed(health.recent_runs(session, HEALTH_RUNS)))
    last = runs[-1] if runs else None
    chart = (
        Chart(
            "dash-health",
            "Ledger entries verified per run",
            "Entries whose hash chain and checkpoints were verified by each of the last "
            "verification runs started from the console.",
            [r.started_at.strftime("%d %b %H:%M") for r in runs],
            [Series("entries verified", [r.entries or 0 for r in runs])],
        )
        if runs
        else None
    )
    if last is None:
        figure, detail, alert = "never verified", "run a verification from Ledger health", True
    else:
        figure = last.status
        detail = f"last run {last.started_at:%Y-%m-%d %H:%M} UTC" + (
            f", {last.entries:,} entries" if last.entries is not None else ""
        )
        alert = last.status not in ("ok", "running")
    return Tile(
        "health", "Ledger health", figure, detail, chart, "/console/health", "Ledger health", alert
    )


def build_dashboard(
    ledger: ConsentLedger,
    session: Session,
    providers: ConsoleProviders,
    may: Callable[[Permission], bool],
) -> Dashboard:
    """The tiles ``may`` allows, over the last :data:`WEEKS` weeks (ISO weeks, UTC)."""
    now = utcnow()
    first = reports._monday(now.date()) - timedelta(weeks=WEEKS - 1)
    since = datetime.combine(first, time(), tzinfo=now.tzinfo)
    weeks = reports._weeks(first, WEEKS)
    tiles: list[Tile] = []
    missing: list[str] = []
    if may(Permission.VIEW_LEADS):
        tiles.append(_leads_tile(session, since, weeks))
    if may(Permission.VIEW_REPORTS):
        tiles.append(_permitted_tile(ledger, session))
        rate_tiles, rate_missing = _rate_tiles(ledger, session, providers, since, weeks)
        tiles += rate_tiles
        missing += rate_missing
    if may(Permission.HANDLE_REQUESTS):
        tiles.append(_requests_tile(session, now))
    if may(Permission.VIEW_SLA):
        sla = _sla_tile(session, providers, now, since, weeks)
        if sla is None:
            missing.append("hand-off SLA (no scoring data)")
        else:
            tiles.append(sla)
    if may(Permission.VIEW_HEALTH):
        tiles.append(_health_tile(session))
    return Dashboard(first, tiles, missing)
