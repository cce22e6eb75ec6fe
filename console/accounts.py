"""Staff accounts: creation, passwords, login with rate limits, session checks.

Login answers the same whether or not the account exists, and spends the same time
(a dummy hash is checked for an unknown address). Failed attempts are counted in the
database, so the limits hold across worker processes and hosts: per account address
and per client address, over a sliding window. Counted by keyed hashes; neither
address is stored.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from console import audit, passwords, two_factor
from console.audit import StaffAction
from console.models import LoginAttempt, PendingLogin, StaffUser
from console.roles import Role
from console.sessions import end_all_sessions
from zeroparty.db import utcnow
from zeroparty.errors import Conflict, InvalidInput, NotFound, Unauthorized, ZeropartyError

LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_CLIENT = 20


class LoginRefused(Unauthorized):
    code = "login_refused"

    def __init__(self) -> None:
        super().__init__("the email address or the password is wrong")


class TooManyAttempts(ZeropartyError):
    status_code = 429
    code = "too_many_attempts"

    def __init__(self) -> None:
        super().__init__(
            "too many failed logins for this address or from this network; "
            f"try again in {int(LOGIN_WINDOW.total_seconds() // 60)} minutes"
        )


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """Who is logged in, as the views need it."""

    id: int
    email: str
    role: str
    two_factor: bool


def normalise_staff_email(raw: str) -> str:
    try:
        # ASCII before the @, as for leads (set-password links go out by mail in 7-bit ASCII).
        address = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
        return address.normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInput(f"email: {exc}", fields={"email": str(exc)}) from exc


def create_user(session: Session, email: str, role: str) -> StaffUser:
    """A new account without a password (it gets a one-time set-password link)."""
    try:
        checked_role = Role(role)
    except ValueError as exc:
        raise InvalidInput(
            "role: one of admin, compliance, marketer", fields={"role": "unknown role"}
        ) from exc
    address = normalise_staff_email(email)
    if session.scalar(select(StaffUser.id).where(StaffUser.email == address)) is not None:
        raise Conflict(f"a staff account for {address} exists already")
    user = StaffUser(email=address, role=checked_role.value, session_generation=0)
    session.add(user)
    session.flush()
    return user


def _key(secret: str, kind: str, value: str) -> str:
    return hmac.new(secret.encode(), f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()


def _failures(session: Session, column: InstrumentedAttribute[str], key: str) -> int:
    since = utcnow() - LOGIN_WINDOW
    stmt = select(func.count()).where(
        column == key,
        LoginAttempt.attempted_at > since,
        LoginAttempt.succeeded.is_(False),
    )
    return int(session.scalar(stmt) or 0)


def failed_second_factors(session: Session, secret: str, user_id: int) -> int:
    return _failures(session, LoginAttempt.account_key, _key(secret, "code", str(user_id)))


def record_second_factor(
    session: Session, secret: str, user_id: int, client: str, *, ok: bool
) -> None:
    """Codes are rate limited like passwords: per account and per client, in the same
    window (:func:`check_second_factor_limit`)."""
    session.add(
        LoginAttempt(
            account_key=_key(secret, "code", str(user_id)),
            client_key=_key(secret, "client", client),
            attempted_at=utcnow(),
            succeeded=ok,
        )
    )


def check_second_factor_limit(session: Session, secret: str, user_id: int, client: str) -> None:
    if (
        failed_second_factors(session, secret, user_id) >= MAX_FAILURES_PER_ACCOUNT
        or _failures(session, LoginAttempt.client_key, _key(secret, "client", client))
        >= MAX_FAILURES_PER_CLIENT
    ):
        raise TooManyAttempts()


def authenticate(
    session: Session, secret: str, email: str, password: str, client: str
) -> StaffIdentity | None:
    """The account for ``email`` and ``password``, or ``None``.

    Run in a write transaction and commit it even on ``None``: the attempt is recorded
    in it (the caller then raises :class:`LoginRefused`). Over the limits,
    :class:`TooManyAttempts` is raised before any password is checked.
    """
    account_key = _key(secret, "account", email.strip().lower())
    client_key = _key(secret, "client", client)
    if (
        _failures(session, LoginAttempt.account_key, account_key) >= MAX_FAILURES_PER_ACCOUNT
        or _failures(session, LoginAttempt.client_key, client_key) >= MAX_FAILURES_PER_CLIENT
    ):
        raise TooManyAttempts()
    user = session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
    ok = passwords.verify_password(password, user.password_hash if user else None)
    session.add(
        LoginAttempt(
            account_key=account_key, client_key=client_key, attempted_at=utcnow(), succeeded=ok
        )
    )
    if not ok or user is None:
        return None
    return StaffIdentity(user.id, user.email, user.role, two_factor.is_enrolled(session, user.id))


def forget_old_attempts(session: Session) -> int:
    result = session.execute(
        delete(LoginAttempt).where(LoginAttempt.attempted_at < utcnow() - 2 * LOGIN_WINDOW)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def identity(session: Session, user_id: int) -> StaffIdentity | None:
    """The account a session names, if it still exists and may log in."""
    user = session.get(StaffUser, user_id)
    if user is None or user.password_hash is None:
        return None
    return StaffIdentity(user.id, user.email, user.role, two_factor.is_enrolled(session, user.id))


def end_sessions(session: Session, user_id: int, *, keep: str | None = None) -> int:
    """End every session of the account (but ``keep``) and its pending logins."""
    session.execute(delete(PendingLogin).where(PendingLogin.user_id == user_id))
    return end_all_sessions(session, user_id, keep=keep)


def set_password(session: Session, user_id: int, generation: int, password: str) -> StaffUser:
    """Set the password from a set-password link of ``generation`` (used once: the
    generation moves on, which also ends every existing session)."""
    passwords.check_strength(password)
    user = session.get(StaffUser, user_id, with_for_update=True)
    if user is None or user.session_generation != generation:
        raise LinkUsed()
    user.password_hash = passwords.hash_password(password)
    user.password_set_at = utcnow()
    user.session_generation += 1
    end_sessions(session, user.id)
    return user


def change_password(session: Session, user_id: int, current: str, new: str) -> StaffUser:
    user = session.get(StaffUser, user_id, with_for_update=True)
    if user is None:
        raise NotFound("no such staff account")
    if not passwords.verify_password(current, user.password_hash):
        raise InvalidInput(
            "current password: wrong", fields={"current_password": "this is not your password"}
        )
    return set_password(session, user.id, user.session_generation, new)


class LinkUsed(ZeropartyError):
    status_code = 410
    code = "link_used"

    def __init__(self) -> None:
        super().__init__("this link was used already or replaced by a newer one; ask an admin")


def reset_user(
    session: Session, email: str, *, remove_two_factor: bool = False, by: str
) -> StaffUser:
    """Lock the account until a new password is set: the password is forgotten, every
    session, pending login and earlier set-password link ends (a lost password; a
    person who left). With ``remove_two_factor``, the authenticator and recovery codes
    go too (a lost authenticator): the person enrols a new one after logging in. The
    staff log records the ended sessions and a removed authenticator under the account,
    with ``by`` (who did it, e.g. ``"cli"``) as the detail."""
    user = find_user(session, normalise_staff_email(email))
    if user is None:
        raise NotFound("no staff account with this address")
    user.password_hash = None
    user.password_set_at = None
    user.session_generation += 1
    end_sessions(session, user.id)
    audit.record(session, user.id, StaffAction.SESSIONS_END_ALL, detail=by)
    if remove_two_factor and two_factor.remove(session, user.id):
        audit.record(session, user.id, StaffAction.TWO_FACTOR_OFF, detail=by)
    return user


def find_user(session: Session, email: str) -> StaffUser | None:
    return session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
