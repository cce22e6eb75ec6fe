"""The console's HTTP surface: logging in and out, setting and changing passwords.

Login answers the same for an unknown address and a wrong password (and is rate
limited, :mod:`console.accounts`); its form carries a token bound to a login cookie, so
a foreign page cannot log a browser into someone else's account. Set-password links are
used once (the account's session generation moves on).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import accounts, audit
from console.audit import StaffAction
from console.models import StaffUser
from console.roles import Permission
from console.sessions import COOKIE, COOKIE_PATH, LOGIN_COOKIE
from console.web import (
    Staff,
    checked_post,
    database_of,
    field,
    read_form,
    render,
    require,
    settings_of,
    staff_page,
    tokens_of,
)
from zeroparty.crosssite import require_same_origin
from zeroparty.errors import InvalidInput

# Set-password pages carry a secret in their URL: never send it on as a referrer.
_NO_REFERRER = {"Referrer-Policy": "no-referrer"}


def _safe_next(raw: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if raw and raw.startswith("/console/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/console/"


def _login_form(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    nonce, token = tokens_of(request).issue_login_form()
    response = render(
        request,
        "login.html",
        {**context, "login_token": token, "next": _safe_next(request.query_params.get("next"))},
        status=status,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path=COOKIE_PATH,
        secure=tokens_of(request).secure,
        httponly=True,
        samesite="strict",
    )
    return response


async def login_page(request: Request) -> Response:
    """``GET /console/login``."""
    return _login_form(request, {})


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _authenticate(request: Request, email: str, password: str) -> accounts.StaffIdentity | None:
    secret = settings_of(request).secret_keys[0]
    with database_of(request).write() as session:
        identity = accounts.authenticate(session, secret, email, password, _client(request))
        if identity is not None:
            audit.record(session, identity.id, StaffAction.LOGIN)
        return identity


async def login(request: Request) -> Response:
    """``POST /console/login``: the same answer for an unknown address and a wrong
    password; rate limited per address and per client."""
    require_same_origin(request, settings_of(request).base_url)
    form = await read_form(request)
    tokens_of(request).check_login_form(request.cookies.get(LOGIN_COOKIE), field(form, "login"))
    email, password = field(form, "email"), form.get("password")
    if not email or not isinstance(password, str) or not password:
        return _login_form(
            request, {"error": "Enter your email address and your password.", "email": email}, 422
        )
    try:
        identity = await run_in_threadpool(_authenticate, request, email, password)
    except accounts.TooManyAttempts as exc:
        return _login_form(request, {"error": exc.message, "email": email}, exc.status_code)
    if identity is None:
        refused = accounts.LoginRefused()
        return _login_form(request, {"error": refused.message, "email": email}, 401)
    token, _claim = tokens_of(request).issue_session(identity.id, identity.generation)
    response = RedirectResponse(_safe_next(field(form, "next")), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=tokens_of(request).session_seconds,
        path=COOKIE_PATH,
        secure=tokens_of(request).secure,
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


def _logout(request: Request, staff: Staff) -> None:
    with database_of(request).write() as session:
        accounts.end_sessions(session, staff.id)
        audit.record(session, staff.id, StaffAction.LOGOUT)


@staff_page
async def logout(request: Request) -> Response:
    """``POST /console/logout``: ends every session of the account, on every host."""
    staff, _form = await checked_post(request, Permission.VIEW_LEADS)
    await run_in_threadpool(_logout, request, staff)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _read_set_password(request: Request) -> tuple[int, int, str]:
    user_id, generation = tokens_of(request).read_set_password(request.path_params["token"])
    with database_of(request).read() as session:
        user = session.get(StaffUser, user_id)
        if user is None or user.session_generation != generation:
            raise accounts.LinkUsed()
        return user_id, generation, user.email


async def set_password_page(request: Request) -> Response:
    """``GET /console/set-password/{token}``: the form; changes nothing."""
    _uid, _gen, email = await run_in_threadpool(_read_set_password, request)
    return render(request, "set_password.html", {"email": email}, headers=_NO_REFERRER)


def _set_password(request: Request, user_id: int, generation: int, password: str) -> None:
    with database_of(request).write() as session:
        accounts.set_password(session, user_id, generation, password)
        audit.record(session, user_id, StaffAction.PASSWORD_SET)


async def set_password(request: Request) -> Response:
    """``POST /console/set-password/{token}``: sets the password; the link is then used."""
    require_same_origin(request, settings_of(request).base_url)
    user_id, generation, email = await run_in_threadpool(_read_set_password, request)
    form = await read_form(request)
    password, repeat = form.get("password"), form.get("password_repeat")
    if not isinstance(password, str) or password != repeat:
        return render(
            request,
            "set_password.html",
            {"email": email, "error": "The two passwords differ."},
            status=422,
            headers=_NO_REFERRER,
        )
    try:
        await run_in_threadpool(_set_password, request, user_id, generation, password)
    except InvalidInput as exc:
        return render(
            request,
            "set_password.html",
            {"email": email, "error": exc.fields.get("password", exc.message)},
            status=422,
            headers=_NO_REFERRER,
        )
    return RedirectResponse("/console/login?done=password", status_code=303)


@staff_page
async def password_page(request: Request) -> Response:
    """``GET /console/password``: change one's own password."""
    staff = await require(request, Permission.VIEW_LEADS)
    return render(request, "password.html", {}, staff=staff)


def _change_password(request: Request, staff: Staff, current: str, new: str) -> None:
    with database_of(request).write() as session:
        accounts.change_password(session, staff.id, current, new)
        audit.record(session, staff.id, StaffAction.PASSWORD_SET)


@staff_page
async def change_password(request: Request) -> Response:
    """``POST /console/password``: ends every session, this one included."""
    staff, form = await checked_post(request, Permission.VIEW_LEADS)
    current, new = form.get("current_password"), form.get("password")
    if (
        not isinstance(current, str)
        or not isinstance(new, str)
        or new != form.get("password_repeat")
    ):
        return render(
            request,
            "password.html",
            {"error": "The two new passwords differ."},
            staff=staff,
            status=422,
        )
    try:
        await run_in_threadpool(_change_password, request, staff, current, new)
    except InvalidInput as exc:
        message = next(iter(exc.fields.values()), exc.message)
        return render(request, "password.html", {"error": message}, staff=staff, status=422)
    response = RedirectResponse("/console/login?done=password", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


routes = [
    Route("/console/login", login_page, methods=["GET"]),
    Route("/console/login", login, methods=["POST"]),
    Route("/console/logout", logout, methods=["POST"]),
    Route("/console/set-password/{token}", set_password_page, methods=["GET"]),
    Route("/console/set-password/{token}", set_password, methods=["POST"]),
    Route("/console/password", password_page, methods=["GET"]),
    Route("/console/password", change_password, methods=["POST"]),
]
