"""The console's HTTP surface, part two: data-subject requests, ledger health and the
staff audit log."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from consent_ledger import requests as subject_requests
from console import audit, forms, health, requests_work
from console.audit import StaffAction
from console.roles import Permission
from console.web import (
    Staff,
    checked_post,
    database_of,
    field,
    ledger_of,
    render,
    require,
    settings_of,
    staff_page,
)
from zeroparty.errors import InvalidInput, NotFound

NOTICES = {
    "created": "The request is in the queue.",
    "erased": "The lead's personal data is erased; the request is completed.",
    "refused": "The request is refused; the reason is kept with it.",
}


def _queue(request: Request) -> list[subject_requests.RequestView]:
    with database_of(request).read() as session:
        return subject_requests.list_requests(session)


def _requests_page(
    request: Request, staff: Staff, extra: dict[str, Any], status: int = 200
) -> Response:
    done = request.query_params.get("done")
    context = {"queue": _queue(request), "done": NOTICES.get(done or ""), "form": {}, **extra}
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
    try:
        received = (
            forms.parse_moment(values["received_at"], "received_at")
            if values["received_at"]
            else None
        )
        database = database_of(request)
        await database.run(
            requests_work.enter_request, database, ledger_of(request), staff.id, staff.email,
            values["email"], values["kind"], received, values["note"],
        )  # fmt: skip
    except (InvalidInput, NotFound) as exc:
        errors = exc.fields or {"form": exc.message}
        context = {"errors": errors, "form": values}
        return await database_of(request).run(
            _requests_page, request, staff, context, exc.status_code
        )
    return RedirectResponse("/console/requests?done=created", status_code=303)


def _request_id(request: Request) -> int:
    raw = request.path_params["request_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFound("no such request")
    return int(raw)


@staff_page
async def answer_access(request: Request) -> Response:
    """``POST /console/requests/{id}/access``: download everything held; completes it."""
    staff, _form = await checked_post(request, Permission.HANDLE_REQUESTS)
    request_id = _request_id(request)
    database = database_of(request)
    body = await database.run(
        requests_work.access_export,
        database, ledger_of(request), staff.id, staff.email, request_id,
    )  # fmt: skip
    return Response(
        orjson.dumps(body, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="access-request-{request_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@staff_page
async def carry_out_erasure(request: Request) -> Response:
    """``POST /console/requests/{id}/erase``: erase the lead's personal data now."""
    staff, _form = await checked_post(request, Permission.HANDLE_REQUESTS)
    database = database_of(request)
    await database.run(
        requests_work.carry_out_erasure,
        database, ledger_of(request), staff.id, staff.email, _request_id(request),
    )  # fmt: skip
    return RedirectResponse("/console/requests?done=erased", status_code=303)


@staff_page
async def refuse_request(request: Request) -> Response:
    """``POST /console/requests/{id}/refuse``: close it with the reason given."""
    staff, form = await checked_post(request, Permission.HANDLE_REQUESTS)
    database = database_of(request)
    await database.run(
        requests_work.refuse,
        database, staff.id, staff.email, _request_id(request), field(form, "note"),
    )  # fmt: skip
    return RedirectResponse("/console/requests?done=refused", status_code=303)


# ---------------------------------------------------------------- ledger health


def _health(request: Request, run_id: int | None) -> dict[str, Any]:
    with database_of(request).read() as session:
        current = health.get_run(session, run_id) if run_id else health.last_run(session)
        if run_id and current is None:
            raise NotFound("no such verification run")
        return {
            "current": current,
            "stale": current is not None and health.is_stale(current),
            "finished": health.last_finished(session),
            "runs": health.recent_runs(session),
        }


@staff_page
async def health_page(request: Request) -> Response:
    """``GET /console/health[?run=N]``: the last result; refreshes itself while a run goes."""
    staff = await require(request, Permission.VIEW_HEALTH)
    raw = request.query_params.get("run", "")
    run_id = int(raw) if raw.isdigit() and len(raw) < 12 else None
    context = await run_in_threadpool(_health, request, run_id)
    return render(request, "health.html", context, staff=staff)


def _start(request: Request, staff: Staff) -> int:
    database = database_of(request)
    with database.write() as session:
        run = health.start_run(session, staff.id)
        audit.record(session, staff.id, StaffAction.VERIFY_RUN, detail=f"run {run.id}")
        run_id = run.id
    health.start_in_background(database, settings_of(request), run_id)
    return run_id


@staff_page
async def start_verification(request: Request) -> Response:
    """``POST /console/health/verify``: start verifying the whole ledger in the background."""
    staff, _form = await checked_post(request, Permission.RUN_VERIFICATION)
    run_id = await run_in_threadpool(_start, request, staff)
    return RedirectResponse(f"/console/health?run={run_id}", status_code=303)


# ---------------------------------------------------------------- staff audit log


def _audit_rows(request: Request, before: int | None) -> list[audit.AuditRow]:
    with database_of(request).read() as session:
        return audit.recent(session, before=before)


@staff_page
async def audit_page(request: Request) -> Response:
    """``GET /console/audit[?before=N]``: what staff did, newest first (admins only)."""
    staff = await require(request, Permission.VIEW_AUDIT_LOG)
    before = forms.parse_cursor(request.query_params.get("before"))
    rows = await run_in_threadpool(_audit_rows, request, before)
    return render(request, "audit.html", {"rows": rows}, staff=staff)


routes = [
    Route("/console/requests", requests_page, methods=["GET"]),
    Route("/console/requests", enter_request, methods=["POST"]),
    Route("/console/requests/{request_id}/access", answer_access, methods=["POST"]),
    Route("/console/requests/{request_id}/erase", carry_out_erasure, methods=["POST"]),
    Route("/console/requests/{request_id}/refuse", refuse_request, methods=["POST"]),
    Route("/console/health", health_page, methods=["GET"]),
    Route("/console/health/verify", start_verification, methods=["POST"]),
    Route("/console/audit", audit_page, methods=["GET"]),
]
