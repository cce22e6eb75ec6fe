"""Scoring's functions in the shapes the console's providers declare
(``console/providers.py``); the app factory hands these to the console, which never
imports scoring. Thin: parse the console's plain values, call the service, return its
records (they have the attributes the console's protocols name).

While no scoring model is loaded the read adapters give nothing (an empty list,
``None``) instead of raising, so the console's pages say "no data".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from scoring import accounts, outcomes, qualification, schemas, services, sla
from scoring.lifecycle import Lifecycle
from scoring.models import ScoredLead
from zeroparty.errors import InvalidInput


def stage_names(session: Session) -> tuple[str, ...]:
    """The stages of the lifecycle in force, in order."""
    return services.lifecycle_in_force(session).stages


def funnel(session: Session) -> tuple[str, ...]:
    """The stages from the first to the sales hand-off."""
    return services.lifecycle_in_force(session).funnel


def _known(lifecycle: Lifecycle, stage: str) -> str:
    wanted = lifecycle.parse(stage)
    if wanted is None:
        names = ", ".join(lifecycle.stages)
        raise InvalidInput("stage: one of " + names, fields={"stage": "one of " + names})
    return wanted


def list_accounts(session: Session, stage: str | None, limit: int) -> list[accounts.Account]:
    """Accounts by domain, those whose furthest stage is ``stage`` only if given."""
    connection = session.connection()
    wanted = None
    if stage is not None:
        wanted = _known(services.lifecycle_in_force(connection), stage)
    if services.active_model(connection) is None:
        return []
    return accounts.list_accounts(connection, stage=wanted, limit=limit)


def get_account(
    session: Session, domain: str
) -> tuple[accounts.Account, list[accounts.Member]] | None:
    connection = session.connection()
    if services.active_model(connection) is None:
        return None
    return accounts.get_account(connection, domain)


def handoffs(session: Session, now: datetime, limit: int) -> list[sla.PendingHandoff]:
    """Hand-offs breached (first), due soon, then with time enough left (a lead that
    just became SQL is waiting for sales too) at ``now``: of each, the ``limit`` due
    first (the most overdue breaches, the nearest deadlines)."""
    if services.active_model(session) is None:
        return []
    found: list[sla.PendingHandoff] = []
    for state in (sla.SlaState.BREACHED, sla.SlaState.DUE_SOON, sla.ON_TIME):
        found.extend(sla.most_urgent(session, now=now, state=state, limit=limit))
    return found


def handoff_counts(session: Session, now: datetime) -> dict[str, int]:
    """How many hand-offs wait at ``now``: ``breached``, ``due_soon`` and ``on_time``."""
    if services.active_model(session) is None:
        return {}
    counts = sla.pending_counts(session, now=now)
    return {str(state or "on_time"): count for state, count in counts.items()}


def acknowledge(
    session: Session, subject_id: str, actor: str, now: datetime
) -> sla.Acknowledgement:
    return sla.acknowledge(session, subject_id, actor=actor, now=now)


@dataclass(frozen=True, slots=True)
class SalesRecord:
    bant: dict[str, str]
    outcome: str | None
    outcome_by: str | None


def sales_record(session: Session, subject_id: str) -> SalesRecord | None:
    """The lead's current BANT and outcome (``None`` while no model is loaded)."""
    connection = session.connection()
    if services.active_model(connection) is None:
        return None
    bant = {
        name: value.value
        for name, value in qualification.current(connection, subject_id).items()
        if value.value is not None
    }
    recorded = outcomes.outcome_of(session, subject_id)
    return SalesRecord(
        bant,
        recorded.outcome.value if recorded else None,
        recorded.recorded_by if recorded else None,
    )


@dataclass(frozen=True, slots=True)
class LeadIntent:
    """What the lead's kept quiz answers say (tags, each once, and score per quiz), and
    what the model makes of the lead beside its stage: the lead types it holds, its
    temperature band and its next best action (``{"rule", "action"}`` or ``None``)."""

    tags: list[str]
    quiz_scores: dict[str, float]
    lead_types: list[str] = field(default_factory=list)
    temperature: str | None = None
    next_action: dict[str, str] | None = None


def lead_intent(session: Session, subject_id: str) -> LeadIntent | None:
    """The lead's tags and quiz scores, read under the consent rule of its answers
    (nothing without a live gating consent); ``None`` while no model is loaded."""
    connection = session.connection()
    active = services.active_model(connection)
    if active is None:
        return None
    explanation = services.explain(connection, subject_id)
    return LeadIntent(
        explanation.intent.tag_names(),
        explanation.intent.scores(),
        list(explanation.lead_types),
        explanation.temperature,
        explanation.next_action,
    )


def _typed(name: str, raw: str, errors: dict[str, str]) -> object:
    """A form's text as the API's JSON value would be (a budget is a number)."""
    if name != "budget":
        return raw
    try:
        return float(raw.replace(",", "").replace("_", ""))
    except ValueError:
        errors[name] = f"must be an amount from 0 to {qualification.MAX_BUDGET:.0f}"
        return None


def record_bant(
    session: Session, subject_id: str, values: Mapping[str, str], actor: str, now: datetime
) -> None:
    """BANT values typed into the console (empty ones are left out), checked as the
    API checks them, then recorded."""
    errors: dict[str, str] = {}
    checked: dict[str, str | None] = {}
    for name in qualification.BANT_FIELDS:
        raw = values.get(name, "").strip()
        if not raw:
            continue
        typed = _typed(name, raw, errors)
        if name not in errors:
            checked[name] = schemas.bant_value(name, typed, errors)
    if not checked and not errors:
        errors["budget"] = "give at least one of " + ", ".join(qualification.BANT_FIELDS)
    if errors:
        raise InvalidInput(
            "; ".join(f"{name}: {problem}" for name, problem in errors.items()), fields=errors
        )
    qualification.record(session, subject_id, checked, actor=actor, now=now)


def record_outcome(session: Session, subject_id: str, outcome: str, actor: str) -> bool:
    try:
        given = outcomes.Outcome(outcome)
    except ValueError:
        raise InvalidInput("outcome: won or lost", fields={"outcome": "won or lost"}) from None
    return outcomes.record_outcome(session, subject_id, given, None, actor=actor).created


# ---------------------------------------------------------------- the console's lead list


def stage_condition(subject_id: ColumnElement[str], stage: str, first: str) -> ColumnElement[bool]:
    """Leads at ``stage`` (a name of the lifecycle in force, as :func:`stage_names`
    gives it) now, as a condition on the console's lead id column (one statement with
    its other filters). A lead without a scoring row is at the first stage ``first``,
    as :func:`scoring.reports.stage_counts` counts it."""
    scored = cast(Table, ScoredLead.__table__)
    if stage == first:
        beyond = select(scored.c.subject_id).where(scored.c.stage != first)
        return subject_id.not_in(beyond)
    return subject_id.in_(select(scored.c.subject_id).where(scored.c.stage == stage))


@dataclass(frozen=True, slots=True)
class LeadStage:
    stage: str
    score: float | None


def lead_stages(session: Session, subject_ids: Sequence[str]) -> dict[str, LeadStage]:
    """Stage and score of each of ``subject_ids`` (one statement); a lead left out is at
    the first stage, unscored."""
    if not subject_ids:
        return {}
    scored = cast(Table, ScoredLead.__table__)
    rows = session.execute(
        select(scored.c.subject_id, scored.c.stage, scored.c.score).where(
            scored.c.subject_id.in_(list(subject_ids))
        )
    )
    return {row.subject_id: LeadStage(row.stage, row.score) for row in rows}


# ---------------------------------------------------------------- the console's accounts pages


def accounts_after(
    session: Session, stage: str | None, after: str, limit: int
) -> list[accounts.Account]:
    """The next ``limit`` accounts by domain after ``after`` (a page of the list)."""
    connection = session.connection()
    wanted = None if stage is None else _known(services.lifecycle_in_force(connection), stage)
    if services.active_model(connection) is None:
        return []
    return accounts.list_accounts(connection, stage=wanted, limit=limit, after=after)


def count_accounts(session: Session, stage: str | None) -> int:
    """How many accounts there are (at ``stage`` only, if given): one grouped count over
    the permissioned, scored leads of company domains."""
    connection = session.connection()
    active = services.active_model(connection)
    if active is None:
        return 0
    lifecycle = active.model.lifecycle
    wanted = None if stage is None else _known(lifecycle, stage)
    grouped = (
        accounts._members(accounts._domain)
        .where(accounts._NOT_FREE_MAIL)
        .group_by(accounts._domain)
    )
    if wanted is not None:
        grouped = grouped.having(func.max(accounts._RANK) == lifecycle.rank(wanted))
    params = {
        "purpose": active.model.purpose,
        "free_mail": sorted(accounts.free_mail_domains(active.model)),
        **accounts.rank_params(lifecycle),
    }
    count = select(func.count()).select_from(grouped.subquery())
    return int(connection.scalar(count, params) or 0)
