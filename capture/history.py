"""What capture tells the compliance console: every published form and quiz version,
and submissions per form and week (for opt-in rates).

Neither package imports the other (SPEC: dependencies point inward): these records have
the attributes the console's provider protocols ask for, and the app factory hands the
functions over.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from capture.models import DefinitionVersion, ErasedSubmissions, Submission


@dataclass(frozen=True, slots=True)
class DefinitionVersionInfo:
    slug: str
    kind: str
    version: int
    sha256: str
    created_at: datetime
    definition: str


@dataclass(frozen=True, slots=True)
class SubmissionWeek:
    slug: str
    week: date
    purposes: tuple[str, ...]
    submissions: int


def definition_versions(session: Session) -> list[DefinitionVersionInfo]:
    rows = session.scalars(
        select(DefinitionVersion).order_by(DefinitionVersion.slug, DefinitionVersion.version)
    )
    return [
        DefinitionVersionInfo(
            slug=row.slug,
            kind=row.kind,
            version=row.version,
            sha256=row.sha256,
            created_at=row.created_at,
            definition=orjson.dumps(
                orjson.loads(row.definition), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
            ).decode(),
        )
        for row in rows
    ]


def _monday(moment: datetime) -> date:
    day = moment.date()
    return day - timedelta(days=day.weekday())


def submission_weeks(session: Session, since: datetime) -> list[SubmissionWeek]:
    """Submissions per form version's slug and week since ``since`` (a Monday), with
    the purposes the version offered boxes for; erased submissions count too."""
    offered: dict[int, tuple[str, tuple[str, ...]]] = {}
    for row in session.execute(
        select(DefinitionVersion.id, DefinitionVersion.slug, DefinitionVersion.definition)
    ):
        consent = orjson.loads(row.definition).get("consent", [])
        offered[row.id] = (row.slug, tuple(consent))
    counts: Counter[tuple[str, date, tuple[str, ...]]] = Counter()
    stmt = select(Submission.definition_id, Submission.created_at).where(
        Submission.created_at >= since
    )
    for definition_id, created_at in session.execute(stmt.execution_options(yield_per=5000)):
        slug, purposes = offered[definition_id]
        counts[(slug, _monday(created_at), purposes)] += 1
    # Submissions of erased leads: gone, but their grants stay in the ledger, so their
    # boxes stay counted as shown (rates never exceed 100% and do not move on erasure).
    erased = select(
        ErasedSubmissions.definition_id, ErasedSubmissions.week, ErasedSubmissions.submissions
    ).where(ErasedSubmissions.week >= _monday(since))
    for definition_id, week, n in session.execute(erased):
        slug, purposes = offered[definition_id]
        counts[(slug, week, purposes)] += int(n)
    return [
        SubmissionWeek(slug, week, purposes, n)
        for (slug, week, purposes), n in sorted(counts.items())
    ]
