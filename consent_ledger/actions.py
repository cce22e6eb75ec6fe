"""The vocabulary of the ledger: actions, sources, methods, mechanisms."""

from __future__ import annotations

from enum import StrEnum


class ConsentAction(StrEnum):
    """What a ledger entry says happened to one subject's consent for one purpose."""

    GRANTED = "granted"
    """Consent given. Where the entry says confirmation is required, it is pending."""
    CONFIRMED = "confirmed"
    """Double opt-in confirmed: turns a pending grant into a live one."""
    WITHDRAWN = "withdrawn"
    """Consent taken back (GDPR Art. 7(3)); effective at once."""
    REFUSED = "refused"
    """An explicit no (an opt-out purpose refused, a "do not sell" box ticked)."""
    GPC_OPT_OUT = "gpc-opt-out"
    """A Global Privacy Control signal, honoured as an opt-out of sale/sharing."""
    EXPIRED = "expired"
    """Consent lapsed by policy (a retention period ran out)."""
    ERASED = "erased"
    """The subject's personal data was erased; nothing is permitted afterwards."""


class ConsentSource(StrEnum):
    """Where an entry came from."""

    FORM = "form"
    QUIZ = "quiz"
    PREFERENCE_CENTER = "preference-center"
    API = "api"
    IMPORT = "import"
    CONSOLE = "console"
    SYSTEM = "system"


class ConsentMethod(StrEnum):
    """How the subject expressed it."""

    CHECKBOX = "checkbox"
    DOUBLE_OPT_IN = "double-opt-in"
    EMAIL_LINK = "email-link"
    ONE_CLICK = "one-click-unsubscribe"
    GPC_SIGNAL = "gpc-signal"
    VERBAL = "verbal"
    WRITTEN = "written"
    ELECTRONIC = "electronic"
    SYSTEM = "system"


class Mechanism(StrEnum):
    """How a purpose is permitted (SPEC rule 8)."""

    OPT_IN = "opt-in"
    """Nothing is permitted until granted (GDPR consent). The default."""
    OPT_OUT = "opt-out"
    """Permitted until refused, only in the jurisdictions the purpose names."""


class PurposeCategory(StrEnum):
    COMMUNICATION = "communication"
    PROFILING = "profiling"
    SALE_OR_SHARING = "sale-or-sharing"
    ANALYTICS = "analytics"
    PERSONALISATION = "personalisation"


class LegalBasis(StrEnum):
    """GDPR Art. 6(1) bases a purpose may rest on."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal-obligation"
    LEGITIMATE_INTERESTS = "legitimate-interests"
