"""Current consent as a fold over the ledger.

One pure function, :func:`apply`, turns a state and an entry into the next state. The
kept projection (``consent_state``), the rebuild, point-in-time answers and
``ledger verify`` all use it, so they cannot disagree about what an entry means.

Entries for one subject and purpose are applied in :func:`order_key` order: by when the
action happened, and on a tie a refusal, withdrawal or GPC signal after a grant (SPEC
rule 8: the no wins), then by ``seq``.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from consent_ledger.actions import ConsentAction

_NEGATIVE = frozenset(
    {
        ConsentAction.WITHDRAWN,
        ConsentAction.REFUSED,
        ConsentAction.GPC_OPT_OUT,
        ConsentAction.EXPIRED,
        ConsentAction.ERASED,
    }
)

PENDING = "pending"
NO_RECORD = "none"
"""Status of a pair whose entries record no decision (a lone confirmation)."""
_GRANTED = ConsentAction.GRANTED.value
_CONFIRMED = ConsentAction.CONFIRMED.value


class ConsentFact(NamedTuple):
    """What the fold needs of a ledger entry.

    Tuples rather than dataclasses: ``ledger verify`` builds one per entry, a million
    at a time. ``occurred_at`` may be a datetime or canonical RFC 3339 text (verify
    folds text): the fold only compares and copies it.
    """

    seq: int
    action: str
    confirmation_required: bool
    notice_sha256: str | None
    occurred_at: datetime


class StateValue(NamedTuple):
    """The state of one subject's consent for one purpose after some entries.

    ``status`` is the last effective action (``pending`` for a grant awaiting its
    confirmation); ``since`` is when the current permission or refusal began.
    """

    status: str
    permitted: bool
    since: datetime | None
    notice_sha256: str | None
    last_seq: int
    last_occurred_at: datetime


def is_negative(action: str) -> bool:
    """A refusal, withdrawal, GPC signal, expiry or erasure: it wins ties (rule 8)."""
    return action in _NEGATIVE


def order_key(fact: ConsentFact) -> tuple[datetime, int, int]:
    return (fact.occurred_at, 1 if fact.action in _NEGATIVE else 0, fact.seq)


def apply(state: StateValue | None, fact: ConsentFact) -> StateValue:
    """The state after ``fact``, given the state before it (``None``: no entries yet)."""
    action, seq, at = fact.action, fact.seq, fact.occurred_at
    if action == _GRANTED:
        if fact.confirmation_required:
            return StateValue(PENDING, False, None, fact.notice_sha256, seq, at)
        return StateValue(_GRANTED, True, at, fact.notice_sha256, seq, at)
    if action == _CONFIRMED:
        if state is not None and state.status == PENDING:
            return StateValue(_CONFIRMED, True, at, state.notice_sha256, seq, at)
        # A confirmation with nothing pending (clicked after a withdrawal, or twice)
        # changes nothing but is still the last entry seen. With no history at all it
        # leaves "no record", so an opt-out purpose keeps its default.
        if state is None:
            return StateValue(NO_RECORD, False, None, fact.notice_sha256, seq, at)
        return StateValue(state.status, state.permitted, state.since, state.notice_sha256, seq, at)
    if action not in _NEGATIVE:
        raise ValueError(f"unknown ledger action {action!r}")
    notice = fact.notice_sha256 or (state.notice_sha256 if state else None)
    return StateValue(str(action), False, at, notice, seq, at)


def fold(facts: list[ConsentFact], state: StateValue | None = None) -> StateValue | None:
    """Apply ``facts`` (any order) in :func:`order_key` order on top of ``state``."""
    if len(facts) == 1:
        return apply(state, facts[0])
    for fact in sorted(facts, key=order_key):
        state = apply(state, fact)
    return state


def comes_after(fact: ConsentFact, state: StateValue) -> bool:
    """Whether ``fact`` can be applied on top of ``state`` without replaying the pair."""
    negative = 1 if fact.action in _NEGATIVE else 0
    # The state does not keep the last action's polarity; compare conservatively.
    return (fact.occurred_at, negative, fact.seq) > (state.last_occurred_at, 1, state.last_seq)
