"""The console's HTTP surface: logging in and out, setting and changing passwords.

Login answers the same for an unknown address and a wrong password (and is rate
limited, :mod:`console.accounts`); its form carries a token bound to a login cookie, so
a foreign page cannot log a browser into someone else's account. An account with an
authenticator is asked for a code next (:mod:`console.two_factor`), on a pending login
that grants nothing else. Every login draws a new session id. The staff log records
logins, refused logins (by account id; an unknown address without one), logouts.
Set-password links are used once (the account's session generation moves on).
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import accounts, audit, two_factor
from console.audit import StaffAction
from console.models import StaffUser
from console.roles import Permission
from console.sessions import (
    COOKIE,
    COOKIE_PATH,
    LOGIN_COOKIE,
    PENDING_COOKIE,
    CsrfRefused,
    csrf_for,
)
from console.web import (
    Staff,
    checked_post,
    database_of,
    field,
    read_form,
    render,
    require,
    sessions_of,
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


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=COOKIE_PATH,
        secure=tokens_of(request).secure,
        httponly=True,
        samesite="strict",
    )


def _session_started(request: Request, raw: str, next_path: str) -> Response:
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    _set_cookie(request, response, COOKIE, raw, sessions_of(request).cookie_seconds)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH)
    return response


def _authenticate(
    request: Request, email: str, password: str, next_path: str
) -> tuple[str, str] | None:
    """``("session", id)`` (logged in) or ``("pending", id)`` (a code is needed next)
    or ``None`` (refused, and recorded in the staff log)."""
    secret = settings_of(request).secret_keys[0]
    service = sessions_of(request)
    with database_of(request).write() as session:
        identity = accounts.authenticate(session, secret, email, password, _client(request))
        if identity is None:
            user = accounts.find_user(session, email)
            audit.record(
                session,
                user.id if user else None,
                StaffAction.LOGIN_REFUSED,
                detail="wrong password" if user else "unknown account",
            )
            return None
        if identity.two_factor:
            raw = two_factor.start_pending(session, identity.id, next_path, service.clock())
            return "pending", raw
        raw = service.start(
            session, identity.id, request.headers.get("user-agent", ""), _client(request)
        )
        audit.record(session, identity.id, StaffAction.LOGIN, detail="password")
        return "session", raw


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
    next_path = _safe_next(field(form, "next"))
    try:
        outcome = await run_in_threadpool(_authenticate, request, email, password, next_path)
    except accounts.TooManyAttempts as exc:
        return _login_form(request, {"error": exc.message, "email": email}, exc.status_code)
    if outcome is None:
        refused = accounts.LoginRefused()
        return _login_form(request, {"error": refused.message, "email": email}, 401)
    kind, raw = outcome
    if kind == "session":
        return _session_started(request, raw, next_path)
    response = RedirectResponse("/console/login/code", status_code=303)
    _set_cookie(request, response, PENDING_COOKIE, raw, int(two_factor.PENDING_FOR.total_seconds()))
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def _pending_ok(request: Request) -> None:
    with database_of(request).read() as session:
        two_factor.pending(
            session, request.cookies.get(PENDING_COOKIE), sessions_of(request).clock()
        )


def _code_form(request: Request, context: dict[str, Any], status: int = 200) -> Response:
    raw = request.cookies.get(PENDING_COOKIE, "")
    return render(
        request, "login_code.html", {**context, "pending_csrf": csrf_for(raw)}, status=status
    )


async def code_page(request: Request) -> Response:
    """``GET /console/login/code``: the second step of a login; changes nothing."""
    try:
        await run_in_threadpool(_pending_ok, request)
    except two_factor.PendingLoginEnded:
        return RedirectResponse("/console/login", status_code=303)
    return _code_form(request, {})


def _second_factor(request: Request, entered: str) -> tuple[str, str] | None:
    """The new session's id and where to go when ``entered`` is accepted, else
    ``None`` (recorded in the staff log and counted against the limits)."""
    secret = settings_of(request).secret_keys[0]
    service = sessions_of(request)
    client = _client(request)
    now = service.clock()
    with database_of(request).write() as session:
        pending = two_factor.pending(session, request.cookies.get(PENDING_COOKIE), now)
        accounts.check_second_factor_limit(session, secret, pending.user_id, client)
        identity = accounts.identity(session, pending.user_id)
        how = two_factor.check_code(session, pending.user_id, entered, now) if identity else None
        accounts.record_second_factor(session, secret, pending.user_id, client, ok=how is not None)
        if identity is None or how is None:
            pending.failures += 1
            audit.record(session, pending.user_id, StaffAction.LOGIN_REFUSED, detail="wrong code")
            return None
        two_factor.end_pending(session, pending)
        raw = service.start(session, identity.id, request.headers.get("user-agent", ""), client)
        audit.record(session, identity.id, StaffAction.LOGIN, detail=f"password and {how}")
        return raw, pending.next_path


async def submit_code(request: Request) -> Response:
    """``POST /console/login/code``: a TOTP code or an unused recovery code."""
    require_same_origin(request, settings_of(request).base_url)
    form = await read_form(request)
    raw = request.cookies.get(PENDING_COOKIE, "")
    sent = field(form, "csrf")
    if not raw or not sent or not hmac.compare_digest(sent, csrf_for(raw)):
        raise CsrfRefused()
    entered = field(form, "code")
    if not entered or len(entered) > 64:
        return _code_form(request, {"error": "Enter the code from your authenticator."}, 422)
    try:
        outcome = await run_in_threadpool(_second_factor, request, entered)
    except two_factor.PendingLoginEnded as exc:
        response = _login_form(request, {"error": exc.message}, 401)
        response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH)
        return response
    except accounts.TooManyAttempts as exc:
        return _code_form(request, {"error": exc.message}, exc.status_code)
    if outcome is None:
        return _code_form(
            request, {"error": "This code is wrong or was used already. Try the next one."}, 401
        )
    session_id, next_path = outcome
    return _session_started(request, session_id, next_path)


def _logout(request: Request, staff: Staff) -> None:
    with database_of(request).write() as session:
        sessions_of(request).end_current(session, staff.live)
        audit.record(session, staff.id, StaffAction.LOGOUT)


@staff_page
async def logout(request: Request) -> Response:
    """``POST /console/logout``: ends this session, on every host (the Sessions page
    ends the others)."""
    staff, _form = await checked_post(request, Permission.VIEW_LEADS, enrolling=True)
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
    Route("/console/login/code", code_page, methods=["GET"]),
    Route("/console/login/code", submit_code, methods=["POST"]),
    Route("/console/logout", logout, methods=["POST"]),
    Route("/console/set-password/{token}", set_password_page, methods=["GET"]),
    Route("/console/set-password/{token}", set_password, methods=["POST"]),
    Route("/console/password", password_page, methods=["GET"]),
    Route("/console/password", change_password, methods=["POST"]),
]
