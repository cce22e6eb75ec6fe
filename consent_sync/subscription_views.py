"""``GET /console/subscriptions``: the subscriptions and their delivery log, for admins.

Guarded by the console's guard the app is wired with (:data:`zeroparty.wiring.StaffGuard`:
session and role as on the console's own pages); consent sync imports nothing of the
console. ``?subscription=ID`` shows one endpoint's deliveries, ``?dead=1`` only dead
letters. ``POST /console/subscriptions`` registers an endpoint (its signing secret shown
on the answer, once) and ``POST /console/subscriptions/{id}/remove`` stops one; both
refuse cross-site posts (``Sec-Fetch-Site``/``Origin``) and need the page's form token
(signed, bound to the staff member, an hour long), and go into the staff log.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from consent_sync import subscriptions
from consent_sync.access import staff_log
from zeroparty.crosssite import require_same_origin
from zeroparty.db import Database
from zeroparty.errors import Forbidden, InvalidInput, NotFound
from zeroparty.settings import Settings
from zeroparty.tokens import TokenError, TokenService
from zeroparty.wiring import StaffGuard, staff_guard

PERMISSION = "view-audit-log"  # admins only, as the staff log
LOG_LIMIT = 200
FORM_TOKEN_SECONDS = 3600


def _form_tokens(request: Request) -> TokenService:
    settings: Settings = request.app.state.settings
    return TokenService(
        settings.secret_keys, "consent_sync.console.subscriptions", FORM_TOKEN_SECONDS
    )


async def _checked_form(request: Request, staff_id: int) -> dict[str, Any]:
    """The posted form, once it is known to come from this staff member's own page."""
    settings: Settings = request.app.state.settings
    require_same_origin(request, settings.base_url)
    form = await request.form(max_files=0, max_fields=50)
    token = form.get("token")
    try:
        payload = _form_tokens(request).read(token if isinstance(token, str) else "")
    except TokenError as exc:
        raise Forbidden("this form has expired or is not yours: reload the page") from exc
    if payload.get("staff") != staff_id:
        raise Forbidden("this form is not yours: reload the page")
    return {
        "url": str(form.get("url") or ""),
        "events": [str(v) for v in form.getlist("events")],
        "description": str(form.get("description") or ""),
    }


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


async def _page(request: Request, staff_id: int, created: Any = None) -> Response:
    subscription_id, dead = _query(request) if created is None else (None, False)
    database: Database = request.app.state.database

    def read() -> dict[str, Any]:
        with database.read() as session:
            return _read(session, subscription_id, dead)

    context = await database.run(read)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        "consent_sync/subscriptions.html",
        {
            **context,
            "subscription_id": subscription_id,
            "dead": dead,
            "limit": LOG_LIMIT,
            "event_types": subscriptions.EVENT_TYPES,
            "token": _form_tokens(request).issue({"staff": staff_id}),
            "created": created,
        },
        status_code=201 if created is not None else 200,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "same-origin"},
    )


async def _add(request: Request, staff_id: int) -> Response:
    form = await _checked_form(request, staff_id)
    database: Database = request.app.state.database
    log = staff_log(request)

    def add() -> subscriptions.NewSubscription:
        with database.write() as session:
            made = subscriptions.add_subscription(
                session,
                form["url"],
                form["events"],
                created_by=f"staff:{staff_id}",
                description=form["description"],
            )
            log(session, staff_id, "subscription.add", f"subscription {made.id}: {form['url']}")
        return made

    made = await database.run(add)
    return await _page(request, staff_id, created=made)


async def _remove(request: Request, staff_id: int) -> Response:
    await _checked_form(request, staff_id)
    raw = request.path_params["subscription_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        raise NotFound("no such subscription")
    database: Database = request.app.state.database
    log = staff_log(request)

    def remove() -> None:
        with database.write() as session:
            cancelled = subscriptions.remove_subscription(session, int(raw))
            log(session, staff_id, "subscription.remove",
                f"subscription {raw}; {cancelled} waiting deliveries cancelled")  # fmt: skip

    await database.run(remove)
    return RedirectResponse("/console/subscriptions", status_code=303)


async def subscriptions_page(request: Request) -> Response:
    endpoint = _add if request.method == "POST" else _page
    return await _guard(request)(PERMISSION, endpoint)(request)


async def remove_page(request: Request) -> Response:
    return await _guard(request)(PERMISSION, _remove)(request)


routes: list[BaseRoute] = [
    Route("/console/subscriptions", subscriptions_page, methods=["GET", "POST"]),
    Route("/console/subscriptions/{subscription_id}/remove", remove_page, methods=["POST"]),
]
