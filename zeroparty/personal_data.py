"""Where each package keeps personal data: the shape of a package's part, for access
and erasure.

A package that stores personal data about a subject names a :class:`PersonalData`
provider in its wiring (:mod:`zeroparty.wiring`). The app's
:class:`consent_ledger.api.ConsentLedger` holds them all: export (GDPR Art. 15/20) asks
every provider for its part; erasure (Art. 17) asks every provider to delete its part,
the ledger's own last. No package needs to know the others.
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
