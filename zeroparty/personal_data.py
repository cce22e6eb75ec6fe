"""Where each package keeps personal data: one registry for access and erasure.

A package that stores personal data about a subject registers a :class:`PersonalData`
provider. Export (GDPR Art. 15/20) asks every provider for its part; erasure (Art. 17)
asks every provider to delete its part. The ledger's own provider is registered by
``consent_ledger``; feature packages add theirs, so no package needs to know the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class PersonalData:
    """``export(session, subject_id)`` returns a JSON-able section (or ``None``);
    ``erase(session, subject_id)`` deletes every personal datum the package holds."""

    name: str
    export: Callable[[Session, str], Any]
    erase: Callable[[Session, str], None]


_PROVIDERS: dict[str, PersonalData] = {}


def register(provider: PersonalData) -> None:
    _PROVIDERS[provider.name] = provider


def providers() -> list[PersonalData]:
    return list(_PROVIDERS.values())
