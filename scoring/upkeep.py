"""Scores that stay current between events: the scheduled pass ``serve`` runs.

A lead's points change with time alone where a behaviour rule decays
(``half_life_days``) or counts a window (``window_days``). :func:`run_upkeep` finds,
in keyset batches by lead id, the leads whose stored score is out of date:

- a point of a windowed rule has left its window (exact: found the pass after it left);
- a point of a decaying or windowed rule was scored more than ``rescore_every`` ago
  (``[scoring] rescore_every``, default :data:`DEFAULT_RESCORE_EVERY`);
- the lead was scored by another model than the one in force (or by none);

and rescores each batch in its own short write transaction, incrementally
(:func:`scoring.services.rescore_due`: stored points carried on, a rule's events read
only where its points cannot tell). Thresholds still only move a lead forward.

With ``[scoring] demote_after_days = N``, a lead at a threshold stage with no activity
for N days (no event, answer or BANT value, and no stage move) is recycled to the
lifecycle's first stage (Lead by default), like a recycle by sales: the move is
recorded with actor ``system:inactivity`` and its reason, pending hand-offs are
cancelled, and the lead moves up by threshold again only once it earns new points.

Every batch re-reads the gating consent under lock, so a withdrawal committed meanwhile
wins; several workers may run the pass at once (the leads' rows are locked per batch and
each condition is checked again under the lock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, exists, false, or_, select
from sqlalchemy.engine import Connection

from scoring import services
from scoring.models import LeadAttribute, LeadEvent, Qualification, ScoredLead, ScorePoint
from scoring.rules import ScoringModel
from zeroparty.db import Database, utcnow

BATCH = 1000
DEFAULT_RESCORE_EVERY = 6 * 3600.0
UPKEEP_POLL_SECONDS = 600.0

_leads, _points, _events, _attrs, _qual = (
    cast(Table, m.__table__)
    for m in (ScoredLead, ScorePoint, LeadEvent, LeadAttribute, Qualification)
)


@dataclass(frozen=True, slots=True)
class UpkeepReport:
    rescored: int = 0
    changed: int = 0
    moved: int = 0
    demoted: int = 0
    skipped: int = 0
    """Leads found due whose gating consent had ended meanwhile (left to the listener)."""
    batches: int = 0


def _due(model: ScoringModel, model_id: int, now: datetime) -> Any:
    """Leads whose stored score is out of date at ``now`` (see the module docstring)."""
    varying = [r for r in model.behaviour if r.window_days or r.half_life_days]
    stale = now - timedelta(seconds=model.rescore_every or DEFAULT_RESCORE_EVERY)
    of_lead = and_(_points.c.subject_id == _leads.c.subject_id, _points.c.kind == "behaviour")
    closed = [
        and_(
            _points.c.rule == rule.name,
            _points.c.occurred_at < now - timedelta(days=rule.window_days),
        )
        for rule in varying
        if rule.window_days
    ]
    conditions: list[Any] = [_leads.c.model_id.is_(None), _leads.c.model_id != model_id]
    if varying:
        conditions.append(
            and_(
                _leads.c.scored_at <= stale,
                exists().where(of_lead, _points.c.rule.in_(sorted({r.name for r in varying}))),
            )
        )
    if closed:
        conditions.append(exists().where(of_lead, or_(*closed)))
    return conditions


def due_leads(
    connection: Connection,
    model: ScoringModel,
    model_id: int,
    now: datetime,
    *,
    after: str = "",
    limit: int = BATCH,
) -> list[str]:
    """Up to ``limit`` ids of leads due for rescoring at ``now``, after ``after``."""
    stmt = (
        select(_leads.c.subject_id)
        .where(_leads.c.subject_id > after, or_(*_due(model, model_id, now)))
        .order_by(_leads.c.subject_id)
        .limit(limit)
    )
    return [row.subject_id for row in connection.execute(stmt)]


def idle_leads(
    connection: Connection,
    model: ScoringModel,
    now: datetime,
    *,
    after: str = "",
    limit: int = BATCH,
) -> list[str]:
    """Up to ``limit`` ids of leads at a threshold stage without activity for
    ``demote_after_days`` at ``now`` (none if the model does not demote)."""
    if model.demote_after_days is None:
        return []
    cutoff = now - timedelta(days=model.demote_after_days)
    stages = [stage for stage, _ in model.thresholds]
    sid = _leads.c.subject_id
    stmt = (
        select(sid)
        .where(
            sid > after,
            _leads.c.stage.in_(stages) if stages else false(),
            _leads.c.stage_since <= cutoff,
            ~exists().where(_events.c.subject_id == sid, _events.c.occurred_at > cutoff),
            ~exists().where(_attrs.c.subject_id == sid, _attrs.c.occurred_at > cutoff),
            ~exists().where(_qual.c.subject_id == sid, _qual.c.recorded_at > cutoff),
        )
        .order_by(sid)
        .limit(limit)
    )
    return [row.subject_id for row in connection.execute(stmt)]


def run_upkeep(
    database: Database, *, now: datetime | None = None, batch_size: int = BATCH
) -> UpkeepReport:
    """One scheduled pass at ``now``: rescore every lead due, then recycle the idle
    ones (if the model demotes); each batch in its own write transaction."""
    with database.read() as session:
        active = services.active_model(session)
    if active is None:
        return UpkeepReport()
    now = now or utcnow()
    rescored = changed = moved = demoted = skipped = batches = 0
    after = ""
    while True:
        with database.write() as session:
            connection = session.connection()
            ids = due_leads(connection, active.model, active.id, now, after=after, limit=batch_size)
            if not ids:
                break
            result = services.rescore_due(connection, active, ids, now)
        batches += 1
        after = ids[-1]
        rescored += len(result.scored)
        changed += result.changed
        moved += sum(lead.moved for lead in result.scored.values())
        skipped += len(ids) - len(result.scored)
    after = ""
    while active.model.demote_after_days is not None:
        with database.write() as session:
            connection = session.connection()
            ids = idle_leads(connection, active.model, now, after=after, limit=batch_size)
            if not ids:
                break
            demoted += services.demote_idle(connection, active, ids, now)
        batches += 1
        after = ids[-1]
    return UpkeepReport(rescored, changed, moved, demoted, skipped, batches)
