"""Figures about scoring for reports elsewhere (the console reads them through the
provider the app factory hands it; see ``console/providers.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from consent_ledger.read_model import leads
from scoring import services
from scoring.models import ScoredLead

_leads = cast(Table, ScoredLead.__table__)
_subjects = leads


@dataclass(frozen=True, slots=True)
class StageCount:
    stage: str
    leads: int


def stage_counts(session: Session) -> list[StageCount]:
    """Leads per lifecycle stage now, in the order of the lifecycle in force (Lead to
    Customer by default); a lead at a stage the lifecycle lacks is not counted.

    A lead without a scoring row is at the first stage (never scored, or scoring was
    withdrawn); erased leads are not counted. Visitors are anonymous until they submit
    a form, so zeroparty has no count of them and reports none.
    """
    scored: dict[str, int] = {
        str(stage): int(count)
        for stage, count in session.execute(
            select(_leads.c.stage, func.count()).group_by(_leads.c.stage)
        )
    }
    everyone = session.execute(
        select(func.count()).select_from(_subjects).where(_subjects.c.erased_at.is_(None))
    ).scalar_one()
    lifecycle = services.lifecycle_in_force(session)
    beyond_start = sum(n for stage, n in scored.items() if stage != lifecycle.start)
    counts = {stage: int(scored.get(stage, 0)) for stage in lifecycle.stages}
    counts[lifecycle.start] = max(0, int(everyone) - beyond_start)
    return [StageCount(stage, counts[stage]) for stage in lifecycle.stages]
