"""The preference center's part of retention (:mod:`zeroparty.retention`): the counters
of link requests (``/p/request-link`` and the public request page)."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from preference_center.models import LinkRequest
from zeroparty.retention import Purge, PurgeContext, RetentionKind


def purge_link_requests(context: PurgeContext) -> int:
    where = LinkRequest.requested_at < context.cutoff
    if context.dry_run:
        return int(
            context.session.scalar(select(func.count()).select_from(LinkRequest).where(where)) or 0
        )
    result = context.session.execute(delete(LinkRequest).where(where))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


PURGES = (Purge(RetentionKind.RATE_COUNTERS, "link request counters", purge_link_requests),)
