"""The console's HTTP surface, part two: data-subject requests (their pages are in
:mod:`console.requests_views`), ledger health and the staff audit log."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import audit, forms, health, requests_views
from console.audit import StaffAction
from console.roles import Permission
from console.web import (
    Staff,
    checked_post,
    database_of,
    render,
    require,
    settings_of,
    staff_page,
)
from zeroparty.errors import InvalidInput, NotFound

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
    problems: dict[str, str] = {}
    try:
        before = forms.parse_cursor(request.query_params.get("before"))
    except InvalidInput as exc:  # named, and the newest page shown
        problems, before = exc.fields or {"before": exc.message}, None
    rows = await run_in_threadpool(_audit_rows, request, before)
    context = {"rows": rows, "problems": problems}
    return render(request, "audit.html", context, staff=staff, status=422 if problems else 200)


routes = [
    *requests_views.routes,
    Route("/console/health", health_page, methods=["GET"]),
    Route("/console/health/verify", start_verification, methods=["POST"]),
    Route("/console/audit", audit_page, methods=["GET"]),
]
