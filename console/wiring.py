"""What the console brings to the app and the CLI (see :mod:`zeroparty.wiring`)."""

from __future__ import annotations

import console.commands
import console.jobs
import console.views
from zeroparty.background import PeriodicJob
from zeroparty.wiring import Feature, JobContext


def _jobs(context: JobContext) -> list[PeriodicJob]:
    return console.jobs.background_jobs(context.database)


def feature() -> Feature:
    return Feature(
        name="console",
        commands=console.commands.add_commands,
        routes=console.views.routes,
        jobs=_jobs,
    )
