"""How consent sync's API routes let a key in and note what it read.

Every route here reads in bulk (who may be mailed, what changed), so each read by a key
is noted in the staff log (:data:`zeroparty.wiring.StaffLogWriter`, kept by the console)
before it is answered: a read that is answered is also logged.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from sqlalchemy.orm import Session
from starlette.requests import Request

from zeroparty.apikeys import ApiKeyVerifier, Caller, Scope
from zeroparty.db import Database
from zeroparty.errors import ServiceUnavailable
from zeroparty.mail import LeadLinkerMany
from zeroparty.wiring import StaffLogWriter, lead_linker_many, staff_log_writer

T = TypeVar("T")


class SyncRead(StrEnum):
    """Staff-log actions of consent sync's reads."""

    CHANGES = "api.changes"
    AUDIENCE = "api.audience"
    SUPPRESSION = "api.suppression"
    AUDIENCE_EXPORT = "audience.export"


def staff_log(request: Request) -> StaffLogWriter:
    """The app's staff-log writer, found once per app from its wiring."""
    writer: StaffLogWriter | None = getattr(request.app.state, "consent_sync_staff_log", None)
    if writer is None:
        writer = staff_log_writer()
        request.app.state.consent_sync_staff_log = writer
    return writer


def bulk_links(request: Request) -> LeadLinkerMany:
    """The app's link maker for many leads (the preference center's), found once."""
    linker: LeadLinkerMany | None = getattr(request.app.state, "consent_sync_links", None)
    if linker is None:
        linker = lead_linker_many(request.app.state.settings)
        if linker is None:
            raise ServiceUnavailable("no package of this build makes preference links")
        request.app.state.consent_sync_links = linker
    return linker


def keyed_read(
    database: Database,
    verifier: ApiKeyVerifier,
    authorization: str | None,
    scope: Scope,
    log: StaffLogWriter,
    action: SyncRead,
    read: Callable[[Session], tuple[T, str]],
) -> T:
    """One request's database work: check the key and its scope, ``read`` (which
    returns the answer and the log line's detail) in a read transaction, then log it in
    a short write transaction of its own: a page that takes a while to read (an
    audience page makes a thousand links) never holds SQLite's one write lock, and an
    answer whose log line cannot be written is not given."""
    with database.read() as session:
        caller: Caller = verifier.verify(session, authorization)
        caller.require(scope)
        answer, detail = read(session)
    with database.write() as session:
        log(session, None, action.value, f"API key {caller.name!r}: {detail}")
    return answer
