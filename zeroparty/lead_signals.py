"""What a lead told us, handed from capture to whoever scores it, without an import.

Capture publishes a :class:`LeadSignal` in the transaction that stores a submission,
holding only the answers it kept, each with the purposes it was collected for. A
package that derives data from answers (scoring) registers a listener; the listener
runs in the same transaction, so a submission and what was derived from it commit or
roll back together. With no listener registered, publishing costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session


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
    """A lead's submission as far as it may be used: ``source_ref`` names the form
    version (``contact@v3``), ``occurred_at`` when it was submitted."""

    subject_id: str
    occurred_at: datetime
    source_ref: str
    inputs: tuple[LeadInput, ...]


LeadSignalListener = Callable[[Session, LeadSignal], None]

_LISTENERS: dict[str, LeadSignalListener] = {}


def register(name: str, listener: LeadSignalListener) -> None:
    _LISTENERS[name] = listener


def listening() -> bool:
    return bool(_LISTENERS)


def publish(session: Session, signal: LeadSignal) -> None:
    """Hand ``signal`` to every listener, in the caller's transaction."""
    for listener in list(_LISTENERS.values()):
        listener(session, signal)
