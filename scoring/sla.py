"""The hand-off SLA: how long sales may take to acknowledge a lead entering a stage.

``[scoring.sla]`` in site.toml gives a response time per stage (``SQL = "24h"``). The
clock starts when the lead enters the stage (``scoring_leads.stage_since``, the time of
its stage change); ``POST /api/leads/ack`` stops it for that entry. A lead whose clock
runs is *due soon* once less than a quarter of its response time is left
(:data:`DUE_SOON_SHARE`) and *breached* once it has passed.

Consent (SPEC rule 3): only leads whose gating consent is live now are listed or
counted; a withdrawal purges the lead's scoring row, so it leaves the lists at once, and
its past hand-offs leave the attainment figures. Every function takes ``now``: tests and
reports pass their own clock.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, and_, false, func, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from consent_ledger.entries import format_timestamp
from consent_ledger.read_model import consent_states, lead_profiles
from scoring import consent, services
from scoring.models import HandoffAck, ScoredLead, StageChange
from scoring.rules import ScoringModel
from scoring.stages import Actor
from zeroparty.db import utcnow
from zeroparty.errors import Conflict

DUE_SOON_SHARE = 0.25
MIN_SECONDS, MAX_SECONDS = 60.0, 365 * 86_400.0
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*$")
_UNIT_SECONDS = {"m": 60.0, "h": 3600.0, "d": 86_400.0}

_leads, _acks, _changes = (cast(Table, m.__table__) for m in (ScoredLead, HandoffAck, StageChange))
_cs, _profiles = consent_states, lead_profiles


def parse_duration(value: object) -> float | None:
    """Seconds in ``"30m"``, ``"24h"``, ``"3d"`` (1 minute to 365 days), else ``None``."""
    match = _DURATION_RE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return seconds if MIN_SECONDS <= seconds <= MAX_SECONDS else None


class SlaState(StrEnum):
    DUE_SOON = "due_soon"
    BREACHED = "breached"


@dataclass(frozen=True, slots=True)
class PendingHandoff:
    """A hand-off whose clock runs (not acknowledged yet)."""

    subject_id: str
    email: str
    stage: str
    score: float
    entered_at: datetime
    due_at: datetime
    state: SlaState | None


def _state(due_at: datetime, window: float, now: datetime) -> SlaState | None:
    if now > due_at:
        return SlaState.BREACHED
    if now >= due_at - timedelta(seconds=window * DUE_SOON_SHARE):
        return SlaState.DUE_SOON
    return None


@dataclass(frozen=True, slots=True)
class PendingPage:
    handoffs: list[PendingHandoff]
    next_cursor: str | None
    """The ``after`` of the next page; ``None`` on the last."""


def pending(
    session: Session,
    *,
    now: datetime,
    state: SlaState | None,
    limit: int,
    after: str = "",
) -> PendingPage:
    """Unacknowledged hand-offs of permissioned leads in a stage with an SLA, in
    ``state`` (``None``: every running clock), by lead id after ``after``. A page walks
    the next ``limit`` leads in those stages (:func:`scoring.services.page_of_leads`), so
    it costs the same at every position and holds fewer hand-offs than ``limit``, even
    none, when some of the leads it walks are acknowledged or out of ``state``."""
    connection = session.connection()
    model = services.require_model(connection).model
    walked = (
        connection.execute(services.page_of_leads([s for s, _ in model.sla], after, limit))
        .scalars()
        .all()
        if model.sla
        else []
    )
    if not walked:
        return PendingPage([], None)
    conditions = [
        and_(_leads.c.stage == stage, _window(seconds, state, now)) for stage, seconds in model.sla
    ]
    rows = connection.execute(
        _waiting(model.purpose)
        .where(
            or_(false(), *conditions),
            _leads.c.subject_id > after,
            _leads.c.subject_id <= walked[-1],
        )
        .order_by(_leads.c.subject_id)
    )
    found = _handoffs(rows, dict(model.sla), now)
    return PendingPage(found, walked[-1] if len(walked) == limit else None)


class _OnTime:
    """The window of :func:`most_urgent` for clocks with time enough left (``None``
    there): neither due soon nor breached."""


ON_TIME = _OnTime()


def _window(seconds: float, state: SlaState | _OnTime | None, now: datetime) -> Any:
    """The condition on ``stage_since`` of a stage with an SLA of ``seconds`` for the
    clocks in ``state`` at ``now`` (``None``: every running clock)."""
    deadline = now - timedelta(seconds=seconds)
    soon = now - timedelta(seconds=seconds * (1 - DUE_SOON_SHARE))
    entered = _leads.c.stage_since
    if state is SlaState.BREACHED:
        return entered < deadline
    if state is SlaState.DUE_SOON:
        return and_(entered >= deadline, entered <= soon)
    if isinstance(state, _OnTime):
        return entered > soon
    return entered.is_not(None)


def _waiting(purpose: str, *columns: Any) -> Any:
    """``columns`` (default: the scoring row and the lead's email) of permissioned leads
    (``purpose``: the model's gating purpose) whose current hand-off is not
    acknowledged."""
    acked = (
        select(_acks.c.id)
        .where(
            _acks.c.subject_id == _leads.c.subject_id,
            _acks.c.stage == _leads.c.stage,
            _acks.c.entered_at == _leads.c.stage_since,
        )
        .exists()
    )
    return (
        select(*(columns or (_leads, _profiles.c.email)))
        .select_from(_leads)
        .join(_profiles, _profiles.c.subject_id == _leads.c.subject_id)
        .join(
            _cs,
            (_cs.c.subject_id == _leads.c.subject_id)
            & (_cs.c.purpose_key == purpose)
            & _cs.c.permitted,
        )
        .where(~acked)
    )


def _handoffs(rows: Any, windows: dict[str, float], now: datetime) -> list[PendingHandoff]:
    found = []
    for r in rows:
        stage = str(r.stage)
        due = r.stage_since + timedelta(seconds=windows[stage])
        found.append(
            PendingHandoff(
                r.subject_id,
                r.email,
                stage,
                r.score,
                r.stage_since,
                due,
                _state(due, windows[stage], now),
            )
        )
    return found


def most_urgent(
    session: Session, *, now: datetime, state: SlaState | _OnTime, limit: int
) -> list[PendingHandoff]:
    """Up to ``limit`` unacknowledged hand-offs of permissioned leads in ``state``
    (:data:`ON_TIME`: time enough left), the earliest due first: the most overdue
    breaches, the nearest deadlines. Per stage with an SLA, one statement reads the
    first ``limit`` by the time the clock started (``ix_scoring_leads_stage_since``),
    since within a stage that is the order of the deadlines."""
    connection = session.connection()
    model = services.require_model(connection).model
    windows = dict(model.sla)
    found: list[PendingHandoff] = []
    for stage, seconds in model.sla:
        rows = connection.execute(
            _waiting(model.purpose)
            .where(_leads.c.stage == stage, _window(seconds, state, now))
            .order_by(_leads.c.stage_since, _leads.c.subject_id)
            .limit(limit)
        )
        found.extend(_handoffs(rows, windows, now))
    found.sort(key=lambda h: (h.due_at, h.subject_id))
    return found[:limit]


def pending_counts(session: Session, *, now: datetime) -> dict[SlaState | None, int]:
    """How many unacknowledged hand-offs of permissioned leads are breached, due soon
    and on time (``None``) at ``now``: all of them, in one statement."""
    connection = session.connection()
    model = services.require_model(connection).model
    counts: dict[SlaState | None, int] = {SlaState.BREACHED: 0, SlaState.DUE_SOON: 0, None: 0}
    if not model.sla:
        return counts
    kinds: list[tuple[SlaState | None, SlaState | _OnTime]] = [
        (SlaState.BREACHED, SlaState.BREACHED),
        (SlaState.DUE_SOON, SlaState.DUE_SOON),
        (None, ON_TIME),
    ]
    columns = [
        func.count().filter(
            or_(
                false(),
                *(
                    and_(_leads.c.stage == stage, _window(seconds, window, now))
                    for stage, seconds in model.sla
                ),
            )
        )
        for _, window in kinds
    ]
    stages = [stage for stage, _ in model.sla]
    row = connection.execute(
        _waiting(model.purpose, *columns).where(_leads.c.stage.in_(stages))
    ).one()
    for (key, _), value in zip(kinds, row, strict=True):
        counts[key] = int(value or 0)
    return counts


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    subject_id: str
    stage: str
    entered_at: datetime
    acked_at: datetime
    actor: str
    due_at: datetime | None
    created: bool

    @property
    def within_sla(self) -> bool | None:
        return None if self.due_at is None else self.acked_at <= self.due_at


def _due(model: ScoringModel, stage: str, entered_at: datetime) -> datetime | None:
    seconds = dict(model.sla).get(stage)
    return None if seconds is None else entered_at + timedelta(seconds=seconds)


def acknowledge(session: Session, subject_id: str, *, actor: str, now: datetime) -> Acknowledgement:
    """Sales took the lead's current hand-off (its entry into its stage). Needs a live
    gating consent and a stage beyond Lead; a repeated acknowledgement of the same entry
    changes nothing and returns the first (``created`` false)."""
    connection = session.connection()
    model = services.require_model(connection).model
    gate = consent.gate_states(connection, [subject_id], model.purpose, lock=True).get(subject_id)
    if gate is None or not gate.permitted:
        raise services.ConsentMissing(
            f"this lead has no live consent for {model.purpose}: it is not handed to sales"
        )
    stmt = select(_leads.c.stage, _leads.c.stage_since).where(_leads.c.subject_id == subject_id)
    if connection.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    lead = connection.execute(stmt).first()
    if lead is None or model.lifecycle.rank(lead.stage) <= 1:
        raise Conflict(
            f"no hand-off to acknowledge: the lead is at stage {model.lifecycle.start}",
            fields={"email": "not handed off"},
        )
    stage = str(lead.stage)
    existing = connection.execute(
        select(_acks).where(
            _acks.c.subject_id == subject_id,
            _acks.c.stage == stage,
            _acks.c.entered_at == lead.stage_since,
        )
    ).first()
    if existing is not None:
        return Acknowledgement(
            subject_id,
            stage,
            existing.entered_at,
            existing.acked_at,
            existing.actor,
            _due(model, stage, existing.entered_at),
            created=False,
        )
    connection.execute(
        insert(_acks).values(
            subject_id=subject_id,
            stage=stage,
            entered_at=lead.stage_since,
            acked_at=now,
            actor=actor[:100],
        )
    )
    return Acknowledgement(
        subject_id,
        stage,
        lead.stage_since,
        now,
        actor[:100],
        _due(model, stage, lead.stage_since),
        created=True,
    )


@dataclass(frozen=True, slots=True)
class SlaWeek:
    """Hand-offs that entered an SLA stage in one week (its Monday, UTC): ``met``
    acknowledged in time, ``missed`` acknowledged late or overdue, ``open`` still
    within their time; ``attainment`` = met / (met + missed), ``None`` if neither."""

    week: date
    handoffs: int
    met: int
    missed: int
    open: int

    @property
    def attainment(self) -> float | None:
        decided = self.met + self.missed
        return None if decided == 0 else self.met / decided


def attainment(
    session: Session, since: datetime | None = None, *, now: datetime | None = None
) -> list[SlaWeek]:
    """SLA attainment per week of hand-off, oldest first, under the SLA in force now.

    A hand-off is a forward stage change into a stage with an SLA; only hand-offs of
    leads whose gating consent is live now count (a withdrawn lead leaves the figures).
    This is the console's provider (``ConsoleProviders.sla_weeks``)."""
    connection = session.connection()
    active = services.active_model(connection)
    if active is None or not active.model.sla:
        return []
    model, now = active.model, now or utcnow()
    windows = dict(model.sla)
    rank = model.lifecycle.rank
    acked_at = (
        select(_acks.c.acked_at)
        .where(
            _acks.c.subject_id == _changes.c.subject_id,
            _acks.c.stage == _changes.c.to_stage,
            _acks.c.entered_at == _changes.c.created_at,
        )
        .limit(1)
        .scalar_subquery()
    )
    stmt: Any = (
        select(
            _changes.c.from_stage,
            _changes.c.to_stage,
            _changes.c.created_at,
            acked_at.label("acked_at"),
        )
        .join(
            _cs,
            (_cs.c.subject_id == _changes.c.subject_id)
            & (_cs.c.purpose_key == model.purpose)
            & _cs.c.permitted,
        )
        .where(
            _changes.c.to_stage.in_(list(windows)),
            # A lifecycle change renames stages; it hands nobody off.
            _changes.c.actor != Actor.LIFECYCLE.value,
        )
        .order_by(_changes.c.created_at)
    )
    if since is not None:
        stmt = stmt.where(_changes.c.created_at >= since)
    weeks: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in connection.execute(stmt):
        old, new = rank(row.from_stage), row.to_stage
        if old and old >= rank(new):
            continue  # a recycle or a correction, not a hand-off
        due = row.created_at + timedelta(seconds=windows[new])
        day = row.created_at.date()
        counts = weeks[day - timedelta(days=day.weekday())]
        counts[0] += 1
        if row.acked_at is not None and row.acked_at <= due:
            counts[1] += 1
        elif row.acked_at is not None or now > due:
            counts[2] += 1
        else:
            counts[3] += 1
    return [SlaWeek(week, *counts) for week, counts in sorted(weeks.items())]


def export_acks(connection: Connection, subject_id: str) -> list[dict[str, object]]:
    """The acknowledgements of the lead's hand-offs, for an access request."""
    rows = connection.execute(
        select(_acks).where(_acks.c.subject_id == subject_id).order_by(_acks.c.id)
    )
    return [
        {
            "stage": r.stage,
            "entered_at": format_timestamp(r.entered_at),
            "acknowledged_at": format_timestamp(r.acked_at),
            "acknowledged_by": r.actor,
        }
        for r in rows
    ]
