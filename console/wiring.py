"""What the console brings to the app and the CLI (see :mod:`zeroparty.wiring`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

import console.audit
import console.commands
import console.jobs
import console.views
import console.web
from console.roles import Permission
from zeroparty.background import PeriodicJob
from zeroparty.db import Database
from zeroparty.wiring import EntryPoint, Feature, JobContext, StaffEndpoint


def _jobs(context: JobContext) -> list[PeriodicJob]:
    return console.jobs.background_jobs(context.database)


def _entry_points(_database: Database) -> list[EntryPoint]:
    return [
        EntryPoint(
            "staff",
            "Compliance console",
            "/console/",
            "sign in; the first account: zeroparty user add YOUR-EMAIL --role admin",
        )
    ]


def _staff_guard(
    permission: str, endpoint: StaffEndpoint
) -> Callable[[Request], Awaitable[Response]]:
    """Another package's staff page, guarded as the console's own (session, role)."""

    @console.web.staff_page
    async def page(request: Request) -> Response:
        staff = await console.web.require(request, Permission(permission))
        return await endpoint(request, staff.id)

    return page


def feature() -> Feature:
    return Feature(
        name="console",
        commands=console.commands.add_commands,
        routes=console.views.routes,
        jobs=_jobs,
        # Other packages note their bulk reads (API keys, exports) in the staff log.
        staff_log=console.audit.record_read,
        staff_guard=_staff_guard,
        entry_points=_entry_points,
    )
