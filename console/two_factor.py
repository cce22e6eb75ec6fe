"""Two-factor login for staff: TOTP (RFC 6238, via pyotp) and one-time recovery codes.

An authenticator is enrolled unconfirmed and counts only once a first code from it was
accepted. A code is accepted in its 30-second step or one step either side
(``valid_window=1``, RFC 6238 §5.2 clock drift) and only in a step later than the last
accepted one, so an observed code cannot be replayed. Ten recovery codes are made at
enrolment, shown once, stored as SHA-256 (each is 80 random bits, so a fast hash is
enough), and each works once.

After a right password, an account with an authenticator gets a pending login (a
random id in a cookie, its hash in the database): it grants nothing but the right to
send a code, for :data:`PENDING_FOR` and at most :data:`MAX_CODE_FAILURES` times.

The TOTP secret is stored as is (see :mod:`console.models`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from console.models import PendingLogin, RecoveryCode, TwoFactor
from console.sessions import token_hash
from zeroparty.errors import Conflict, InvalidInput

ISSUER = "zeroparty console"
RECOVERY_CODES = 10
PENDING_FOR = timedelta(minutes=5)
MAX_CODE_FAILURES = 5


class PendingLoginEnded(InvalidInput):
    code = "login_again"

    def __init__(self) -> None:
        super().__init__("this login has expired; enter your password again")


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What the enrolment page shows: the secret in base32 and as an otpauth:// URI."""

    secret: str
    uri: str


def _normalise(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def _hash_code(code: str) -> str:
    return hashlib.sha256(_normalise(code).encode()).hexdigest()


def new_recovery_code() -> str:
    """``xxxx-xxxx-xxxx-xxxx``: 16 base32 characters, 80 random bits."""
    text = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


def status(session: Session, user_id: int) -> TwoFactor | None:
    return session.get(TwoFactor, user_id)


def is_enrolled(session: Session, user_id: int) -> bool:
    factor = session.get(TwoFactor, user_id)
    return factor is not None and factor.confirmed_at is not None


def _locked(session: Session, user_id: int) -> TwoFactor | None:
    """The row, locked and read afresh: an earlier plain read in this session (e.g.
    :func:`is_enrolled`) must not leave a stale ``last_time_step`` in the identity map."""
    return session.get(TwoFactor, user_id, with_for_update=True, populate_existing=True)


def _spend_step(
    session: Session, factor: TwoFactor, step: int, *, confirm_at: datetime | None = None
) -> bool:
    """Mark ``step`` used, atomically: a conditional UPDATE that matches only while no
    step as late was accepted (and the secret is the one the code was checked against),
    checked by its row count. Two requests with the same code at the same moment, on
    any number of hosts, cannot both get 1 back. With ``confirm_at``, this confirms an
    unconfirmed authenticator; otherwise the authenticator must be confirmed."""
    values: dict[str, object] = {"last_time_step": step}
    if confirm_at is None:
        state = TwoFactor.confirmed_at.isnot(None)
    else:
        state = TwoFactor.confirmed_at.is_(None)
        values["confirmed_at"] = confirm_at
    result = session.execute(
        update(TwoFactor)
        .where(
            TwoFactor.user_id == factor.user_id,
            TwoFactor.secret == factor.secret,
            state,
            or_(TwoFactor.last_time_step.is_(None), TwoFactor.last_time_step < step),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return False
    session.refresh(factor)
    return True


def begin_enrolment(session: Session, user_id: int, email: str, now: datetime) -> Enrolment:
    """A new unconfirmed secret (replacing an unconfirmed one); refused when enrolled."""
    factor = _locked(session, user_id)
    if factor is not None and factor.confirmed_at is not None:
        raise Conflict("two-factor login is on already; turn it off first")
    secret = pyotp.random_base32()
    if factor is None:
        session.add(TwoFactor(user_id=user_id, secret=secret, created_at=now))
    else:
        factor.secret, factor.created_at, factor.last_time_step = secret, now, None
    return enrolment_of(secret, email)


def enrolment_of(secret: str, email: str) -> Enrolment:
    return Enrolment(secret, pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER))


def _accepted_step(factor: TwoFactor, code: str, now: datetime) -> int | None:
    """The time step ``code`` belongs to (±1 step), if later than the last accepted."""
    code = _normalise(code)
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(factor.secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            if factor.last_time_step is not None and step <= factor.last_time_step:
                return None  # used already (or an older code after a newer one)
            return step
    return None


def confirm_enrolment(session: Session, user_id: int, code: str, now: datetime) -> list[str]:
    """Confirm the unconfirmed secret with a code from it; the new recovery codes."""
    factor = _locked(session, user_id)
    if factor is None or factor.confirmed_at is not None:
        raise Conflict("there is no authenticator being set up; start again")
    step = _accepted_step(factor, code, now)
    if step is None:
        raise InvalidInput("code: wrong", fields={"code": "this code is wrong or too old"})
    if not _spend_step(session, factor, step, confirm_at=now):
        raise Conflict("this authenticator was confirmed or replaced meanwhile; start again")
    return replace_recovery_codes(session, user_id)


def replace_recovery_codes(session: Session, user_id: int) -> list[str]:
    """Ten new recovery codes (the old ones stop working); shown once, stored hashed."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
    session.add_all(RecoveryCode(user_id=user_id, code_hash=_hash_code(c)) for c in codes)
    return codes


def remove(session: Session, user_id: int) -> bool:
    """Turn two-factor login off for the account; whether it was on."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    result = session.execute(delete(TwoFactor).where(TwoFactor.user_id == user_id))
    return bool(getattr(result, "rowcount", 0))


def unused_recovery_codes(session: Session, user_id: int) -> int:
    return len(
        session.scalars(
            select(RecoveryCode.id).where(
                RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None)
            )
        ).all()
    )


def check_code(session: Session, user_id: int, code: str, now: datetime) -> str | None:
    """``"totp"`` or ``"recovery code"`` when ``code`` is accepted (and spent), else
    ``None``. Run in a write transaction. Each code is spent by a conditional UPDATE
    checked by its row count, so it works once even when sent twice at the same moment."""
    factor = _locked(session, user_id)
    if factor is None or factor.confirmed_at is None:
        return None
    step = _accepted_step(factor, code, now)
    if step is not None:
        return "totp" if _spend_step(session, factor, step) else None
    if len(_normalise(code)) != 16:
        return None
    spent = session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == _hash_code(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return "recovery code" if getattr(spent, "rowcount", 0) == 1 else None


def start_pending(session: Session, user_id: int, next_path: str, now: datetime) -> str:
    """A pending login after a right password; returns its cookie's random id."""
    raw = secrets.token_urlsafe(32)
    session.execute(delete(PendingLogin).where(PendingLogin.expires_at < now))
    session.add(
        PendingLogin(
            token_hash=token_hash(raw),
            user_id=user_id,
            expires_at=now + PENDING_FOR,
            failures=0,
            next_path=next_path[:512],
        )
    )
    return raw


def pending(session: Session, raw: str | None, now: datetime) -> PendingLogin:
    """The live pending login of a cookie, or :class:`PendingLoginEnded`."""
    row = session.get(PendingLogin, token_hash(raw)) if raw and len(raw) <= 128 else None
    if row is None or now >= row.expires_at or row.failures >= MAX_CODE_FAILURES:
        raise PendingLoginEnded()
    return row


def end_pending(session: Session, row: PendingLogin) -> None:
    session.delete(row)
