"""Listeners told of every ledger append, inside the appending transaction.

A feature package that keeps data derived from consent (scoring keeps scores and
events) registers a listener so a withdrawal takes effect in the same transaction that
records it (SPEC rule 2), without the ledger importing that package. Listeners run
after the projection is updated, under the ledger head lock: they must be quick and
must only act on the few entries they care about. With no listener registered an
append pays one truth test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from consent_ledger.entries import LedgerEntry

ConsentListener = Callable[[Session, Sequence[LedgerEntry]], None]

_LISTENERS: dict[str, ConsentListener] = {}


def register(name: str, listener: ConsentListener) -> None:
    """Call ``listener(session, entries)`` after every append (once per name)."""
    _LISTENERS[name] = listener


def unregister(name: str) -> None:
    _LISTENERS.pop(name, None)


def notify(session: Session, entries: Sequence[LedgerEntry]) -> None:
    """Tell every listener about ``entries`` (already in the chain and the projection)."""
    for listener in list(_LISTENERS.values()):
        listener(session, entries)


def registered() -> bool:
    return bool(_LISTENERS)


def registered_listeners() -> tuple[ConsentListener, ...]:
    return tuple(_LISTENERS.values())
