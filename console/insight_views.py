"""The console's HTTP surface, part three: reports with charts, versions with diffs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from console import reports, versions
from console.charts import render_bar_chart
from console.roles import Permission
from console.web import database_of, ledger_of, providers_of, render, require, staff_page
from zeroparty.errors import InvalidInput


def _weeks(raw: str | None) -> int:
    if raw is None or raw == "":
        return reports.DEFAULT_WEEKS
    if not raw.isdigit() or not 1 <= int(raw) <= reports.MAX_WEEKS:
        raise InvalidInput(
            f"weeks: a number from 1 to {reports.MAX_WEEKS}",
            fields={"weeks": f"a number from 1 to {reports.MAX_WEEKS}"},
        )
    return int(raw)


def _reports(request: Request, weeks: int) -> reports.Reports:
    with database_of(request).read() as session:
        return reports.build_reports(ledger_of(request), session, providers_of(request), weeks)


@staff_page
async def reports_page(request: Request) -> Response:
    """``GET /console/reports[?weeks=N]``: charts (SVG) with their numbers as tables."""
    staff = await require(request, Permission.VIEW_REPORTS)
    weeks = _weeks(request.query_params.get("weeks"))
    built = await database_of(request).run(_reports, request, weeks)
    charts = [(report, render_bar_chart(report.chart)) for report in built.reports]
    return render(request, "reports.html", {"built": built, "charts": charts}, staff=staff)


def _histories(request: Request) -> tuple[list[versions.History], list[versions.History] | None]:
    provider = providers_of(request).definition_versions
    with database_of(request).read() as session:
        notices = versions.notice_histories(ledger_of(request), session)
        forms = versions.form_histories(provider(session)) if provider else None
    return notices, forms


@staff_page
async def versions_page(request: Request) -> Response:
    """``GET /console/versions``: notice texts and forms with their versions."""
    staff = await require(request, Permission.VIEW_VERSIONS)
    notices, forms = await database_of(request).run(_histories, request)
    return render(request, "versions.html", {"notices": notices, "forms": forms}, staff=staff)


def _number(raw: str | None, name: str) -> int:
    if raw is None or not raw.isdigit() or len(raw) > 6:
        raise InvalidInput(f"{name}: a version number", fields={name: "a version number"})
    return int(raw)


@staff_page
async def diff_page(request: Request) -> Response:
    """``GET /console/versions/{kind}/diff?key=&a=&b=``: two versions side by side."""
    staff = await require(request, Permission.VIEW_VERSIONS)
    kind = request.path_params["kind"]
    notices, forms = await database_of(request).run(_histories, request)
    pool = notices if kind == "notice" else (forms or []) if kind == "form" else []
    history = versions.find(pool, request.query_params.get("key", ""))
    params = request.query_params
    old = versions.version(history, _number(params.get("a"), "a"))
    new = versions.version(history, _number(params.get("b"), "b"))
    context: dict[str, Any] = {
        "history": history,
        "old": old,
        "new": new,
        "rows": versions.side_by_side(history, old, new),
    }
    return render(request, "diff.html", context, staff=staff)


routes = [
    Route("/console/reports", reports_page, methods=["GET"]),
    Route("/console/versions", versions_page, methods=["GET"]),
    Route("/console/versions/{kind}/diff", diff_page, methods=["GET"]),
]
