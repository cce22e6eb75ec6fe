"""The console's HTTP surface: the overview, leads, the ledger and its exports, proofs
(with the routes of the other parts: :mod:`console.auth_views`,
:mod:`console.work_views`, :mod:`console.insight_views`).

Every page needs a staff session (``/console/login`` otherwise); every POST must come
from the console's own pages (``Sec-Fetch-Site``/``Origin``) and carry the session's
CSRF nonce. What staff look at and export about a lead is written to the staff audit
log in the same request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from consent_ledger.actions import ConsentAction, ConsentSource
from consent_ledger.filters import LedgerFilter
from console import (
    audit,
    auth_views,
    dashboard,
    exports,
    forms,
    insight_views,
    lead_list,
    leads,
    proofs,
    sales_views,
    security_views,
    work_views,
)
from console.audit import StaffAction
from console.charts import render_bar_chart
from console.providers import SalesRecord
from console.roles import Permission
from console.web import (
    Staff,
    database_of,
    ledger_of,
    providers_of,
    render,
    require,
    staff_page,
)
from zeroparty.db import utcnow
from zeroparty.errors import InvalidInput


def _overview(request: Request, staff: Staff) -> dashboard.Dashboard:
    with database_of(request).read() as session:
        return dashboard.build_dashboard(
            ledger_of(request), session, providers_of(request), staff.may
        )


@staff_page
async def home(request: Request) -> Response:
    """``GET /console/``: the dashboard: leads, consent, rates, requests due, SLA
    breaches and ledger health, each with a small chart."""
    staff = await require(request, Permission.VIEW_LEADS)
    built = await database_of(request).run(_overview, request, staff)
    charts = [
        (
            tile,
            render_bar_chart(tile.chart, width=360, height=220, labels=8) if tile.chart else None,
        )
        for tile in built.tiles
    ]
    return render(request, "home.html", {"built": built, "tiles": charts}, staff=staff)


async def to_home(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=308)


# ---------------------------------------------------------------- leads


def _lead_list(request: Request, staff: Staff, params: dict[str, str]) -> lead_list.LeadListPage:
    database = database_of(request)
    with database.read() as session:
        found = lead_list.lead_list(ledger_of(request), session, providers_of(request), params)
    if found.rows:
        with database.write() as session:
            # What was typed is not kept (it may be an email); which leads it showed is.
            shown = " ".join(row.subject_id for row in found.rows[:20])
            detail = f"{found.total} result(s), page {found.page}: {shown}"
            audit.record(session, staff.id, StaffAction.LEAD_SEARCH, detail=detail)
    return found


@staff_page
async def lead_search(request: Request) -> Response:
    """``GET /console/leads[?q=&stage=&purpose=&form=&source=&from=&to=&page=]``: every
    lead, newest first, filtered, with the true count and numbered pages. A filter or
    page that cannot be used is named (422, as any refused input) and left out; the
    first page of the rest is shown."""
    staff = await require(request, Permission.VIEW_LEADS)
    params = {key: value[:400] for key, value in request.query_params.items()}
    found = await database_of(request).run(_lead_list, request, staff, params)
    status = 422 if found.problems else 200
    return render(request, "leads.html", {"found": found}, staff=staff, status=status)


def _lead_page(
    request: Request, staff: Staff, subject_id: str, at: datetime | None
) -> tuple[leads.LeadFile, SalesRecord | None]:
    """The lead's file and what sales recorded; the look is written to the audit log."""
    database = database_of(request)
    with database.read() as session:
        lead = leads.lead_file(
            ledger_of(request),
            session,
            subject_id,
            with_evidence=staff.may(Permission.VIEW_EVIDENCE),
            at=at,
            definitions=providers_of(request).definition_versions,
        )
    with database.write() as session:
        detail = f"at {at.isoformat()}" if at else ""
        audit.record(session, staff.id, StaffAction.LEAD_VIEW, subject_id=subject_id, detail=detail)
    return lead, sales_views.sales_of(request, subject_id)


@staff_page
async def lead_page(request: Request) -> Response:
    """``GET /console/leads/{id}[?at=]``: timeline, state now, and at a moment."""
    staff = await require(request, Permission.VIEW_LEADS)
    subject_id = forms.parse_subject_id(request.path_params["subject_id"])
    at_raw = request.query_params.get("at", "").strip()
    at = forms.parse_moment(at_raw) if at_raw else None
    lead, sales = await database_of(request).run(_lead_page, request, staff, subject_id, at)
    context = {
        "lead": lead,
        "at_raw": at_raw,
        "sales": sales,
        "may_record": staff.may(Permission.RECORD_SALES),
        "done": sales_views.lead_notice(request),
        "authority_choices": sales_views.AUTHORITY_CHOICES,
        "timeline_choices": sales_views.TIMELINE_CHOICES,
    }
    return render(request, "lead.html", context, staff=staff)


# ---------------------------------------------------------------- the ledger


def _ledger_view(request: Request, params: dict[str, str]) -> dict[str, Any]:
    """The filtered page; a filter or cursor that cannot be used is named in
    ``problems`` and the whole ledger's first page shown instead."""
    ledger = ledger_of(request)
    problems: dict[str, str] = {}
    with database_of(request).read() as session:
        purposes = ledger.purpose_keys(session)
        try:
            ledger_filter = forms.parse_ledger_filter(params, purposes)
            before = forms.parse_cursor(params.get("before"))
        except InvalidInput as exc:
            problems = exc.fields or {"filter": exc.message}
            ledger_filter, before = LedgerFilter(), None
        page = exports.ledger_page(ledger, session, ledger_filter, before)
    return {
        "problems": problems,
        "page": page,
        "params": params,
        "query": forms.filter_query(ledger_filter),
        "purposes": purposes,
        "actions": [a.value for a in ConsentAction],
        "sources": [s.value for s in ConsentSource],
    }


@staff_page
async def ledger_page(request: Request) -> Response:
    """``GET /console/ledger``: the whole ledger, filtered, newest first."""
    staff = await require(request, Permission.VIEW_LEDGER)
    params = dict(request.query_params)
    context = await database_of(request).run(_ledger_view, request, params)
    status = 422 if context["problems"] else 200
    return render(request, "ledger.html", context, staff=staff, status=status)


def _start_export(
    request: Request, staff: Staff, params: dict[str, str]
) -> tuple[str, LedgerFilter]:
    """The export's format and filter, checked; the export is written to the audit log."""
    with database_of(request).write() as session:
        purposes = ledger_of(request).purpose_keys(session)
        ledger_filter = forms.parse_ledger_filter(params, purposes)
        kind = forms.parse_export_format(params.get("format"))
        detail = f"{kind} {orjson.dumps(forms.filter_query(ledger_filter)).decode()}"
        audit.record(session, staff.id, StaffAction.LEDGER_EXPORT, detail=detail)
    return kind, ledger_filter


@staff_page
async def ledger_export(request: Request) -> Response:
    """``GET /console/ledger/export?format=csv|jsonl&…``: the filtered view, streamed."""
    staff = await require(request, Permission.EXPORT)
    params = dict(request.query_params)
    kind, ledger_filter = await database_of(request).run(_start_export, request, staff, params)
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    if kind == "csv":
        body = exports.stream_csv(database_of(request), ledger_filter)
        media, name = "text/csv; charset=utf-8", f"ledger-{stamp}.csv"
    else:
        body = exports.stream_jsonl(database_of(request), ledger_filter)
        media, name = "application/x-ndjson", f"ledger-{stamp}.jsonl"
    return StreamingResponse(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# ---------------------------------------------------------------- proofs


def _proof(request: Request, staff: Staff, subject_id: str, purpose: str) -> proofs.ProofPage:
    state = request.app.state
    page = proofs.proof_page(
        database_of(request), state.settings, state.checkpoint_signer.get(), subject_id, purpose
    )
    with database_of(request).write() as session:
        audit.record(
            session, staff.id, StaffAction.PROOF_VIEW, subject_id=subject_id, detail=purpose
        )
    return page


@staff_page
async def proof_page(request: Request) -> Response:
    """``GET /console/leads/{id}/proof/{purpose}``: a proof a regulator can read."""
    staff = await require(request, Permission.VIEW_PROOFS)
    subject_id = forms.parse_subject_id(request.path_params["subject_id"])
    purpose = request.path_params["purpose"]
    page = await run_in_threadpool(_proof, request, staff, subject_id, purpose)
    return render(request, "proof.html", {"proof": page}, staff=staff)


def _receipt(request: Request, staff: Staff, subject_id: str, purpose: str) -> bytes:
    state = request.app.state
    receipt = proofs.receipt(
        database_of(request), state.settings, state.checkpoint_signer.get(), subject_id, purpose
    )
    with database_of(request).write() as session:
        audit.record(
            session, staff.id, StaffAction.RECEIPT_DOWNLOAD, subject_id=subject_id, detail=purpose
        )
    return orjson.dumps(receipt, option=orjson.OPT_INDENT_2)


@staff_page
async def receipt_download(request: Request) -> Response:
    """``GET /console/leads/{id}/receipt/{purpose}``: the signed consent receipt."""
    staff = await require(request, Permission.VIEW_PROOFS)
    subject_id = forms.parse_subject_id(request.path_params["subject_id"])
    purpose = request.path_params["purpose"]
    body = await run_in_threadpool(_receipt, request, staff, subject_id, purpose)
    return Response(
        body,
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="receipt-{subject_id[:8]}.json"',
            "Cache-Control": "no-store",
        },
    )


routes = [
    *auth_views.routes,
    *security_views.routes,
    *work_views.routes,
    *insight_views.routes,
    *sales_views.routes,
    Route("/console", to_home, methods=["GET"]),
    Route("/console/", home, methods=["GET"]),
    Route("/console/leads", lead_search, methods=["GET"]),
    Route("/console/leads/{subject_id}", lead_page, methods=["GET"]),
    Route("/console/leads/{subject_id}/proof/{purpose}", proof_page, methods=["GET"]),
    Route("/console/leads/{subject_id}/receipt/{purpose}", receipt_download, methods=["GET"]),
    Route("/console/ledger", ledger_page, methods=["GET"]),
    Route("/console/ledger/export", ledger_export, methods=["GET"]),
]
