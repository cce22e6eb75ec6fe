"""Capture's signed tokens: one :class:`~zeroparty.tokens.TokenService` per purpose.

- ``form-render``: issued with every rendered form; carries the published version,
  when it was first shown (minimum fill time), the notice versions shown (what a grant
  records) and a submission id (the default idempotency key). Hidden in the form.
- ``form-result``: the thank-you page's state after a redirect (what to show, no
  personal data).
- ``confirm``: the double opt-in link in the confirmation mail.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zeroparty.tokens import TokenInvalid, TokenService

RENDER_MAX_AGE = 24 * 3600
RESULT_MAX_AGE = 3600
CONFIRM_MAX_AGE = 14 * 24 * 3600


@dataclass(frozen=True, slots=True)
class RenderToken:
    definition_id: int
    rendered_at: float
    notices: Mapping[str, str]
    submission_id: str

    def payload(self) -> dict[str, Any]:
        return {
            "d": self.definition_id,
            "t": round(self.rendered_at, 3),
            "n": dict(self.notices),
            "s": self.submission_id,
        }


@dataclass(frozen=True, slots=True)
class ConfirmToken:
    subject_id: str
    purposes: tuple[str, ...]
    submission_id: str


class CaptureTokens:
    """The three token services, built once per app from the secret keys."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        self.render = TokenService(secret_keys, "form-render", RENDER_MAX_AGE)
        self.result = TokenService(secret_keys, "form-result", RESULT_MAX_AGE)
        self.confirm = TokenService(secret_keys, "confirm", CONFIRM_MAX_AGE)

    def new_render(self, definition_id: int, notices: Mapping[str, str]) -> RenderToken:
        return RenderToken(definition_id, time.time(), notices, secrets.token_hex(16))

    def issue_render(self, token: RenderToken) -> str:
        return self.render.issue(token.payload())

    def read_render(self, raw: str) -> RenderToken:
        payload = self.render.read(raw, others=(self.result, self.confirm))
        try:
            notices = payload["n"]
            token = RenderToken(int(payload["d"]), float(payload["t"]), notices, str(payload["s"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenInvalid("this form is not valid: reload the page") from exc
        if not isinstance(notices, dict) or len(token.submission_id) != 32:
            raise TokenInvalid("this form is not valid: reload the page")
        return token

    def issue_confirm(self, token: ConfirmToken) -> str:
        return self.confirm.issue(
            {"s": token.subject_id, "p": list(token.purposes), "b": token.submission_id}
        )

    def read_confirm(self, raw: str) -> ConfirmToken:
        payload = self.confirm.read(raw, others=(self.render, self.result))
        purposes = payload.get("p")
        subject_id = payload.get("s")
        if not isinstance(subject_id, str) or not isinstance(purposes, list):
            raise TokenInvalid("this link is not valid")
        return ConfirmToken(subject_id, tuple(str(p) for p in purposes), str(payload.get("b")))
