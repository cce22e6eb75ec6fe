"""What a lead told us, handed from capture (and imports) to whoever scores it,
without an import of that package.

Capture publishes a :class:`LeadSignal` in the transaction that stores a submission,
holding only the answers it kept, each with the purposes it was collected for; the
contact import publishes one per row with a consent grant, for the fit attributes of
that row (``company``, ``job_title``), both through
:meth:`consent_ledger.api.ConsentLedger.publish_signals`. A package that derives data
from answers (scoring) names a listener in its wiring; the listener runs in the same
transaction, so the answers and what was derived from them commit or roll back
together. With no listener wired, publishing costs nothing.

Listeners take a batch of signals, in the order they happened to be published, so a
writer with many leads at once (an import writes a thousand rows per chunk) costs its
listeners a few statements per batch rather than per lead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from zeroparty.db import Transaction


class InputKind(StrEnum):
    FIELD = "field"
    QUIZ_ANSWER = "quiz-answer"


@dataclass(frozen=True, slots=True)
class LeadInput:
    """One kept answer: a form field or a quiz question, its value(s), its purposes."""

    kind: InputKind
    name: str
    values: tuple[str, ...]
    purposes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LeadSignal:
    """A lead's answers as far as they may be used: ``source_ref`` names where they came
    from (a form version ``contact@v3``, an imported row ``import:<sha256>:<line>``),
    ``occurred_at`` when they were given (submitted, or the row's consent time)."""

    subject_id: str
    occurred_at: datetime
    source_ref: str
    inputs: tuple[LeadInput, ...]
    # The lead was created in the publishing transaction: nothing was derived from it yet.
    new_lead: bool = False


# Given the publishing transaction as the publisher holds it (an ORM session or a plain
# connection); listeners run Core statements only.
LeadSignalListener = Callable[[Transaction, Sequence[LeadSignal]], None]
