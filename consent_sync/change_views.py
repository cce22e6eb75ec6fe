"""``GET /api/changes``: the change feed (see :mod:`consent_sync.changes`)."""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from consent_ledger.entries import format_timestamp
from consent_sync.access import SyncRead, keyed_read, staff_log
from consent_sync.changes import Change, ChangePage, changes_page, parse_page_query
from zeroparty.apikeys import Scope
from zeroparty.db import Database


def _ts(moment: datetime) -> str:
    return format_timestamp(moment)


def change_json(change: Change) -> dict[str, object]:
    """One change as the feed (and every other wire format of it) shows it."""
    return {
        "seq": change.seq,
        "type": change.type.value,
        "lead_id": change.lead_id,
        "purpose": change.purpose,
        "occurred_at": _ts(change.occurred_at),
        "recorded_at": _ts(change.recorded_at),
        "source": change.source,
        "method": change.method,
        "notice_sha256": change.notice_sha256,
        "topics": change.topics,
        "email": change.email,
        "email_sha256": change.email_sha256,
        "erased": change.erased,
    }


def page_json(page: ChangePage) -> dict[str, object]:
    return {
        "changes": [change_json(c) for c in page.changes],
        "after": page.after,
        "next_after": page.next_after,
        "head": page.head,
        "has_more": page.has_more,
    }


async def get_changes(request: Request) -> Response:
    database: Database = request.app.state.database
    params = dict(request.query_params)

    def read(session: Session) -> tuple[ChangePage, str]:
        after, limit = parse_page_query(params)
        page = changes_page(session.connection(), after, limit)
        return page, f"changes after {after}: {len(page.changes)} (to {page.next_after})"

    page = await database.run(
        keyed_read,
        database,
        request.app.state.api_keys,
        request.headers.get("authorization"),
        Scope.CHANGES,
        staff_log(request),
        SyncRead.CHANGES,
        read,
    )
    return Response(orjson.dumps(page_json(page)), media_type="application/json")


routes: list[BaseRoute] = [Route("/api/changes", get_changes, methods=["GET"])]
