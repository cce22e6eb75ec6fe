"""The ledger's part of retention (:mod:`zeroparty.retention`): closed data-subject
requests (kept at least 24 months, the site file cannot make it shorter), the public
request page's pending requests whose link expired, and contacts without any permission.

A contact without any permission is a lead, not erased, created before the cutoff, who
permits no purpose, has no grant pending confirmation, has no ledger entry since the
cutoff and no open data-subject request: they are erased (every package's part, as the
app is wired), which appends ``erased`` entries. The ledger's entries themselves are
never purged (append-only, SPEC rule 4).
"""

from __future__ import annotations

from sqlalchemy import Select, func, or_, select

from consent_ledger.actions import ConsentMethod, ConsentSource
from consent_ledger.erasure import scrub_after_erasure
from consent_ledger.models import ConsentState, Subject
from consent_ledger.projection import PENDING
from consent_ledger.requests import (
    DataSubjectRequest,
    RequestStatus,
    purge_closed,
    purge_confirmations,
)
from zeroparty.retention import Purge, PurgeContext, RetentionKind

BATCH = 500
"""Leads erased per run at most (the job runs again within the hour)."""


def _contacts_without_permission(context: PurgeContext) -> Select[str]:
    live = select(ConsentState.subject_id).where(
        or_(
            ConsentState.permitted.is_(True),
            ConsentState.status == PENDING,
            ConsentState.last_occurred_at >= context.cutoff,
        )
    )
    open_requests = select(DataSubjectRequest.subject_id).where(
        DataSubjectRequest.status == RequestStatus.OPEN.value,
        DataSubjectRequest.subject_id.is_not(None),
    )
    return select(Subject.id).where(
        Subject.erased_at.is_(None),
        Subject.created_at < context.cutoff,
        Subject.id.not_in(live),
        Subject.id.not_in(open_requests),
    )


def purge_contacts_without_permission(context: PurgeContext) -> int:
    stmt = _contacts_without_permission(context)
    session = context.session
    if context.dry_run:
        counted = select(func.count()).select_from(stmt.subquery())
        return int(session.scalar(counted) or 0)
    ids = list(session.scalars(stmt.order_by(Subject.id).limit(BATCH)))
    for subject_id in ids:
        context.ledger.erase(
            session, subject_id, source=ConsentSource.SYSTEM, method=ConsentMethod.SYSTEM,
            source_ref="retention",
        )  # fmt: skip
    return len(ids)


def purge_closed_requests(context: PurgeContext) -> int:
    return purge_closed(context.session, context.cutoff, dry_run=context.dry_run)


def purge_expired_confirmations(context: PurgeContext) -> int:
    """Pending requests of the public page whose link expired (after 24 hours, whatever
    the period: they hold an address nobody confirmed)."""
    return purge_confirmations(context.session, dry_run=context.dry_run)


PURGES = (
    Purge(
        RetentionKind.CONTACTS_WITHOUT_PERMISSION,
        "contacts without any permission (erased)",
        purge_contacts_without_permission,
        after=scrub_after_erasure,
    ),
    Purge(RetentionKind.CLOSED_REQUESTS, "closed data-subject requests", purge_closed_requests),
    Purge(
        RetentionKind.CLOSED_REQUESTS,
        "unconfirmed request-page requests",
        purge_expired_confirmations,
        fixed_period="kept 24 hours, until their link expired",
    ),
)
