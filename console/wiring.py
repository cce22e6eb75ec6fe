"""What the console brings to the app and the CLI (see :mod:`zeroparty.wiring`)."""

from __future__ import annotations

import console.audit
import console.commands
import console.jobs
import console.views
from zeroparty.background import PeriodicJob
from zeroparty.db import Database
from zeroparty.wiring import EntryPoint, Feature, JobContext


def _jobs(context: JobContext) -> list[PeriodicJob]:
    return console.jobs.background_jobs(context.database)


def _entry_points(_database: Database) -> list[EntryPoint]:
    return [
        EntryPoint(
            "staff",
            "Compliance console",
            "/console/",
            "sign in; the first account: zeroparty user add you@example.com --role admin",
        )
    ]


def feature() -> Feature:
    return Feature(
        name="console",
        commands=console.commands.add_commands,
        routes=console.views.routes,
        jobs=_jobs,
        # Other packages note their bulk reads (API keys, exports) in the staff log.
        staff_log=console.audit.record_read,
        entry_points=_entry_points,
    )
