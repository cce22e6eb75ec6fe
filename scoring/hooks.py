"""Scoring's entries in the process-global registries, kept until every package appends
and publishes through the wired :class:`consent_ledger.api.ConsentLedger`.

The app and the CLI wire scoring's listeners and personal data explicitly
(:mod:`scoring.wiring`). Some writers still go around the front door:
``capture.services`` and ``capture.double_opt_in`` append with
``consent_ledger.ledger.append_many(..., listeners=None)`` and publish answers with
``zeroparty.lead_signals.publish``; ``consent_ledger.imports`` does both;
``preference_center.export`` lists ``zeroparty.personal_data.providers()``. Those fall
back to these registries, so scoring stays registered here (imported by
:mod:`scoring.wiring`) until they are gone; then this module goes.
"""

from __future__ import annotations

from consent_ledger import listeners
from scoring import personal, services
from zeroparty import lead_signals, personal_data

LISTENER = "scoring"

listeners.register(LISTENER, services.on_consent_change)
lead_signals.register(LISTENER, services.record_answers)
personal_data.register(personal.PROVIDER)
