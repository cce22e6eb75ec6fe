"""What consent sync brings to the app and the CLI (see :mod:`zeroparty.wiring`)."""

from __future__ import annotations

import consent_sync.commands
import consent_sync.erased
import consent_sync.inbound_views
import consent_sync.openapi
import consent_sync.subscription_jobs
import consent_sync.subscription_views
import consent_sync.views
from zeroparty.wiring import Feature


def feature() -> Feature:
    return Feature(
        name="consent_sync",
        commands=consent_sync.commands.add_commands,
        routes=[
            *consent_sync.views.routes,
            *consent_sync.inbound_views.routes,
            *consent_sync.subscription_views.routes,
        ],
        openapi=consent_sync.openapi,
        # The digest of an erased lead's address, for the change feed and suppression.
        personal_data=[consent_sync.erased.PERSONAL_DATA],
        # Subscriptions: the ledger's new entries made into deliveries and sent.
        jobs=consent_sync.subscription_jobs.background_jobs,
    )
