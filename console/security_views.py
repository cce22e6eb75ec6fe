"""A staff member's own security: two-factor login and sessions.

``/console/two-factor`` sets up, confirms, renews recovery codes for and turns off an
authenticator; when the role requires two-factor login and none is set up, it is the
only page open to the account (:func:`console.web.require`). ``/console/sessions``
lists one's live sessions and ends one or all; an admin ends every session of any
account there too. Every change is in the staff log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from console import accounts, audit, passwords, two_factor
from console.audit import StaffAction
from console.models import StaffUser
from console.roles import Permission
from console.sessions import COOKIE, COOKIE_PATH
from console.web import (
    Staff,
    checked_post,
    database_of,
    field,
    render,
    require,
    sessions_of,
    settings_of,
    staff_page,
)
from zeroparty.errors import Conflict, Forbidden, InvalidInput, NotFound

T = TypeVar("T")

# ---------------------------------------------------------------- two-factor


def _two_factor_context(request: Request, staff: Staff) -> dict[str, Any]:
    with database_of(request).read() as session:
        factor = two_factor.status(session, staff.id)
        left = two_factor.unused_recovery_codes(session, staff.id)
    enrolment = None
    if factor is not None and factor.confirmed_at is None:
        enrolment = two_factor.enrolment_of(factor.secret, staff.email)
    return {
        "enabled": factor is not None and factor.confirmed_at is not None,
        "enrolment": enrolment,
        "codes_left": left,
        "required": staff.role in settings_of(request).console_require_two_factor,
    }


async def _two_factor_page(
    request: Request,
    staff: Staff,
    extra: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    context = await run_in_threadpool(_two_factor_context, request, staff)
    return render(
        request, "two_factor.html", {**context, **(extra or {})}, staff=staff, status=status
    )


@staff_page
async def two_factor_page(request: Request) -> Response:
    """``GET /console/two-factor``: the state of one's two-factor login."""
    staff = await require(request, Permission.VIEW_LEADS, enrolling=True)
    return await _two_factor_page(request, staff)


def _begin(request: Request, staff: Staff) -> None:
    with database_of(request).write() as session:
        two_factor.begin_enrolment(session, staff.id, staff.email, sessions_of(request).clock())


@staff_page
async def begin_two_factor(request: Request) -> Response:
    """``POST /console/two-factor/setup``: a new secret to scan, not yet in force."""
    staff, _form = await checked_post(request, Permission.VIEW_LEADS, enrolling=True)
    try:
        await run_in_threadpool(_begin, request, staff)
    except Conflict as exc:
        return await _two_factor_page(request, staff, {"error": exc.message}, 409)
    return RedirectResponse("/console/two-factor", status_code=303)


def _confirm(request: Request, staff: Staff, code: str) -> list[str]:
    with database_of(request).write() as session:
        codes = two_factor.confirm_enrolment(session, staff.id, code, sessions_of(request).clock())
        # Whoever else held a session of this account does not keep it (only this one).
        accounts.end_sessions(session, staff.id, keep=staff.live.token_hash)
        audit.record(session, staff.id, StaffAction.TWO_FACTOR_ON)
        return codes


@staff_page
async def confirm_two_factor(request: Request) -> Response:
    """``POST /console/two-factor/confirm``: a first code turns it on; the recovery
    codes are shown once, in this answer."""
    staff, form = await checked_post(request, Permission.VIEW_LEADS, enrolling=True)
    try:
        codes = await run_in_threadpool(_confirm, request, staff, field(form, "code"))
    except InvalidInput as exc:
        error = next(iter(exc.fields.values()), exc.message)
        return await _two_factor_page(request, staff, {"error": error}, 422)
    except Conflict as exc:
        return await _two_factor_page(request, staff, {"error": exc.message}, 409)
    return await _two_factor_page(request, staff, {"new_codes": codes})


def _check_password(request: Request, staff: Staff, password: str) -> None:
    with database_of(request).read() as session:
        user = session.get(StaffUser, staff.id)
        stored = user.password_hash if user else None
    if not passwords.verify_password(password, stored):
        raise InvalidInput("password: wrong", fields={"password": "this is not your password"})


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _with_both_factors(
    request: Request,
    staff: Staff,
    form: FormData,
    action: Callable[[Session, str], T],
) -> T:
    """Run ``action(session, how)`` once the password and a current code (TOTP or an
    unused recovery code, which is spent) are right: a stolen session alone cannot
    weaken the account. Wrong codes count against the login limits
    (:func:`console.accounts.check_second_factor_limit`); a missing or wrong password
    changes nothing."""
    code = _text(form, "code").strip()
    if not code or len(code) > 64:
        raise InvalidInput("code: missing", fields={"code": "enter a code from your authenticator"})
    _check_password(request, staff, _text(form, "password"))
    secret = settings_of(request).secret_keys[0]
    client = request.client.host if request.client else "unknown"
    now = sessions_of(request).clock()
    with database_of(request).write() as session:
        if not two_factor.is_enrolled(session, staff.id):
            raise Conflict("two-factor login is off; set it up first")
        accounts.check_second_factor_limit(session, secret, staff.id, client)
        how = two_factor.check_code(session, staff.id, code, now)
        accounts.record_second_factor(session, secret, staff.id, client, ok=how is not None)
        if how is not None:
            return action(session, how)
    # The failed attempt is committed above; nothing else changed.
    raise InvalidInput("code: wrong", fields={"code": "this code is wrong or was used already"})


async def _guarded(
    request: Request, action: Callable[[Request, Staff, FormData], list[str] | None]
) -> Response:
    staff, form = await checked_post(request, Permission.VIEW_LEADS, enrolling=True)
    try:
        codes = await run_in_threadpool(action, request, staff, form)
    except InvalidInput as exc:
        error = next(iter(exc.fields.values()), exc.message)
        return await _two_factor_page(request, staff, {"error": error}, 422)
    except Conflict as exc:
        return await _two_factor_page(request, staff, {"error": exc.message}, 409)
    except accounts.TooManyAttempts as exc:
        return await _two_factor_page(request, staff, {"error": exc.message}, exc.status_code)
    if codes is None:
        return RedirectResponse("/console/two-factor", status_code=303)
    return await _two_factor_page(request, staff, {"new_codes": codes})


def _new_codes(request: Request, staff: Staff, form: FormData) -> list[str] | None:
    def replace(session: Session, how: str) -> list[str]:
        codes = two_factor.replace_recovery_codes(session, staff.id)
        audit.record(
            session, staff.id, StaffAction.RECOVERY_CODES_NEW, detail=f"password and {how}"
        )
        return codes

    return _with_both_factors(request, staff, form, replace)


@staff_page
async def new_recovery_codes(request: Request) -> Response:
    """``POST /console/two-factor/recovery-codes``: ten new codes (password and a
    current code needed); the old ones stop working."""
    return await _guarded(request, _new_codes)


def _turn_off(request: Request, staff: Staff, form: FormData) -> list[str] | None:
    def remove(session: Session, how: str) -> None:
        two_factor.remove(session, staff.id)
        # As when it was turned on: no other session of the account outlives the change.
        accounts.end_sessions(session, staff.id, keep=staff.live.token_hash)
        audit.record(session, staff.id, StaffAction.TWO_FACTOR_OFF, detail=f"password and {how}")

    _with_both_factors(request, staff, form, remove)
    return None


@staff_page
async def turn_off_two_factor(request: Request) -> Response:
    """``POST /console/two-factor/disable``: removes the authenticator and the codes
    (password and a current code needed) and ends the account's other sessions. Where
    the role requires two-factor login, this replaces the authenticator: the account can
    then open only the enrolment page until it has set up another
    (:func:`console.web.require`)."""
    return await _guarded(request, _turn_off)


# ---------------------------------------------------------------- sessions


def _sessions_context(request: Request, staff: Staff) -> dict[str, Any]:
    service = sessions_of(request)
    with database_of(request).read() as session:
        mine = service.listed(session, staff.id, staff.live.token_hash)
        staff_list: list[tuple[int, str, str, int]] = []
        if staff.may(Permission.MANAGE_STAFF):
            counts = service.live_counts(session)
            staff_list = [
                (user.id, user.email, user.role, counts.get(user.id, 0))
                for user in session.query(StaffUser).order_by(StaffUser.email)
            ]
    return {"sessions": mine, "staff_list": staff_list}


@staff_page
async def sessions_page(request: Request) -> Response:
    """``GET /console/sessions``: one's live sessions; for an admin, every account."""
    staff = await require(request, Permission.VIEW_LEADS)
    context = await run_in_threadpool(_sessions_context, request, staff)
    return render(request, "sessions.html", context, staff=staff)


def _end_one(request: Request, staff: Staff, handle: str) -> None:
    with database_of(request).write() as session:
        if not sessions_of(request).end(session, staff.id, handle):
            raise NotFound("no such session of yours (it may have ended already)")
        audit.record(session, staff.id, StaffAction.SESSION_END, detail=handle)


def _logged_out() -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


@staff_page
async def end_session(request: Request) -> Response:
    """``POST /console/sessions/end``: ends one of one's own sessions."""
    staff, form = await checked_post(request, Permission.VIEW_LEADS)
    handle = field(form, "session")
    await run_in_threadpool(_end_one, request, staff, handle)
    if staff.live.token_hash.startswith(handle):
        return _logged_out()
    return RedirectResponse("/console/sessions", status_code=303)


def _end_all(request: Request, staff: Staff, user_id: int) -> None:
    with database_of(request).write() as session:
        if session.get(StaffUser, user_id) is None:
            raise NotFound("no such staff account")
        ended = accounts.end_sessions(session, user_id)
        audit.record(
            session,
            staff.id,
            StaffAction.SESSIONS_END_ALL,
            detail=f"account {user_id}: {ended} ended",
        )


@staff_page
async def end_all_sessions(request: Request) -> Response:
    """``POST /console/sessions/end-all``: ends every session of one's account (log
    out everywhere); an admin may name another account (``user``)."""
    staff, form = await checked_post(request, Permission.VIEW_LEADS)
    raw_user = field(form, "user")
    user_id = staff.id
    if raw_user and raw_user != str(staff.id):
        if not raw_user.isdigit() or len(raw_user) > 12:
            raise InvalidInput("user: a staff account number", fields={"user": "not a number"})
        if not staff.may(Permission.MANAGE_STAFF):
            raise Forbidden("your role does not allow this")
        user_id = int(raw_user)
    await run_in_threadpool(_end_all, request, staff, user_id)
    if user_id == staff.id:
        return _logged_out()
    return RedirectResponse("/console/sessions", status_code=303)


routes = [
    Route("/console/two-factor", two_factor_page, methods=["GET"]),
    Route("/console/two-factor/setup", begin_two_factor, methods=["POST"]),
    Route("/console/two-factor/confirm", confirm_two_factor, methods=["POST"]),
    Route("/console/two-factor/recovery-codes", new_recovery_codes, methods=["POST"]),
    Route("/console/two-factor/disable", turn_off_two_factor, methods=["POST"]),
    Route("/console/sessions", sessions_page, methods=["GET"]),
    Route("/console/sessions/end", end_session, methods=["POST"]),
    Route("/console/sessions/end-all", end_all_sessions, methods=["POST"]),
]
