"""``zeroparty score``: recompute every permissioned lead after a model change.

Leads are taken in batches by id (keyset pagination, constant memory), each batch in
its own short write transaction that re-reads the gating consent under lock, so a
withdrawal committed meanwhile wins. Leads found with scoring rows but no live consent
(which the ledger listener prevents) are purged all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, select

from consent_ledger.read_model import consent_states
from scoring.models import ScoredLead
from scoring.services import purge_lead, require_model, rescore_in_full
from zeroparty.db import Database, Prepared, utcnow

BATCH = 1000

_cs = consent_states
_leads = cast(Table, ScoredLead.__table__)

Progress = Callable[[int, int], None]

# The next batch of permissioned leads by id; on PostgreSQL their gating consent rows are
# locked (FOR SHARE) until the batch commits: a withdrawal waits, then removes the rows.
_NEXT_BATCH_SELECT = (
    select(_cs.c.subject_id)
    .where(
        _cs.c.purpose_key == bindparam("purpose"),
        _cs.c.permitted,
        _cs.c.subject_id > bindparam("after"),
    )
    .order_by(_cs.c.subject_id)
    .limit(bindparam("size"))
)
_NEXT_BATCH = Prepared(_NEXT_BATCH_SELECT)
_NEXT_BATCH_LOCKED = Prepared(_NEXT_BATCH_SELECT.with_for_update(read=True))


@dataclass(frozen=True, slots=True)
class RescoreReport:
    leads: int
    points: int
    moved: int
    purged: int
    model_id: int


def rescore_all(
    database: Database,
    progress: Progress | None = None,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH,
) -> RescoreReport:
    with database.read() as session:
        active = require_model(session)
        purpose = active.model.purpose
        permitted = select(_cs.c.subject_id).where(_cs.c.purpose_key == purpose, _cs.c.permitted)
        total = session.execute(select(func.count()).select_from(permitted.subquery())).scalar_one()
        orphans = [
            row.subject_id
            for row in session.execute(
                select(_leads.c.subject_id).where(_leads.c.subject_id.not_in(permitted))
            )
        ]
    now = now or utcnow()
    purged = 0
    if orphans:
        with database.write() as session:
            for subject_id in orphans:
                purge_lead(session.connection(), active.model, subject_id, "no live consent")
            purged = len(orphans)
    done = points = moved = 0
    after = ""
    while True:
        with database.write() as session:
            connection = session.connection()
            batch_ids = (
                _NEXT_BATCH_LOCKED if connection.dialect.name == "postgresql" else _NEXT_BATCH
            )
            ids = [
                row.subject_id
                for row in batch_ids.execute(
                    connection, {"purpose": purpose, "after": after, "size": batch_size}
                )
            ]
            if not ids:
                break
            batch = rescore_in_full(connection, active, ids, now)
        points += batch.points
        moved += batch.moved
        done += len(ids)
        after = ids[-1]
        if progress is not None:
            progress(done, total)
    return RescoreReport(done, points, moved, purged, active.id)
