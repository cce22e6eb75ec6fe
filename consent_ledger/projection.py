"""Current consent as a fold over the ledger.

One pure function, :func:`apply`, turns a state and an entry into the next state. The
kept projection (``consent_state``), the rebuild, point-in-time answers and
``ledger verify`` all use it, so they cannot disagree about what an entry means.

Entries for one subject and purpose are applied in :func:`order_key` order: by when the
action happened, and on a tie a refusal, withdrawal or GPC signal after a grant (SPEC
rule 8: the no wins), then by ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True, slots=True)
class ConsentFact:
    """What the fold needs of a ledger entry."""

    seq: int
    action: str
    confirmation_required: bool
    notice_sha256: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class StateValue:
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
    action = ConsentAction(fact.action)
    seq, at = fact.seq, fact.occurred_at
    if action is ConsentAction.GRANTED:
        if fact.confirmation_required:
            return StateValue(PENDING, False, None, fact.notice_sha256, seq, at)
        return StateValue(action.value, True, at, fact.notice_sha256, seq, at)
    if action is ConsentAction.CONFIRMED:
        if state is not None and state.status == PENDING:
            return StateValue(action.value, True, at, state.notice_sha256, seq, at)
        # A confirmation with nothing pending (clicked after a withdrawal, or twice)
        # changes nothing but is still the last entry seen.
        if state is None:
            return StateValue(action.value, False, None, fact.notice_sha256, seq, at)
        return StateValue(state.status, state.permitted, state.since, state.notice_sha256, seq, at)
    notice = fact.notice_sha256 or (state.notice_sha256 if state else None)
    return StateValue(action.value, False, at, notice, seq, at)


def fold(facts: list[ConsentFact], state: StateValue | None = None) -> StateValue | None:
    """Apply ``facts`` (any order) in :func:`order_key` order on top of ``state``."""
    for fact in sorted(facts, key=order_key):
        state = apply(state, fact)
    return state


def comes_after(fact: ConsentFact, state: StateValue) -> bool:
    """Whether ``fact`` can be applied on top of ``state`` without replaying the pair."""
    negative = 1 if fact.action in _NEGATIVE else 0
    # The state does not keep the last action's polarity; compare conservatively.
    return (fact.occurred_at, negative, fact.seq) > (state.last_occurred_at, 1, state.last_seq)
