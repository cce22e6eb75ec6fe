"""Signed, expiring tokens for links: one :class:`TokenService` per link purpose.

Built on itsdangerous. The purpose is the salt, so a token minted for one purpose
(confirming a grant) never opens another (erasing a lead). ``ZEROPARTY_SECRET_KEYS``
rotation: the first key signs, every key verifies, so links signed with a retired key
keep working until that key is removed from the list. Payloads hold no personal data
(ids and versions, never an email): tokens travel in URLs, logs and mail archives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from zeroparty.errors import ZeropartyError

MAX_TOKEN_LENGTH = 2048


class TokenError(ZeropartyError):
    """A token that cannot be used; the page should offer a fresh link."""

    status_code = 400
    code = "token_invalid"


class TokenExpired(TokenError):
    status_code = 410
    code = "token_expired"


class TokenInvalid(TokenError):
    code = "token_invalid"


class TokenWrongPurpose(TokenError):
    code = "token_wrong_purpose"


class TokenService:
    """Issues and reads tokens for one ``purpose`` that live at most ``max_age`` seconds."""

    def __init__(self, secret_keys: Sequence[str], purpose: str, max_age: int) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is required")
        self.purpose = purpose
        self.max_age = max_age
        # itsdangerous signs with the *last* key of the list; ours signs with the first.
        self._serializer = URLSafeTimedSerializer(list(reversed(secret_keys)), salt=purpose)

    def issue(self, payload: Mapping[str, Any]) -> str:
        return str(self._serializer.dumps(dict(payload)))

    def read(self, token: str, *, others: Iterable[TokenService] = ()) -> dict[str, Any]:
        """The payload of a valid, unexpired token of this purpose.

        Raises :class:`TokenExpired`, :class:`TokenWrongPurpose` (when one of ``others``
        would accept it) or :class:`TokenInvalid`.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid("this link is not valid")
        try:
            payload = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired as exc:
            raise TokenExpired("this link has expired") from exc
        except BadSignature as exc:
            for other in others:
                if other.purpose != self.purpose and other.accepts(token):
                    raise TokenWrongPurpose("this link is meant for something else") from exc
            raise TokenInvalid("this link is not valid") from exc
        if not isinstance(payload, dict):
            raise TokenInvalid("this link is not valid")
        return payload

    def accepts(self, token: str) -> bool:
        """Whether the signature is this purpose's (expired or not)."""
        try:
            self._serializer.loads(token)
        except BadSignature:
            return False
        return True
