"""Reports: consent over time, counted from the ledger (and, for rates per form, from
capture's submissions; for stages, from scoring, through the console's providers).

Weeks start on Monday (ISO 8601), in UTC. Each report is a :class:`Report`: a chart and
the same numbers as table rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy.orm import Session

from consent_ledger.actions import ConsentAction, ConsentSource
from consent_ledger.api import ConsentLedger
from console.charts import Chart, Series, format_value
from console.providers import (
    ConsoleProviders,
    SlaWeekRecord,
    StageCountRecord,
    SubmissionWeekRecord,
)
from zeroparty.db import utcnow

DEFAULT_WEEKS = 8
MAX_WEEKS = 104
FUNNEL = ("Visitor", "Lead", "MQL", "SQL")


@dataclass(frozen=True, slots=True)
class Report:
    chart: Chart
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Reports:
    weeks: int
    since: date
    reports: list[Report]
    missing: list[str]


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _weeks(since: date, count: int) -> list[date]:
    return [since + timedelta(weeks=i) for i in range(count)]


def _daily(
    ledger: ConsentLedger, session: Session, since: datetime, actions: Sequence[str]
) -> list[tuple[date, str, str, str, str | None, bool, int]]:
    """Entries per day, action, purpose, source, source_ref, confirmation_required."""
    return [
        (_as_date(d), a, p, s, ref, bool(c), int(n))
        for d, a, p, s, ref, c, n in ledger.daily_counts(session, since, actions)
    ]


def _pct(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def _week_label(week: date) -> str:
    return week.strftime("%d %b")


def _grants_withdrawals(
    rows: list[tuple[date, str, str, str, str | None, bool, int]], weeks: list[date]
) -> Report:
    counts: dict[tuple[date, str], int] = defaultdict(int)
    for day, action, _p, _s, _r, _c, n in rows:
        counts[(_monday(day), action)] += n
    grants = [counts[(w, ConsentAction.GRANTED)] for w in weeks]
    withdrawals = [counts[(w, ConsentAction.WITHDRAWN)] for w in weeks]
    chart = Chart(
        "grants-withdrawals",
        "Grants and withdrawals per week",
        "Number of consent grants and withdrawals recorded in the ledger, per week.",
        [_week_label(w) for w in weeks],
        [Series("grants", grants), Series("withdrawals", withdrawals)],
    )
    rows_out = [
        [w.isoformat(), str(g), str(d)] for w, g, d in zip(weeks, grants, withdrawals, strict=True)
    ]
    return Report(chart, ["week of", "grants", "withdrawals"], rows_out)


def _gpc(
    rows: list[tuple[date, str, str, str, str | None, bool, int]], weeks: list[date]
) -> Report:
    counts: dict[date, int] = defaultdict(int)
    for day, action, _p, _s, _r, _c, n in rows:
        if action == ConsentAction.GPC_OPT_OUT:
            counts[_monday(day)] += n
    values = [counts[w] for w in weeks]
    chart = Chart(
        "gpc",
        "Global Privacy Control signals honoured per week",
        "Opt-outs of sale or sharing recorded because the browser sent Sec-GPC: 1.",
        [_week_label(w) for w in weeks],
        [Series("GPC opt-outs", values)],
    )
    return Report(
        chart,
        ["week of", "GPC opt-outs"],
        [[w.isoformat(), str(v)] for w, v in zip(weeks, values, strict=True)],
    )


def _double_opt_in(
    rows: list[tuple[date, str, str, str, str | None, bool, int]], weeks: list[date]
) -> Report:
    asked: dict[date, int] = defaultdict(int)
    confirmed: dict[date, int] = defaultdict(int)
    for day, action, _p, _s, _r, needs_confirmation, n in rows:
        if action == ConsentAction.GRANTED and needs_confirmation:
            asked[_monday(day)] += n
        elif action == ConsentAction.CONFIRMED:
            confirmed[_monday(day)] += n
    rates = [_pct(confirmed[w], asked[w]) for w in weeks]
    chart = Chart(
        "double-opt-in",
        "Double opt-in confirmation rate per week",
        "Confirmations recorded in a week as a share of grants awaiting confirmation that week.",
        [_week_label(w) for w in weeks],
        [Series("confirmed", rates)],
        unit="%",
    )
    table = [
        [w.isoformat(), str(asked[w]), str(confirmed[w]), format_value(r, "%")]
        for w, r in zip(weeks, rates, strict=True)
    ]
    return Report(chart, ["week of", "awaiting confirmation", "confirmed", "rate"], table)


def _form_slug(source_ref: str | None) -> str | None:
    if not source_ref or "@v" not in source_ref:
        return None
    return source_ref.rsplit("@v", 1)[0]


def _opt_in_rates(
    rows: list[tuple[date, str, str, str, str | None, bool, int]],
    weeks: list[date],
    submissions: Sequence[SubmissionWeekRecord],
) -> tuple[Report, Report]:
    """Per purpose and per form: boxes ticked as a share of boxes offered."""
    offered_purpose: dict[tuple[date, str], int] = defaultdict(int)
    offered_form: dict[tuple[date, str], int] = defaultdict(int)
    for item in submissions:
        for offered in item.purposes:
            offered_purpose[(item.week, offered)] += item.submissions
        offered_form[(item.week, item.slug)] += item.submissions * len(item.purposes)
    granted_purpose: dict[tuple[date, str], int] = defaultdict(int)
    granted_form: dict[tuple[date, str], int] = defaultdict(int)
    for day, action, purpose, source, ref, _c, n in rows:
        form = _form_slug(ref)
        if action != ConsentAction.GRANTED or form is None:
            continue
        if source not in (ConsentSource.FORM, ConsentSource.QUIZ):
            continue
        granted_purpose[(_monday(day), purpose)] += n
        granted_form[(_monday(day), form)] += n
    purpose_names = sorted({p for _w, p in offered_purpose})
    form_names = sorted({f for _w, f in offered_form})

    def build(
        key: str,
        title: str,
        names: list[str],
        offered: dict[tuple[date, str], int],
        granted: dict[tuple[date, str], int],
        what: str,
    ) -> Report:
        series = [Series(n, [_pct(granted[(w, n)], offered[(w, n)]) for w in weeks]) for n in names]
        table = [
            [
                w.isoformat(),
                n,
                str(offered[(w, n)]),
                str(granted[(w, n)]),
                format_value(_pct(granted[(w, n)], offered[(w, n)]), "%"),
            ]
            for w in weeks
            for n in names
            if offered[(w, n)]
        ]
        chart = Chart(
            key,
            title,
            "Consent boxes ticked as a share of boxes shown in submitted forms, "
            f"per {what} and week.",
            [_week_label(w) for w in weeks],
            series,
            unit="%",
        )
        return Report(chart, ["week of", what, "boxes shown", "ticked", "rate"], table)

    return (
        build(
            "opt-in-purpose",
            "Opt-in rate per purpose",
            purpose_names,
            offered_purpose,
            granted_purpose,
            "purpose",
        ),
        build(
            "opt-in-form", "Opt-in rate per form", form_names, offered_form, granted_form, "form"
        ),
    )


def _stages(
    counts: Sequence[StageCountRecord], funnel_stages: Sequence[str] = FUNNEL
) -> tuple[Report, Report]:
    stages = [(item.stage, int(item.leads)) for item in counts]
    chart = Chart(
        "stages",
        "Leads per lifecycle stage",
        "How many leads are in each lifecycle stage now.",
        [s for s, _n in stages],
        [Series("leads", [n for _s, n in stages])],
    )
    stage_report = Report(chart, ["stage", "leads"], [[s, str(n)] for s, n in stages])
    # A funnel counts everyone who reached a stage: those in it and in every later one.
    # It runs from the first stage the provider reports (visitors are anonymous until
    # they submit a form, so scoring reports none) to the sales hand-off.
    order = [s for s, _n in stages]
    funnel = [stage for stage in funnel_stages if stage in order]
    reached = [sum(n for _s, n in stages[order.index(stage) :]) for stage in funnel]
    first = funnel[0] if funnel else funnel_stages[0]
    funnel_chart = Chart(
        "funnel",
        "Funnel " + " → ".join(funnel or funnel_stages),
        "Leads that reached each stage (now in it or in a later one).",
        list(funnel),
        [Series("reached", reached)],
    )
    rows = [
        [stage, str(n), format_value(_pct(n, reached[0]), "%") if reached[0] else "—"]
        for stage, n in zip(funnel, reached, strict=True)
    ]
    return stage_report, Report(funnel_chart, ["stage", "reached", f"of {first}"], rows)


def _sla(records: Sequence[SlaWeekRecord], weeks: list[date]) -> Report:
    by_week = {_monday(_as_date(r.week)): r for r in records}
    met = [by_week[w].met if w in by_week else 0 for w in weeks]
    missed = [by_week[w].missed if w in by_week else 0 for w in weeks]
    still_open = [by_week[w].open if w in by_week else 0 for w in weeks]
    chart = Chart(
        "sla",
        "Hand-offs answered within their SLA per week",
        "Leads handed to sales each week: acknowledged within the stage's response time, "
        "late or overdue.",
        [_week_label(w) for w in weeks],
        [Series("in time", met), Series("late or overdue", missed)],
    )
    rows = [
        [
            w.isoformat(),
            str(m),
            str(x),
            str(o),
            format_value(_pct(m, m + x), "%") if m + x else "—",
        ]
        for w, m, x, o in zip(weeks, met, missed, still_open, strict=True)
    ]
    return Report(chart, ["week of", "in time", "late or overdue", "still open", "SLA met"], rows)


def build_reports(
    ledger: ConsentLedger, session: Session, providers: ConsoleProviders, weeks: int
) -> Reports:
    today = utcnow().date()
    first = _monday(today) - timedelta(weeks=weeks - 1)
    since = datetime.combine(first, time(), tzinfo=utcnow().tzinfo)
    week_list = _weeks(first, weeks)
    actions = [
        a.value
        for a in (
            ConsentAction.GRANTED,
            ConsentAction.WITHDRAWN,
            ConsentAction.CONFIRMED,
            ConsentAction.GPC_OPT_OUT,
        )
    ]
    rows = _daily(ledger, session, since, actions)
    reports: list[Report] = []
    missing: list[str] = []
    if providers.submission_weeks is not None:
        reports.extend(_opt_in_rates(rows, week_list, providers.submission_weeks(session, since)))
    else:
        missing.append("opt-in rates (no form data: capture is not connected)")
    reports += [
        _grants_withdrawals(rows, week_list),
        _gpc(rows, week_list),
        _double_opt_in(rows, week_list),
    ]
    if providers.stage_counts is not None:
        funnel = providers.funnel(session) if providers.funnel is not None else FUNNEL
        reports.extend(_stages(providers.stage_counts(session), funnel))
    else:
        missing.append("leads per lifecycle stage and the funnel (no scoring data yet)")
    if providers.sla_weeks is not None:
        reports.append(_sla(providers.sla_weeks(session, since), week_list))
    else:
        missing.append("hand-off SLA attainment (no scoring data yet)")
    return Reports(weeks, first, reports, missing)
