"""``GET /api/suppression``: the suppression list (see :mod:`consent_sync.suppression`)."""

from __future__ import annotations

import orjson
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from consent_ledger.entries import format_timestamp
from consent_sync import suppression
from consent_sync.access import SyncRead, keyed_read, staff_log
from consent_sync.suppression import Suppressed, SuppressionPage
from zeroparty.apikeys import Scope
from zeroparty.db import Database


def entry_json(entry: Suppressed) -> dict[str, object]:
    return {
        "email_sha256": entry.email_sha256,
        "reason": entry.reason,
        "purposes": entry.purposes,
        "since": format_timestamp(entry.since) if entry.since else None,
    }


async def get_suppression(request: Request) -> Response:
    database: Database = request.app.state.database
    params = dict(request.query_params)
    purpose = params.get("purpose") or None

    def read(session: Session) -> tuple[SuppressionPage, str]:
        after, limit = suppression.parse_query(params)
        connection = session.connection()
        suppression.check_purpose(connection, purpose)
        page = suppression.read_page(connection, purpose, after, limit)
        of = f" of {purpose}" if purpose else ""
        return page, f"suppression list{of}: {len(page.entries)} addresses"

    page = await database.run(
        keyed_read,
        database,
        request.app.state.api_keys,
        request.headers.get("authorization"),
        Scope.AUDIENCES,
        staff_log(request),
        SyncRead.SUPPRESSION,
        read,
    )
    body = {
        "purpose": purpose,
        "suppressed": [entry_json(e) for e in page.entries],
        "next_after": page.next_after,
    }
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"}
    )


routes: list[BaseRoute] = [Route("/api/suppression", get_suppression, methods=["GET"])]
