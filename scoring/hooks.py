"""Scoring's listeners: told of every ledger append and of the answers of every capture
submission and imported row.

Registered on import (the app factory and the CLI import this module), so every
process that writes to the ledger or stores answers keeps scores consistent with
consent in the same transaction.
"""

from __future__ import annotations

from consent_ledger import listeners
from scoring import personal, services
from zeroparty import lead_signals

LISTENER = "scoring"

listeners.register(LISTENER, services.on_consent_change)
lead_signals.register(LISTENER, services.record_answers)

__all__ = ["personal"]
