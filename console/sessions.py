"""Staff sessions, kept in the database (several hosts share only the database), and the
signed tokens that protect the login form and set passwords.

A session cookie carries a random id (``secrets.token_urlsafe(32)``, 256 bits) and
nothing else: it is not signed, so ``ZEROPARTY_SECRET_KEYS`` alone never opens the
console. The database keeps only the id's SHA-256. A session is live while it is not
revoked, before its absolute end (``CONSOLE_SESSION_MINUTES`` after login) and within
the idle timeout (``CONSOLE_IDLE_MINUTES`` since it was last seen); ``last_seen_at`` is
written at most once a minute, so reading pages is not a write each. A new id is drawn at
every login (a pre-login id is never reused). The session's CSRF token is derived from
its id (HMAC), so a foreign page can neither read nor guess it.
The cookie is HttpOnly, SameSite=Strict, Secure when ``BASE_URL`` is https, scoped to
``/console``.

The clock is injected (:class:`SessionService`), so tests move time instead of sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from console.models import StaffSession
from zeroparty.db import utcnow
from zeroparty.errors import Forbidden, Unauthorized
from zeroparty.settings import Settings
from zeroparty.tokens import TokenError, TokenService

COOKIE = "zp_console"
LOGIN_COOKIE = "zp_console_login"
PENDING_COOKIE = "zp_console_pending"
COOKIE_PATH = "/console"
SET_PASSWORD_MAX_AGE = 72 * 3600
LOGIN_FORM_MAX_AGE = 3600
TOUCH_EVERY = timedelta(minutes=1)

Clock = Callable[[], datetime]


class NotLoggedIn(Unauthorized):
    code = "login_required"


class CsrfRefused(Forbidden):
    code = "csrf_refused"

    def __init__(self) -> None:
        super().__init__("this form has expired or was not sent from the console; reload it")


def token_hash(raw: str) -> str:
    """What the database stores for a cookie's random id."""
    return hashlib.sha256(raw.encode()).hexdigest()


def csrf_for(raw: str) -> str:
    """The CSRF token of the session (or pending login) whose cookie holds ``raw``."""
    return hmac.new(raw.encode(), b"console-csrf", hashlib.sha256).hexdigest()


def check_csrf(expected: str, sent: str) -> None:
    """A session's POSTs carry its token (a foreign page cannot read it)."""
    if not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRefused()


def client_network(address: str) -> str:
    """The client's /24 (IPv4) or /48 (IPv6): enough to recognise a session, not a person."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def summarise_user_agent(user_agent: str) -> str:
    """``Firefox on Linux``: the family of browser and system, not the full string."""
    browser = next(
        (
            name
            for token, name in (
                ("Edg/", "Edge"),
                ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"),
                ("Safari/", "Safari"),
                ("curl/", "curl"),
            )
            if token in user_agent
        ),
        "another browser",
    )
    system = next(
        (
            name
            for token, name in (
                ("Android", "Android"),
                ("iPhone", "iOS"),
                ("iPad", "iOS"),
                ("Windows", "Windows"),
                ("Mac OS", "macOS"),
                ("Linux", "Linux"),
            )
            if token in user_agent
        ),
        "",
    )
    return f"{browser} on {system}" if system else browser


@dataclass(frozen=True, slots=True)
class LiveSession:
    """The session a request's cookie names, as the views need it."""

    token_hash: str
    user_id: int
    csrf: str
    needs_touch: bool


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session on the Sessions page."""

    handle: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str
    client_network: str
    current: bool


class SessionService:
    """Starting, reading, listing and ending staff sessions, on an injected clock."""

    def __init__(self, settings: Settings, clock: Clock = utcnow) -> None:
        self.clock = clock
        self.absolute = timedelta(minutes=settings.console_session_minutes)
        self.idle = timedelta(minutes=settings.console_idle_minutes)
        self.cookie_seconds = max(1, int(self.absolute.total_seconds()))

    def start(self, session: Session, user_id: int, user_agent: str, client: str) -> str:
        """A new session for ``user_id``; returns the cookie's random id (a fresh one at
        every login: session fixation, OWASP ASVS 3.2.1)."""
        raw = secrets.token_urlsafe(32)
        now = self.clock()
        session.add(
            StaffSession(
                token_hash=token_hash(raw),
                user_id=user_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + self.absolute,
                user_agent=summarise_user_agent(user_agent)[:64],
                client_network=client_network(client),
            )
        )
        return raw

    def resolve(self, session: Session, raw: str | None) -> LiveSession:
        """The live session for a cookie's id, or :class:`NotLoggedIn`."""
        if not raw or len(raw) > 128:
            raise NotLoggedIn("please log in")
        row = session.get(StaffSession, token_hash(raw))
        now = self.clock()
        if (
            row is None
            or row.revoked_at is not None
            or now >= row.expires_at
            or now >= row.last_seen_at + self.idle
        ):
            raise NotLoggedIn("your session has ended; please log in again")
        return LiveSession(
            row.token_hash, row.user_id, csrf_for(raw), now - row.last_seen_at >= TOUCH_EVERY
        )

    def touch(self, session: Session, live: LiveSession) -> None:
        session.execute(
            update(StaffSession)
            .where(StaffSession.token_hash == live.token_hash, StaffSession.revoked_at.is_(None))
            .values(last_seen_at=self.clock())
        )

    def listed(self, session: Session, user_id: int, current: str | None) -> list[SessionRow]:
        """The live sessions of an account, newest first."""
        now = self.clock()
        rows = session.scalars(
            select(StaffSession)
            .where(
                StaffSession.user_id == user_id,
                StaffSession.revoked_at.is_(None),
                StaffSession.expires_at > now,
                StaffSession.last_seen_at > now - self.idle,
            )
            .order_by(StaffSession.created_at.desc())
        )
        return [
            SessionRow(
                r.token_hash[:16],
                r.created_at,
                r.last_seen_at,
                min(r.expires_at, r.last_seen_at + self.idle),
                r.user_agent,
                r.client_network,
                r.token_hash == current,
            )
            for r in rows
        ]

    def live_counts(self, session: Session) -> dict[int, int]:
        """How many live sessions each account has (accounts without any are left out)."""
        now = self.clock()
        rows = session.execute(
            select(StaffSession.user_id, func.count())
            .where(
                StaffSession.revoked_at.is_(None),
                StaffSession.expires_at > now,
                StaffSession.last_seen_at > now - self.idle,
            )
            .group_by(StaffSession.user_id)
        )
        return {int(user_id): int(count) for user_id, count in rows}

    def end(self, session: Session, user_id: int, handle: str) -> bool:
        """End one session of ``user_id`` named by its handle (the first 16 hex digits of
        its hash, as listed); whether one was ended."""
        if len(handle) != 16 or any(c not in "0123456789abcdef" for c in handle):
            return False
        result = session.execute(
            update(StaffSession)
            .where(
                StaffSession.user_id == user_id,
                StaffSession.token_hash.startswith(handle, autoescape=True),
                StaffSession.revoked_at.is_(None),
            )
            .values(revoked_at=self.clock())
        )
        return bool(getattr(result, "rowcount", 0))

    def end_current(self, session: Session, live: LiveSession) -> None:
        session.execute(
            update(StaffSession)
            .where(StaffSession.token_hash == live.token_hash)
            .values(revoked_at=self.clock())
        )


def end_all_sessions(session: Session, user_id: int, *, keep: str | None = None) -> int:
    """Revoke every session of the account (all but ``keep``, a token hash); how many."""
    stmt = update(StaffSession).where(
        StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None)
    )
    if keep is not None:
        stmt = stmt.where(StaffSession.token_hash != keep)
    result = session.execute(stmt.values(revoked_at=utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def forget_ended_sessions(session: Session) -> int:
    """Delete sessions whose absolute end or revocation is over a day old (a session
    that went idle goes at its absolute end); how many."""
    cutoff = utcnow() - timedelta(days=1)
    result = session.execute(
        delete(StaffSession).where(
            (StaffSession.expires_at < cutoff) | (StaffSession.revoked_at < cutoff)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


class ConsoleTokens:
    """The console's signed tokens, one service per purpose (the purpose is the salt):
    set-password links and the login form's anti-CSRF token. Neither opens a session."""

    def __init__(self, settings: Settings) -> None:
        self._set_password = TokenService(
            settings.secret_keys, "console-set-password", SET_PASSWORD_MAX_AGE
        )
        self._login = TokenService(settings.secret_keys, "console-login", LOGIN_FORM_MAX_AGE)
        self.secure = settings.base_url.startswith("https://")

    def issue_set_password(self, user_id: int, generation: int) -> str:
        return self._set_password.issue({"u": user_id, "g": generation})

    def read_set_password(self, token: str) -> tuple[int, int]:
        payload = self._set_password.read(token)
        try:
            return int(payload["u"]), int(payload["g"])
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenError("this link is not valid") from exc

    def issue_login_form(self) -> tuple[str, str]:
        """A nonce for the login cookie and the signed copy the form carries."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._login.issue({"n": nonce})

    def check_login_form(self, cookie: str | None, token: str) -> None:
        """Login CSRF: the form's signed token must name the nonce in the login cookie."""
        try:
            nonce = str(self._login.read(token).get("n", ""))
        except TokenError as exc:
            raise CsrfRefused() from exc
        if not cookie or not hmac.compare_digest(cookie, nonce):
            raise CsrfRefused()
