"""What scoring brings to the app and the CLI (see :mod:`zeroparty.wiring`)."""

from __future__ import annotations

import scoring.commands
import scoring.jobs
import scoring.openapi
import scoring.personal
import scoring.services
import scoring.site
import scoring.views
from zeroparty.background import PeriodicJob
from zeroparty.site import SiteSection
from zeroparty.wiring import Feature, JobContext


def _jobs(context: JobContext) -> list[PeriodicJob]:
    return scoring.jobs.background_jobs(context.settings, context.database)


def feature() -> Feature:
    return Feature(
        name="scoring",
        commands=scoring.commands.add_commands,
        routes=scoring.views.routes,
        openapi=scoring.openapi,
        # Scores follow a withdrawal in the transaction that records it (SPEC rule 2),
        # and answers reach the score in the transaction that stores them.
        consent_listeners=[scoring.services.on_consent_change],
        signal_listeners=[scoring.services.record_answers],
        personal_data=[scoring.personal.PROVIDER],
        site_sections=[SiteSection(frozenset({"scoring"}), scoring.site.parse, scoring.site.apply)],
        jobs=_jobs,
    )
