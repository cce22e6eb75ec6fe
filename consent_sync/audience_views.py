"""``GET /api/audiences/{purpose}``: who may receive a purpose now, a page at a time
(see :mod:`consent_sync.audiences`)."""

from __future__ import annotations

import orjson
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from consent_ledger.api import ConsentLedger
from consent_ledger.entries import format_timestamp
from consent_sync import audiences, cursors
from consent_sync.access import SyncRead, bulk_links, keyed_read, staff_log
from consent_sync.audience_rows import member_json
from consent_sync.audiences import AudiencePage
from zeroparty.apikeys import Scope
from zeroparty.db import Database
from zeroparty.settings import Settings


async def get_audience(request: Request) -> Response:
    database: Database = request.app.state.database
    settings: Settings = request.app.state.settings
    ledger: ConsentLedger = request.app.state.ledger
    linker = bulk_links(request)
    purpose = request.path_params["purpose"]
    topic = request.query_params.get("topic") or None
    cursor = request.query_params.get("cursor") or None
    raw_limit = request.query_params.get("limit")

    def read(session: Session) -> tuple[AudiencePage, str]:
        limit = audiences.parse_limit(raw_limit)
        connection = session.connection()
        facts = audiences.purpose_facts(connection, purpose, topic)
        if cursor is None:
            snapshot, after = audiences.start(connection, purpose, topic), ""
        else:
            snapshot, after = cursors.read(settings, cursor, purpose, topic)
        page = audiences.read_page(session, ledger, linker, facts, snapshot, after, limit)
        of = f"{purpose}" + (f" topic {topic}" if topic else "")
        detail = (
            f"audience {of} as of entry {snapshot.as_of_seq}: "
            f"{len(page.members)} leads ({'next page' if cursor else 'first page'})"
        )
        return page, detail

    page = await database.run(
        keyed_read,
        database,
        request.app.state.api_keys,
        request.headers.get("authorization"),
        Scope.AUDIENCES,
        staff_log(request),
        SyncRead.AUDIENCE,
        read,
    )
    snapshot = page.snapshot
    body = {
        "purpose": snapshot.purpose,
        "topic": snapshot.topic,
        "as_of_seq": snapshot.as_of_seq,
        "as_of": format_timestamp(snapshot.as_of),
        "members": [member_json(m) for m in page.members],
        "next_cursor": None
        if page.last_lead is None
        else cursors.issue(settings, snapshot, page.last_lead),
    }
    return Response(
        orjson.dumps(body), media_type="application/json", headers={"Cache-Control": "no-store"}
    )


routes: list[BaseRoute] = [Route("/api/audiences/{purpose}", get_audience, methods=["GET"])]
