"""Staff sessions: signed cookies, no server-side store (several hosts share only the
database), and the tokens that protect POSTs and set passwords.

A session cookie carries the user id, the account's session generation and a random
CSRF nonce, signed with ``ZEROPARTY_SECRET_KEYS`` (purpose ``console-session``) and
dated; it expires after ``CONSOLE_SESSION_MINUTES``. Logging out or changing the
password bumps the generation, so every cookie issued before stops working everywhere.
The cookie is HttpOnly, SameSite=Strict, Secure when ``BASE_URL`` is https, scoped to
``/console``.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from zeroparty.errors import Forbidden, Unauthorized
from zeroparty.settings import Settings
from zeroparty.tokens import TokenError, TokenService

COOKIE = "zp_console"
LOGIN_COOKIE = "zp_console_login"
COOKIE_PATH = "/console"
SET_PASSWORD_MAX_AGE = 72 * 3600
LOGIN_FORM_MAX_AGE = 3600


class NotLoggedIn(Unauthorized):
    code = "login_required"


class CsrfRefused(Forbidden):
    code = "csrf_refused"

    def __init__(self) -> None:
        super().__init__("this form has expired or was not sent from the console; reload it")


@dataclass(frozen=True, slots=True)
class SessionClaim:
    user_id: int
    generation: int
    nonce: str


class ConsoleTokens:
    """The console's token services, one per purpose (the purpose is the salt)."""

    def __init__(self, settings: Settings) -> None:
        minutes = settings.console_session_minutes
        self.session_seconds = max(1, int(minutes * 60))
        self._session = TokenService(settings.secret_keys, "console-session", self.session_seconds)
        self._set_password = TokenService(
            settings.secret_keys, "console-set-password", SET_PASSWORD_MAX_AGE
        )
        self._login = TokenService(settings.secret_keys, "console-login", LOGIN_FORM_MAX_AGE)
        self.secure = settings.base_url.startswith("https://")

    def issue_session(self, user_id: int, generation: int) -> tuple[str, SessionClaim]:
        claim = SessionClaim(user_id, generation, secrets.token_urlsafe(24))
        token = self._session.issue({"u": user_id, "g": generation, "n": claim.nonce})
        return token, claim

    def read_session(self, token: str | None) -> SessionClaim:
        if not token:
            raise NotLoggedIn("please log in")
        try:
            payload = self._session.read(token)
            return SessionClaim(int(payload["u"]), int(payload["g"]), str(payload["n"]))
        except (TokenError, KeyError, TypeError, ValueError) as exc:
            raise NotLoggedIn("your session has ended; please log in again") from exc

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


def check_csrf(claim: SessionClaim, sent: str) -> None:
    """A session's POSTs carry its nonce (a foreign page cannot read it)."""
    if not sent or not hmac.compare_digest(sent, claim.nonce):
        raise CsrfRefused()
