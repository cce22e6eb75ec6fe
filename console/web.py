"""What every console view shares: who is logged in, permission checks, POST checks,
rendering. Views stay thin: parse, call a service, render."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from consent_ledger.api import ConsentLedger
from console import accounts
from console.accounts import StaffIdentity
from console.providers import ConsoleProviders
from console.roles import Permission, may
from console.sessions import (
    COOKIE,
    ConsoleTokens,
    LiveSession,
    NotLoggedIn,
    SessionService,
    check_csrf,
)
from zeroparty.crosssite import require_same_origin
from zeroparty.db import Database
from zeroparty.errors import Forbidden, PayloadTooLarge
from zeroparty.settings import Settings

PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
MAX_FORM_FIELDS = 50


class TwoFactorRequired(Exception):
    """The account's role needs two-factor login and it has none yet: the only page
    open to it is the enrolment page."""


class Staff:
    """The logged-in staff member of one request, with the session (and its CSRF
    token)."""

    def __init__(self, identity: StaffIdentity, live: LiveSession) -> None:
        self.identity = identity
        self.live = live

    @property
    def csrf(self) -> str:
        return self.live.csrf

    @property
    def id(self) -> int:
        return self.identity.id

    @property
    def email(self) -> str:
        return self.identity.email

    @property
    def role(self) -> str:
        return self.identity.role

    def may(self, permission: Permission | str) -> bool:
        return may(self.identity.role, Permission(permission))


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def database_of(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def tokens_of(request: Request) -> ConsoleTokens:
    tokens: ConsoleTokens | None = getattr(request.app.state, "console_tokens", None)
    if tokens is None:
        tokens = ConsoleTokens(settings_of(request))
        request.app.state.console_tokens = tokens
    return tokens


def sessions_of(request: Request) -> SessionService:
    """The app's session service (a test may put one with its own clock in
    ``app.state.console_sessions``)."""
    service: SessionService | None = getattr(request.app.state, "console_sessions", None)
    if service is None:
        service = SessionService(settings_of(request))
        request.app.state.console_sessions = service
    return service


def two_factor_required(request: Request, identity: StaffIdentity) -> bool:
    return identity.role in settings_of(request).console_require_two_factor and not (
        identity.two_factor
    )


def ledger_of(request: Request) -> ConsentLedger:
    """The app's ledger, wired with every package's listeners and personal data."""
    ledger: ConsentLedger = request.app.state.ledger
    return ledger


def providers_of(request: Request) -> ConsoleProviders:
    providers: ConsoleProviders | None = getattr(request.app.state, "console_providers", None)
    return providers or ConsoleProviders()


def _staff(request: Request) -> Staff:
    service = sessions_of(request)
    with database_of(request).read() as session:
        live = service.resolve(session, request.cookies.get(COOKIE))
        identity = accounts.identity(session, live.user_id)
    if identity is None:
        raise NotLoggedIn("your session has ended; please log in again")
    if live.needs_touch:  # at most once a minute (TOUCH_EVERY), not on every page
        with database_of(request).write() as session:
            service.touch(session, live)
    return Staff(identity, live)


async def require(request: Request, permission: Permission, *, enrolling: bool = False) -> Staff:
    """The logged-in staff member, refused (403) without ``permission``. An account
    that must set up two-factor login first is sent to the enrolment page, unless
    ``enrolling`` (that page itself, and logging out)."""
    staff = await run_in_threadpool(_staff, request)
    if not enrolling and two_factor_required(request, staff.identity):
        raise TwoFactorRequired()
    if not staff.may(permission):
        raise Forbidden("your role does not allow this")
    return staff


async def read_form(request: Request) -> FormData:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > 64 * 1024:
        raise PayloadTooLarge("the form is larger than 64 KB")
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


async def checked_post(
    request: Request, permission: Permission, *, enrolling: bool = False
) -> tuple[Staff, FormData]:
    """A POST from the console's own pages: same origin, the session's token, the role."""
    require_same_origin(request, settings_of(request).base_url)
    staff = await require(request, permission, enrolling=enrolling)
    form = await read_form(request)
    csrf = form.get("csrf")
    check_csrf(staff.csrf, csrf if isinstance(csrf, str) else "")
    return staff, form


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    staff: Staff | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        f"console/{template}",
        {**context, "staff": staff, "csrf": staff.csrf if staff else ""},
        status_code=status,
        headers={**PAGE_HEADERS, **(headers or {})},
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def staff_page(endpoint: Endpoint) -> Endpoint:
    """Without a valid session, people are sent to the login page (and back after);
    an account that must set up two-factor login first, to the enrolment page."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except TwoFactorRequired:
            return RedirectResponse("/console/two-factor", status_code=303)
        except NotLoggedIn:
            target = request.url.path if request.method == "GET" else "/console/"
            if request.url.query and request.method == "GET":
                target += "?" + request.url.query
            response = RedirectResponse(
                f"/console/login?next={quote(target, safe='/')}", status_code=303
            )
            response.delete_cookie(COOKIE, path="/console")
            return response

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    return guarded
