"""The console's data-subject request pages: the queue (``/console/requests``), one
request (``/console/requests/{id}``) with its steps, each irreversible one behind an
explicit confirmation. The work itself is in :mod:`console.requests_work`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from consent_ledger import requests as subject_requests
from console import forms, requests_work
from console.roles import Permission
from console.web import (
    Staff,
    checked_post,
    database_of,
    field,
    ledger_of,
    render,
    require,
    staff_page,
)
from zeroparty.errors import Conflict, InvalidInput, NotFound

NOTICES = {
    "created": "The request is in the queue.",
    "nothing_held": "The request is recorded and closed: we hold no personal data on this "
    "address. Tell the person so.",
    "erased": "The lead's personal data is erased; the request is completed.",
    "withdrawn": "The consent changes are recorded in the ledger; the request is completed.",
    "completed": "The request is completed.",
    "extended": "The deadline is extended. Tell the person why, before the first deadline.",
    "refused": "The request is refused; the reason is kept with it.",
}
KINDS = [(kind.value, title) for kind, title in subject_requests.KIND_TITLES.items()]


def _queue(request: Request) -> list[subject_requests.RequestView]:
    with database_of(request).read() as session:
        return subject_requests.list_requests(session)


def _requests_page(
    request: Request, staff: Staff, extra: dict[str, Any], status: int = 200
) -> Response:
    done = request.query_params.get("done")
    context = {
        "queue": _queue(request),
        "done": NOTICES.get(done or ""),
        "form": {},
        "kinds": KINDS,
        "due_soon_days": subject_requests.DUE_SOON_DAYS,
        **extra,
    }
    return render(request, "requests.html", context, staff=staff, status=status)


@staff_page
async def requests_page(request: Request) -> Response:
    """``GET /console/requests``: the queue, open and most urgent first."""
    staff = await require(request, Permission.HANDLE_REQUESTS)
    return await database_of(request).run(_requests_page, request, staff, {})


@staff_page
async def enter_request(request: Request) -> Response:
    """``POST /console/requests``: a request received by mail or phone."""
    staff, form = await checked_post(request, Permission.HANDLE_REQUESTS)
    values = {name: field(form, name) for name in ("email", "kind", "received_at", "note")}
    database = database_of(request)
    try:
        received = (
            forms.parse_moment(values["received_at"], "received_at")
            if values["received_at"]
            else None
        )
        entered = await database.run(
            requests_work.enter_request, database, ledger_of(request), staff.id, staff.email,
            values["email"], values["kind"], received, values["note"],
        )  # fmt: skip
    except InvalidInput as exc:
        errors = exc.fields or {"form": exc.message}
        context = {"errors": errors, "form": values}
        return await database.run(_requests_page, request, staff, context, exc.status_code)
    done = "nothing_held" if entered.subject_id is None else "created"
    return RedirectResponse(f"/console/requests?done={done}", status_code=303)


def _request_id(request: Request) -> int:
    raw = request.path_params["request_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFound("no such request")
    return int(raw)


def _detail_page(
    request: Request, staff: Staff, request_id: int, extra: dict[str, Any], status: int = 200
) -> Response:
    detail = requests_work.request_detail(database_of(request), ledger_of(request), request_id)
    done = request.query_params.get("done")
    context = {
        "detail": detail,
        "item": detail.view,
        "r": detail.view.request,
        "kind_title": subject_requests.KIND_TITLES[
            subject_requests.RequestKind(detail.view.request.kind)
        ],
        "done": NOTICES.get(done or ""),
        "errors": {},
        "form": {},
        **extra,
    }
    return render(request, "requests_detail.html", context, staff=staff, status=status)


@staff_page
async def request_page(request: Request) -> Response:
    """``GET /console/requests/{id}``: one request, what carrying it out changes, its steps."""
    staff = await require(request, Permission.HANDLE_REQUESTS)
    return await database_of(request).run(_detail_page, request, staff, _request_id(request), {})


async def _step(request: Request, work: Any, *args: Any, done: str) -> Response:
    """A POST step on one request: on refused input, the request's page with the
    problem (nothing changed); otherwise back to it with ``done``."""
    staff, form = await checked_post(request, Permission.HANDLE_REQUESTS)
    request_id = _request_id(request)
    database = database_of(request)
    values = {name: field(form, name) for name in ("note", "reason", "confirm")}
    confirmed = values["confirm"] == "yes"
    try:
        await database.run(
            work, database, *args_for(request, staff, request_id, values, confirmed, args)
        )
    except (InvalidInput, Conflict) as exc:
        errors = exc.fields or {"form": exc.message}
        return await database.run(
            _detail_page, request, staff, request_id,
            {"errors": errors, "form": values}, exc.status_code,
        )  # fmt: skip
    return RedirectResponse(f"/console/requests/{request_id}?done={done}", status_code=303)


def args_for(
    request: Request,
    staff: Staff,
    request_id: int,
    values: dict[str, str],
    confirmed: bool,
    names: tuple[str, ...],
) -> list[Any]:
    """The arguments a step's work function takes, by name, in order."""
    known: dict[str, Any] = {
        "ledger": ledger_of(request),
        "staff_id": staff.id,
        "staff_email": staff.email,
        "request_id": request_id,
        "note": values["note"],
        "reason": values["reason"],
        "confirmed": confirmed,
    }
    return [known[name] for name in names]


@staff_page
async def answer_access(request: Request) -> Response:
    """``POST /console/requests/{id}/access``: download everything held; completes it
    (access and portability)."""
    staff, _form = await checked_post(request, Permission.HANDLE_REQUESTS)
    request_id = _request_id(request)
    database = database_of(request)
    body = await database.run(
        requests_work.access_export,
        database, ledger_of(request), staff.id, staff.email, request_id,
    )  # fmt: skip
    filename = f"{body['kind']}-request-{request_id}.json"
    return Response(
        orjson.dumps(body, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@staff_page
async def carry_out_erasure(request: Request) -> Response:
    """``POST /console/requests/{id}/erase`` (``confirm=yes``): erase the lead's data."""
    return await _step(
        request, requests_work.carry_out_erasure,
        "ledger", "staff_id", "staff_email", "request_id", "confirmed", done="erased",
    )  # fmt: skip


@staff_page
async def carry_out_withdrawals(request: Request) -> Response:
    """``POST /console/requests/{id}/withdraw`` (``confirm=yes``): the consent changes
    a restriction, objection, opt-out of sale/sharing or limit request calls for."""
    return await _step(
        request, requests_work.carry_out_withdrawals,
        "ledger", "staff_id", "staff_email", "request_id", "confirmed", done="withdrawn",
    )  # fmt: skip


@staff_page
async def complete_rectification(request: Request) -> Response:
    """``POST /console/requests/{id}/complete`` (``note``, ``confirm=yes``)."""
    return await _step(
        request, requests_work.complete_rectification,
        "staff_id", "staff_email", "request_id", "note", "confirmed", done="completed",
    )  # fmt: skip


@staff_page
async def extend_request(request: Request) -> Response:
    """``POST /console/requests/{id}/extend`` (``reason``): once per request."""
    return await _step(
        request, requests_work.extend,
        "staff_id", "staff_email", "request_id", "reason", done="extended",
    )  # fmt: skip


@staff_page
async def refuse_request(request: Request) -> Response:
    """``POST /console/requests/{id}/refuse`` (``note``): close it with the reason given."""
    return await _step(
        request, requests_work.refuse,
        "staff_id", "staff_email", "request_id", "note", done="refused",
    )  # fmt: skip


routes = [
    Route("/console/requests", requests_page, methods=["GET"]),
    Route("/console/requests", enter_request, methods=["POST"]),
    Route("/console/requests/{request_id}", request_page, methods=["GET"]),
    Route("/console/requests/{request_id}/access", answer_access, methods=["POST"]),
    Route("/console/requests/{request_id}/erase", carry_out_erasure, methods=["POST"]),
    Route("/console/requests/{request_id}/withdraw", carry_out_withdrawals, methods=["POST"]),
    Route("/console/requests/{request_id}/complete", complete_rectification, methods=["POST"]),
    Route("/console/requests/{request_id}/extend", extend_request, methods=["POST"]),
    Route("/console/requests/{request_id}/refuse", refuse_request, methods=["POST"]),
]
