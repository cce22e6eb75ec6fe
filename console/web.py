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

from console import accounts
from console.accounts import StaffIdentity
from console.providers import ConsoleProviders
from console.roles import Permission, may
from console.sessions import COOKIE, ConsoleTokens, NotLoggedIn, SessionClaim, check_csrf
from zeroparty.crosssite import require_same_origin
from zeroparty.db import Database
from zeroparty.errors import Forbidden, PayloadTooLarge
from zeroparty.settings import Settings

PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
MAX_FORM_FIELDS = 50


class Staff:
    """The logged-in staff member of one request, with the session's CSRF nonce."""

    def __init__(self, identity: StaffIdentity, claim: SessionClaim) -> None:
        self.identity = identity
        self.claim = claim

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


def providers_of(request: Request) -> ConsoleProviders:
    providers: ConsoleProviders | None = getattr(request.app.state, "console_providers", None)
    return providers or ConsoleProviders()


def _staff(request: Request) -> Staff:
    claim = tokens_of(request).read_session(request.cookies.get(COOKIE))
    with database_of(request).read() as session:
        identity = accounts.identity(session, claim.user_id, claim.generation)
    if identity is None:
        raise NotLoggedIn("your session has ended; please log in again")
    return Staff(identity, claim)


async def require(request: Request, permission: Permission) -> Staff:
    """The logged-in staff member, refused (403) without ``permission``."""
    staff = await run_in_threadpool(_staff, request)
    if not staff.may(permission):
        raise Forbidden("your role does not allow this")
    return staff


async def read_form(request: Request) -> FormData:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > 64 * 1024:
        raise PayloadTooLarge("the form is larger than 64 KB")
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)


async def checked_post(request: Request, permission: Permission) -> tuple[Staff, FormData]:
    """A POST from the console's own pages: same origin, the session's nonce, the role."""
    require_same_origin(request, settings_of(request).base_url)
    staff = await require(request, permission)
    form = await read_form(request)
    csrf = form.get("csrf")
    check_csrf(staff.claim, csrf if isinstance(csrf, str) else "")
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
        {**context, "staff": staff, "csrf": staff.claim.nonce if staff else ""},
        status_code=status,
        headers={**PAGE_HEADERS, **(headers or {})},
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def staff_page(endpoint: Endpoint) -> Endpoint:
    """Without a valid session, people are sent to the login page (and back after)."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
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
