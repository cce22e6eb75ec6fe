"""What capture brings to the app and the CLI (see :mod:`zeroparty.wiring`)."""

from __future__ import annotations

import capture.commands
import capture.entry_points
import capture.jobs
import capture.minimisation
import capture.openapi
import capture.personal
import capture.retention
import capture.site
import capture.views
from zeroparty.background import PeriodicJob
from zeroparty.site import SiteSection
from zeroparty.wiring import Feature, JobContext


def _jobs(context: JobContext) -> list[PeriodicJob]:
    return capture.jobs.background_jobs(context.settings, context.database)


def feature() -> Feature:
    return Feature(
        name="capture",
        commands=capture.commands.add_commands,
        routes=capture.views.routes,
        openapi=capture.openapi,
        personal_data=[capture.personal.PROVIDER],
        # Answers follow the purposes they were kept for: the last one withdrawn or
        # expired, they go in the same transaction (issue 16).
        consent_listeners=[capture.minimisation.on_consent_change],
        site_sections=[
            SiteSection(frozenset({"forms", "quizzes"}), capture.site.parse, capture.site.apply)
        ],
        jobs=_jobs,
        purges=capture.retention.PURGES,
        entry_points=capture.entry_points.entry_points,
    )
