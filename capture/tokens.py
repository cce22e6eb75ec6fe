"""Capture's signed tokens: one :class:`~zeroparty.tokens.TokenService` per purpose.

- ``form-render``: issued with every rendered form; carries the published version,
  when it was first shown (minimum fill time), the notice versions shown (what a grant
  records) and a submission id (the default idempotency key). Hidden in the form.
- ``quiz-step``: where a visitor is in a quiz, after each step's POST-redirect-GET
  (``GET /f/SLUG?q=TOKEN``): the render token, the answers chosen so far (choice values,
  never a typed field), the step just answered and whether Back was pressed. Signed, so
  nobody can forge a path; short-lived, so an address copied from a shared computer's
  history stops showing the answers soon.
- ``form-result``: the thank-you page's state after a redirect (what to show, no
  personal data).
- ``confirm``: the double opt-in link in the confirmation mail.
- ``held-confirm``: the link mailed to an existing lead's address when a submission
  under it waits for proof that the sender controls the address
  (:mod:`capture.pending`); it lives as long as the submission waits.
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
HELD_MAX_AGE = 7 * 24 * 3600
QUIZ_STEP_MAX_AGE = 2 * 3600


@dataclass(frozen=True, slots=True)
class RenderToken:
    definition_id: int
    rendered_at: float
    notices: Mapping[str, str]
    submission_id: str
    locale: str = ""
    """The language the form was shown in (its notices are in it); empty: its own."""

    def payload(self) -> dict[str, Any]:
        payload = {
            "d": self.definition_id,
            "t": round(self.rendered_at, 3),
            "n": dict(self.notices),
            "s": self.submission_id,
        }
        if self.locale:
            payload["l"] = self.locale
        return payload


@dataclass(frozen=True, slots=True)
class QuizStepToken:
    """A quiz page to show again: the walk is re-derived from ``answers`` (what was
    answered at ``at``, going ``back`` or forward), so a tampered path cannot exist."""

    render: RenderToken
    answers: Mapping[str, tuple[str, ...]]
    at: str | None
    back: bool
    page_url: str


@dataclass(frozen=True, slots=True)
class ConfirmToken:
    subject_id: str
    purposes: tuple[str, ...]
    submission_id: str


@dataclass(frozen=True, slots=True)
class HeldToken:
    """The link that applies a held submission: whose address, which submission."""

    subject_id: str
    submission_id: str


class CaptureTokens:
    """The five token services, built once per app from the secret keys."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        self.render = TokenService(secret_keys, "form-render", RENDER_MAX_AGE)
        self.result = TokenService(secret_keys, "form-result", RESULT_MAX_AGE)
        self.confirm = TokenService(secret_keys, "confirm", CONFIRM_MAX_AGE)
        self.held = TokenService(secret_keys, "held-confirm", HELD_MAX_AGE)
        self.quiz_step = TokenService(secret_keys, "quiz-step", QUIZ_STEP_MAX_AGE)

    def new_render(
        self, definition_id: int, notices: Mapping[str, str], locale: str = ""
    ) -> RenderToken:
        return RenderToken(definition_id, time.time(), notices, secrets.token_hex(16), locale)

    def issue_render(self, token: RenderToken) -> str:
        return self.render.issue(token.payload())

    def read_render(self, raw: str) -> RenderToken:
        payload = self.render.read(raw, others=(self.result, self.confirm, self.held))
        try:
            notices = payload["n"]
            token = RenderToken(
                int(payload["d"]),
                float(payload["t"]),
                notices,
                str(payload["s"]),
                str(payload.get("l", ""))[:16],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenInvalid("this form is not valid: reload the page") from exc
        if not isinstance(notices, dict) or len(token.submission_id) != 32:
            raise TokenInvalid("this form is not valid: reload the page")
        return token

    def issue_quiz_step(self, token: QuizStepToken) -> str:
        return self.quiz_step.issue(
            {
                "r": self.issue_render(token.render),
                "a": {key: list(values) for key, values in token.answers.items() if values},
                "at": token.at,
                "b": token.back,
                "p": token.page_url,
            }
        )

    def read_quiz_step(self, raw: str) -> QuizStepToken:
        """The step a visitor was sent to; the render token inside is read as the form's
        own (same checks, same expiry)."""
        payload = self.quiz_step.read(raw, others=(self.render, self.result))
        invalid = TokenInvalid("this quiz page is not valid: start again")
        answers, at, page_url = payload.get("a"), payload.get("at"), payload.get("p", "")
        if not isinstance(answers, dict) or not isinstance(page_url, str):
            raise invalid
        if at is not None and not isinstance(at, str):
            raise invalid
        if not all(isinstance(v, list) for v in answers.values()):
            raise invalid
        render = self.read_render(str(payload.get("r", "")))
        kept = {str(k): tuple(str(v) for v in values) for k, values in answers.items()}
        return QuizStepToken(render, kept, at, bool(payload.get("b")), page_url)

    def issue_confirm(self, token: ConfirmToken) -> str:
        return self.confirm.issue(
            {"s": token.subject_id, "p": list(token.purposes), "b": token.submission_id}
        )

    def read_confirm(self, raw: str) -> ConfirmToken:
        payload = self.confirm.read(raw, others=(self.render, self.result, self.held))
        purposes = payload.get("p")
        subject_id = payload.get("s")
        if not isinstance(subject_id, str) or not isinstance(purposes, list):
            raise TokenInvalid("this link is not valid")
        return ConfirmToken(subject_id, tuple(str(p) for p in purposes), str(payload.get("b")))

    def issue_held(self, token: HeldToken) -> str:
        return self.held.issue({"s": token.subject_id, "b": token.submission_id})

    def read_held(self, raw: str) -> HeldToken:
        payload = self.held.read(raw, others=(self.render, self.result, self.confirm))
        subject_id, submission_id = payload.get("s"), payload.get("b")
        if not isinstance(subject_id, str) or not isinstance(submission_id, str):
            raise TokenInvalid("this link is not valid")
        return HeldToken(subject_id, submission_id)
