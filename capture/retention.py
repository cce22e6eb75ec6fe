"""Capture's part of retention (:mod:`zeroparty.retention`): submissions with their
answers, and the rate counters of form posts.

A submission purged for age is counted, like an erased one, in
``capture_erased_submissions`` (per form version and week, no subject), so the opt-in
rates keep the boxes it showed in their denominator while the ledger keeps its grants.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import cast

from sqlalchemy import Select, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from capture.models import Answer, ErasedSubmissions, IdempotencyRecord, RateCounter, Submission
from zeroparty.retention import Purge, PurgeContext, RetentionKind

_erased = cast(Table, ErasedSubmissions.__table__)


def _count_as_erased(session: Session, old: Select[str]) -> None:
    weeks: Counter[tuple[int, date]] = Counter()
    for definition_id, created_at in session.execute(
        select(Submission.definition_id, Submission.created_at).where(Submission.id.in_(old))
    ):
        day = created_at.date()
        weeks[(definition_id, day - timedelta(days=day.weekday()))] += 1
    connection = session.connection()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    for (definition_id, week), n in sorted(weeks.items()):
        upsert = dialect.insert(_erased).values(
            definition_id=definition_id, week=week, submissions=n
        )
        connection.execute(
            upsert.on_conflict_do_update(
                index_elements=["definition_id", "week"],
                set_={"submissions": _erased.c.submissions + n},
            )
        )


def purge_submissions(context: PurgeContext) -> int:
    """Submissions older than the cutoff, their answers and their idempotency records."""
    session = context.session
    old = select(Submission.id).where(Submission.created_at < context.cutoff)
    count = int(session.scalar(select(func.count()).select_from(old.subquery())) or 0)
    if context.dry_run or not count:
        return count
    _count_as_erased(session, old)
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.submission_id.in_(old)))
    session.execute(delete(Answer).where(Answer.submission_id.in_(old)))
    session.execute(delete(Submission).where(Submission.created_at < context.cutoff))
    return count


def purge_rate_counters(context: PurgeContext) -> int:
    """Counters of form posts whose window began before the cutoff."""
    where = RateCounter.window_start < int(context.cutoff.timestamp())
    if context.dry_run:
        return int(
            context.session.scalar(select(func.count()).select_from(RateCounter).where(where)) or 0
        )
    result = context.session.execute(delete(RateCounter).where(where))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


PURGES = (
    Purge(RetentionKind.SUBMISSIONS, "form and quiz submissions", purge_submissions),
    Purge(RetentionKind.RATE_COUNTERS, "form rate counters", purge_rate_counters),
)
