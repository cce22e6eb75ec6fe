"""Why a submission was refused. Each is answered in one place (``zeroparty.app``) for
machines, and re-rendered next to the form's fields for people (``capture.views``)."""

from __future__ import annotations

from zeroparty.errors import InvalidInput, ZeropartyError
from zeroparty.i18n import N_


class UnknownField(InvalidInput):
    """The submission names a field the form does not declare; nothing was stored."""

    code = "unknown_field"


class TooFast(InvalidInput):
    """Sent sooner after the form was shown than a person can fill it."""

    code = "too_fast"


class SpamSuspected(InvalidInput):
    """The honeypot field, invisible to people, was filled in."""

    code = "spam_suspected"


class QuizAnswersInvalid(InvalidInput):
    """Quiz answers that do not fit the questions on the path they were given on."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(N_("Please answer the marked questions."), fields=errors)


class RateLimited(ZeropartyError):
    status_code = 429
    code = "rate_limited"


class OriginRefused(ZeropartyError):
    """The request comes from a site this form may not be used on."""

    status_code = 403
    code = "origin_refused"
