"""``GET /console/audiences/{purpose}.csv?topic=``: the audience as a CSV download for
staff whose role may export, streamed (constant memory) and noted in the staff log with
who downloaded it. The console keeps sessions and roles; this page is guarded by the
console's guard the app is wired with (:data:`zeroparty.wiring.StaffGuard`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from consent_ledger.api import ConsentLedger
from consent_sync import audiences
from consent_sync.access import SyncRead, bulk_links, staff_log
from consent_sync.audience_rows import CSV_COLUMNS, csv_row
from consent_sync.audiences import PurposeFacts, Snapshot
from zeroparty.db import Database
from zeroparty.errors import NotFound
from zeroparty.mail import LeadLinkerMany
from zeroparty.wiring import StaffGuard, StaffLogWriter, staff_guard

PERMISSION = "export"  # the console's permission to download data
CHUNK = 64 * 1024
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _formula_safe(cell: object) -> object:
    # OWASP CSV injection: a spreadsheet would run a cell that starts like a formula.
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def _guard(request: Request) -> StaffGuard:
    guard: StaffGuard | None = getattr(request.app.state, "consent_sync_staff_guard", None)
    if guard is None:
        guard = staff_guard()
        if guard is None:
            raise NotFound("no console in this build")
        request.app.state.consent_sync_staff_guard = guard
    return guard


def _start(
    database: Database,
    log: StaffLogWriter,
    staff_id: int,
    purpose: str,
    topic: str | None,
) -> tuple[PurposeFacts, Snapshot]:
    """Check the purpose and topic, take the snapshot and log the download."""
    with database.write() as session:
        connection = session.connection()
        facts = audiences.purpose_facts(connection, purpose, topic)
        snapshot = audiences.start(connection, purpose, topic)
        of = purpose + (f" topic {topic}" if topic else "")
        detail = f"console download: audience {of} as of entry {snapshot.as_of_seq}"
        log(session, staff_id, SyncRead.AUDIENCE_EXPORT.value, detail)
    return facts, snapshot


def _chunks(
    database: Database,
    ledger: ConsentLedger,
    linker: LeadLinkerMany,
    facts: PurposeFacts,
    snapshot: Snapshot,
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    with database.read() as session:
        for member in audiences.walk(session, ledger, linker, facts, snapshot):
            writer.writerow([_formula_safe(cell) for cell in csv_row(member)])
            if buffer.tell() >= CHUNK:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


async def _download(request: Request, staff_id: int) -> Response:
    database: Database = request.app.state.database
    purpose = request.path_params["purpose"]
    topic = request.query_params.get("topic") or None
    facts, snapshot = await database.run(
        _start, database, staff_log(request), staff_id, purpose, topic
    )
    chunks = _chunks(database, request.app.state.ledger, bulk_links(request), facts, snapshot)
    name = f"audience-{purpose}" + (f"-{topic}" if topic else "") + f"-{snapshot.as_of_seq}.csv"
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


async def download_audience(request: Request) -> Response:
    return await _guard(request)(PERMISSION, _download)(request)


routes: list[BaseRoute] = [
    Route("/console/audiences/{purpose}.csv", download_audience, methods=["GET"])
]
