"""What a lead told us, handed from capture (and imports) to whoever scores it,
without an import of that package.

Capture publishes a :class:`LeadSignal` in the transaction that stores a submission,
holding only the answers it kept, each with the purposes it was collected for; the
contact import publishes one per row with a consent grant, for the fit attributes of
that row (``company``, ``job_title``). A package that derives data from answers
(scoring) registers a listener; the listener runs in the same transaction, so the
answers and what was derived from them commit or roll back together. With no listener
registered, publishing costs nothing.

Listeners take a batch of signals, in the order they happened to be published, so a
writer with many leads at once (an import writes a thousand rows per chunk) costs its
listeners a few statements per batch rather than per lead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.engine import Connection
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
    """A lead's answers as far as they may be used: ``source_ref`` names where they came
    from (a form version ``contact@v3``, an imported row ``import:<sha256>:<line>``),
    ``occurred_at`` when they were given (submitted, or the row's consent time)."""

    subject_id: str
    occurred_at: datetime
    source_ref: str
    inputs: tuple[LeadInput, ...]


LeadSignalListener = Callable[[Session, Sequence[LeadSignal]], None]

_LISTENERS: dict[str, LeadSignalListener] = {}


def register(name: str, listener: LeadSignalListener) -> None:
    """Call ``listener(session, signals)`` for every published batch (once per name)."""
    _LISTENERS[name] = listener


def listening() -> bool:
    return bool(_LISTENERS)


def publish(session: Session | Connection, signal: LeadSignal) -> None:
    """Hand ``signal`` to every listener, in the caller's transaction."""
    publish_many(session, (signal,))


def publish_many(session: Session | Connection, signals: Sequence[LeadSignal]) -> None:
    """Hand ``signals`` (in order) to every listener, in the caller's transaction.

    On a plain connection (:meth:`Database.write_connection`) the listeners get an ORM
    session bound to it, as the ledger's listeners do: it joins the connection's
    transaction and neither commits it nor, when closed, rolls it back."""
    if not signals or not _LISTENERS:
        return
    if isinstance(session, Session):
        for listener in list(_LISTENERS.values()):
            listener(session, signals)
        return
    with Session(bind=session) as orm:
        for listener in list(_LISTENERS.values()):
            listener(orm, signals)
