"""``GET /console/subscriptions``: the subscriptions and their delivery log, for admins.

Guarded by the console's guard the app is wired with (:data:`zeroparty.wiring.StaffGuard`:
session and role as on the console's own pages); consent sync imports nothing of the
console. Read only: endpoints are registered and removed with ``zeroparty subscription``.
``?subscription=ID`` shows one endpoint's deliveries, ``?dead=1`` only dead letters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from consent_sync import subscriptions
from zeroparty.db import Database
from zeroparty.errors import InvalidInput, NotFound
from zeroparty.wiring import StaffGuard, staff_guard

PERMISSION = "view-audit-log"  # admins only, as the staff log
LOG_LIMIT = 200


def _guard(request: Request) -> StaffGuard:
    """The console's guard (the same one the audience download uses)."""
    guard: StaffGuard | None = getattr(request.app.state, "consent_sync_staff_guard", None)
    if guard is None:
        guard = staff_guard()
        if guard is None:
            raise NotFound("no console in this build")
        request.app.state.consent_sync_staff_guard = guard
    return guard


def _read(session: Session, subscription_id: int | None, dead: bool) -> dict[str, Any]:
    connection = session.connection()
    return {
        "subscriptions": subscriptions.subscriptions(connection, include_removed=True),
        "deliveries": subscriptions.delivery_log(
            connection, subscription_id=subscription_id, dead_only=dead, limit=LOG_LIMIT
        ),
    }


def _query(request: Request) -> tuple[int | None, bool]:
    raw = request.query_params.get("subscription", "")
    if raw and not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise InvalidInput(
            "subscription: a subscription's number", fields={"subscription": "a number"}
        )
    return (int(raw) if raw else None), request.query_params.get("dead") == "1"


async def _page(request: Request, _staff_id: int) -> Response:
    subscription_id, dead = _query(request)
    database: Database = request.app.state.database

    def read() -> dict[str, Any]:
        with database.read() as session:
            return _read(session, subscription_id, dead)

    context = await database.run(read)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "consent_sync/subscriptions.html",
        {**context, "subscription_id": subscription_id, "dead": dead, "limit": LOG_LIMIT},
        headers={"Cache-Control": "no-store", "Referrer-Policy": "same-origin"},
    )


async def subscriptions_page(request: Request) -> Response:
    return await _guard(request)(PERMISSION, _page)(request)


routes: list[BaseRoute] = [Route("/console/subscriptions", subscriptions_page, methods=["GET"])]
