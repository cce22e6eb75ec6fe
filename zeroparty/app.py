"""The app factory: a Starlette app built from explicit settings.

Tests and servers build as many apps as they like (:func:`create_app`); the only
process-wide state is what is passed in. ``uvicorn --factory zeroparty.app:app_from_env``
builds one from the environment.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jinja2 import pass_context
from sqlalchemy import text
from sqlalchemy.exc import DataError, OperationalError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

import capture.history
import preference_center.links
import scoring.console_adapters
import scoring.reports
import scoring.sla
from consent_ledger.proofs import transparency
from console.providers import ConsoleProviders
from zeroparty import __version__, access_log, error_pages, i18n
from zeroparty.apikeys import ApiKeyVerifier
from zeroparty.background import PeriodicJob
from zeroparty.brand import brand_css, current_brand, site_brand
from zeroparty.brand_parts import BrandParts
from zeroparty.db import Database
from zeroparty.errors import ZeropartyError
from zeroparty.http import JSONResponse, wants_json
from zeroparty.openapi import build_openapi, openapi_endpoint
from zeroparty.routing import FirstSegmentRouter
from zeroparty.secret_keys import resolve_secret_keys
from zeroparty.security import SecurityHeadersMiddleware
from zeroparty.settings import PROJECT_ROOT, Settings, SettingsError
from zeroparty.wiring import (
    EntryPoint,
    Feature,
    JobContext,
    build_ledger,
    entry_points,
    features,
)

log = logging.getLogger("zeroparty")

TEMPLATES_DIR = PROJECT_ROOT / "templates"
STATIC_DIR = PROJECT_ROOT / "zeroparty" / "static"


async def error_response(request: Request, status: int, code: str, message: str,
                         fields: dict[str, str] | None = None) -> Response:  # fmt: skip
    """The one shape of every error: JSON for machines, an HTML page for people (in
    their language, with a way forward: zeroparty.error_pages)."""
    if wants_json(request):
        return JSONResponse(
            {"error": {"code": code, "message": message, "fields": fields or {}}},
            status_code=status,
        )
    templates: Jinja2Templates = request.app.state.templates
    identity = await error_pages.current_identity(request, status)
    context = error_pages.page_context(request, identity, status, message, fields or {})
    with i18n.activated(str(context["lang"])):
        return templates.TemplateResponse(
            request, "zeroparty/error.html", context, status_code=status
        )


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ZeropartyError)
    return await error_response(request, exc.status_code, exc.code, exc.message, exc.fields)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return await error_response(
        request, exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
    )


async def _unstorable(request: Request, exc: Exception) -> Response:
    # A value the database refuses to compare or store (PostgreSQL: a NUL character in
    # text) is bad input, not a failure of ours; the transaction was rolled back.
    assert isinstance(exc, DataError)
    log.warning("value refused by the database: %s", type(exc.orig).__name__)
    return await error_response(
        request,
        422,
        "invalid_input",
        "the request holds a value that cannot be stored; nothing was changed",
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s", type(exc).__name__)
    return await error_response(
        request, 503, "unavailable", "the database is unavailable; nothing was changed, retry later"
    )


async def _cannot_sign(request: Request, exc: Exception) -> Response:
    # This host's checkpoint key may not sign (another key signed the stored
    # checkpoints, or it cannot be read): no receipt or proof under a key the log does
    # not use. The operator's fix is in the reason (docs/operations.md, several hosts).
    assert isinstance(exc, transparency.CheckpointKeyRefused)
    log.error("refusing to sign on %s %s: %s", request.method, _route_of(request), exc)
    return await error_response(
        request,
        503,
        "checkpoint_key_refused",
        f"this host cannot sign receipts or checkpoints: {exc}",
    )


def _route_of(request: Request) -> str:
    """The matched route's template (``/p/{token}``), for logs; ``?`` before routing."""
    return str(getattr(request.scope.get("route"), "path", "?"))


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client closed the connection before its whole body arrived (Starlette raises
    # ClientDisconnect from the body read): nothing was stored, nobody is left to
    # answer. One short line, no traceback; the route template, never the path (it may
    # hold a token).
    assert isinstance(exc, ClientDisconnect)
    log.info(
        "client disconnected before sending its whole request: %s %s",
        request.method,
        _route_of(request),
    )
    return Response(status_code=400)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The route template, never the path: a path may hold a link token.
    log.exception("unexpected error on %s %s", request.method, _route_of(request))
    return await error_response(
        request, 500, "internal_error", "something went wrong on our side; nothing was changed"
    )


def healthz(request: Request) -> JSONResponse:
    database: Database = request.app.state.database
    try:
        with database.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError:
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": database.dialect, "version": __version__})


AUDIENCE_HEADINGS = {
    "visitors": "Try it as a visitor",
    "leads": "As a lead",
    "staff": "For staff",
    "developers": "For developers",
}


def home(request: Request) -> Response:
    """What to open first: the site's forms and quizzes, the lead's pages, the console
    and the API, each from the package that serves it."""
    templates: Jinja2Templates = request.app.state.templates
    points = [
        *entry_points(request.app.state.database, request.app.state.features),
        EntryPoint("developers", "JSON API schema", "/openapi.json", "OpenAPI 3.1"),
        EntryPoint("developers", "Health", "/healthz", "liveness and database reachability"),
    ]
    groups = [
        (heading, [p for p in points if p.audience == audience])
        for audience, heading in AUDIENCE_HEADINGS.items()
    ]
    return templates.TemplateResponse(
        request,
        "zeroparty/home.html",
        {"version": __version__, "groups": [(h, ps) for h, ps in groups if ps]},
    )


@pass_context
def static_url(context: Mapping[str, Any], path: str) -> str:
    """The URL of a file under ``/static``, as a path from the root (behind a proxy's
    prefix: with it). Starlette's ``url_for('static', ...)`` tries every route before the
    mount and raised and caught an exception in each: a third of a page's CPU time."""
    request: Request | None = context.get("request")
    root = request.scope.get("root_path", "") if request is not None else ""
    return f"{root}/static/{path}"


def templates_for(directory: Path) -> Jinja2Templates:
    templates = Jinja2Templates(directory=directory)
    # Templates ship with the code and change only with a new start: no stat() of the
    # file at every render to see whether it changed (three per page).
    templates.env.auto_reload = False
    templates.env.globals["static_url"] = static_url
    templates.env.globals["site_brand"] = site_brand
    i18n.install(templates.env)
    # The brand's macros (zeroparty/base.html calls them) from a module built once, their
    # HTML kept once rendered: an `{% import %}` looks the module up again at every
    # render, one `with context` builds it again, and the macro calls were about a fifth
    # of a short page's render.
    macros = templates.env.get_template("zeroparty/_brand.html").module
    templates.env.globals["branding"] = BrandParts(macros)
    return templates


def _background_jobs(parts: list[Feature], context: JobContext) -> list[PeriodicJob]:
    """What ``serve`` runs beside the web app, in every worker: each package's jobs."""
    return [job for part in parts if part.jobs is not None for job in part.jobs(context)]


def create_app(
    settings: Settings, database: Database | None = None, *, background: bool = False
) -> Starlette:
    """Build the app. ``database`` defaults to one for ``settings.database_url``;
    ``background`` runs the periodic jobs (``serve`` does; tests call them directly)."""
    if not settings.secret_keys:
        # Nothing may sign with nothing (or with a key everyone knows): the CLI and
        # app_from_env resolve the keys first (zeroparty.secret_keys).
        raise SettingsError(
            "create_app: settings.secret_keys is empty; set ZEROPARTY_SECRET_KEYS "
            "(or build the settings with zeroparty.secret_keys.resolve_secret_keys)"
        )
    db = database or Database.from_url(settings.database_url)
    owns_database = database is None
    parts = features()
    ledger = build_ledger(db, parts)
    signer = transparency.SignerSource(settings, db)
    with contextlib.suppress(OperationalError):
        # Loaded now when the database answers (a new key file is made at start, as the
        # CLI expects); with the database down, at first use, and the requests get 503.
        signer.get()
    jobs = _background_jobs(parts, JobContext(settings, db, ledger, signer)) if background else []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The brand's copy is read before the first request, so no visitor's page is
        # the one that reads it first (the same work for every request at start-up).
        await db.run(current_brand, db)
        for job in jobs:
            job.start()
        # What start-up made (modules, routes, metadata, compiled templates) lives as
        # long as the app: kept out of the garbage collector's full collections, which
        # would otherwise walk all of it again while requests wait.
        gc.freeze()
        yield
        gc.unfreeze()
        for job in jobs:
            job.stop()
        if owns_database:
            db.dispose()

    document = build_openapi([p.openapi for p in parts if p.openapi is not None], __version__)
    routes: list[Any] = [
        Route("/", home, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/brand.css", brand_css, methods=["GET"]),
        Route(
            "/openapi.json",
            openapi_endpoint(
                document,
                [
                    p.openapi.live_schemas
                    for p in parts
                    if p.openapi is not None and hasattr(p.openapi, "live_schemas")
                ],
            ),
            methods=["GET"],
        ),
        *(route for part in parts for route in part.routes),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(
        debug=False,
        routes=routes,
        middleware=[
            Middleware(SecurityHeadersMiddleware, hsts=settings.base_url.startswith("https://"))
        ],
        exception_handlers={
            ZeropartyError: _domain_error,
            HTTPException: _http_error,
            OperationalError: _unavailable,
            transparency.CheckpointKeyRefused: _cannot_sign,
            DataError: _unstorable,
            ClientDisconnect: _client_gone,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    # The same routes, found by the path's first segment (zeroparty.routing).
    app.router = FirstSegmentRouter(routes, lifespan=lifespan)
    app.state.settings = settings
    app.state.database = db
    app.state.ledger = ledger
    app.state.features = parts
    app.state.api_keys = ApiKeyVerifier(settings.api_key_cache_seconds)
    app.state.templates = templates_for(TEMPLATES_DIR)
    app.state.checkpoint_signer = signer
    # Every mail a package sends to a lead carries the preference center's links.
    app.state.lead_links = preference_center.links.lead_linker(settings)
    # The console reads capture's form history through providers, never an import.
    app.state.console_providers = ConsoleProviders(
        definition_versions=capture.history.definition_versions,
        submission_weeks=capture.history.submission_weeks,
        stage_counts=scoring.reports.stage_counts,
        sla_weeks=scoring.sla.attainment,
        accounts=scoring.console_adapters.list_accounts,
        account=scoring.console_adapters.get_account,
        handoffs=scoring.console_adapters.handoffs,
        handoff_counts=scoring.console_adapters.handoff_counts,
        acknowledge=scoring.console_adapters.acknowledge,
        stage_names=scoring.console_adapters.stage_names,
        funnel=scoring.console_adapters.funnel,
        sales_record=scoring.console_adapters.sales_record,
        record_bant=scoring.console_adapters.record_bant,
        record_outcome=scoring.console_adapters.record_outcome,
        # The console's lead list: its stage filter and each shown lead's stage and score.
        stage_condition=scoring.console_adapters.stage_condition,
        lead_stages=scoring.console_adapters.lead_stages,
        # The console's accounts list, a page at a time, with the count of all.
        accounts_after=scoring.console_adapters.accounts_after,
        account_count=scoring.console_adapters.count_accounts,
    )
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    access_log.install()  # no link token or email in `serve --access-log` lines
    return create_app(resolve_secret_keys(Settings.from_env()), background=True)
