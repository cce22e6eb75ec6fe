"""``POST /api/inbound/{provider}``: a sending tool's unsubscribes, complaints and hard
bounces, recorded as withdrawals (see :mod:`consent_sync.inbound`)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from consent_ledger.api import ConsentLedger
from consent_sync import inbound
from zeroparty.db import Database
from zeroparty.errors import PayloadTooLarge, ZeropartyError

MAX_BODY_BYTES = 1_000_000


async def post_inbound(request: Request) -> Response:
    provider = request.path_params["provider"]
    client = request.client.host if request.client else None
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        inbound.refused(provider, "body too large", client)
        raise PayloadTooLarge(f"body: at most {MAX_BODY_BYTES} bytes")
    headers = {k.lower(): v for k, v in request.headers.items()}
    database: Database = request.app.state.database
    ledger: ConsentLedger = request.app.state.ledger

    def record() -> inbound.InboundReport:
        with database.write() as session:
            return inbound.receive(session, ledger, provider, headers, body)

    try:
        report = await database.run(record)
    except ZeropartyError as exc:
        inbound.refused(provider, f"{exc.code}: {exc.message}", client)
        raise
    return Response(orjson.dumps(report.as_json()), media_type="application/json")


routes: list[BaseRoute] = [Route("/api/inbound/{provider}", post_inbound, methods=["POST"])]
