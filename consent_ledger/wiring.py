"""What the consent ledger brings to the app and the CLI (see :mod:`zeroparty.wiring`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import consent_ledger.commands
import consent_ledger.lifecycle_commands
import consent_ledger.openapi
import consent_ledger.request_commands
import consent_ledger.retention
import consent_ledger.scrub
import consent_ledger.site
import consent_ledger.transparency_views
import consent_ledger.views
from consent_ledger.proofs import transparency
from zeroparty.background import PeriodicJob
from zeroparty.site import SiteSection
from zeroparty.wiring import Feature, JobContext

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands

CHECKPOINT_POLL_SECONDS = 15.0


def _jobs(context: JobContext) -> list[PeriodicJob]:
    settings, database, signer = context.settings, context.database, context.signer

    def checkpoint_if_due() -> None:
        if transparency.checkpoint_due(database, settings):
            transparency.make_checkpoint(database, settings, signer.get())

    return [
        PeriodicJob("ledger-checkpoints", CHECKPOINT_POLL_SECONDS, checkpoint_if_due),
        *consent_ledger.lifecycle_commands.jobs(context),
        consent_ledger.scrub.job(database, settings),
    ]


def _commands(commands: Commands) -> None:
    consent_ledger.commands.add_commands(commands)
    consent_ledger.lifecycle_commands.add_commands(commands)
    consent_ledger.request_commands.add_commands(commands)


def feature() -> Feature:
    return Feature(
        name="consent_ledger",
        commands=_commands,
        routes=[*consent_ledger.views.routes, *consent_ledger.transparency_views.routes],
        openapi=consent_ledger.openapi,
        site_sections=[
            SiteSection(
                frozenset({"purposes", "topics"}),
                consent_ledger.site.parse,
                consent_ledger.site.apply,
            )
        ],
        jobs=_jobs,
        purges=consent_ledger.retention.PURGES,
    )
