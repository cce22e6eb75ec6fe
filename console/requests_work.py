"""Working the data-subject request queue from the console: entering a request received
by mail or phone, answering an access request with a download, carrying out an erasure,
refusing with a reason. Every step is in the staff audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consent_ledger import export
from consent_ledger.actions import ConsentMethod, ConsentSource
from consent_ledger.api import ConsentLedger, normalise_email, scrub_sqlite
from consent_ledger.requests import (
    DataSubjectRequest,
    RequestChannel,
    RequestKind,
    RequestStatus,
    close_request,
    open_request,
    record_request,
)
from console import audit
from console.audit import StaffAction
from zeroparty.db import Database, utcnow
from zeroparty.errors import InvalidInput, NotFound

MAX_NOTE = 2000


def enter_request(
    database: Database,
    ledger: ConsentLedger,
    staff_id: int,
    staff_email: str,
    email: str,
    kind: str,
    received_at: datetime | None,
    note: str,
) -> DataSubjectRequest:
    """A request staff received (by mail, phone, letter), for a known lead."""
    try:
        request_kind = RequestKind(kind)
    except ValueError as exc:
        raise InvalidInput("kind: access or erasure", fields={"kind": "access or erasure"}) from exc
    if len(note) > MAX_NOTE:
        raise InvalidInput("note: too long", fields={"note": f"at most {MAX_NOTE} characters"})
    address = normalise_email(email)
    with database.write() as session:
        subject_id = ledger.find_lead(session, address)
        if subject_id is None:
            raise NotFound("no lead with this email address", fields={"email": "unknown lead"})
        request = record_request(
            session, subject_id, request_kind, RequestChannel.STAFF,
            received_at=received_at, note=note,
        )  # fmt: skip
        audit.record(
            session, staff_id, StaffAction.REQUEST_CREATE, subject_id=subject_id,
            detail=f"request {request.id}: {request_kind.value}, entered by {staff_email}",
        )  # fmt: skip
        return request


def access_export(
    database: Database, ledger: ConsentLedger, staff_id: int, staff_email: str, request_id: int
) -> dict[str, Any]:
    """Everything held about the lead (as the preference center's download holds it),
    and the request completed."""
    with database.write() as session:
        request = open_request(session, request_id)
        if request.kind != RequestKind.ACCESS:
            raise InvalidInput("this is not an access request")
        subject_id = request.subject_id
        sections = {
            provider.name: provider.export(session, subject_id)
            for provider in ledger.personal_data_providers
        }
        entries = list(export.iter_export_rows(session.connection(), subject_id))
        close_request(request, RequestStatus.COMPLETED, staff_email)
        audit.record(
            session, staff_id, StaffAction.REQUEST_ACCESS, subject_id=subject_id,
            detail=f"request {request_id}: data exported",
        )  # fmt: skip
    return {
        "subject_id": subject_id,
        "exported_at": utcnow().isoformat(),
        "request": request_id,
        "data": sections,
        "ledger": entries,
    }


def carry_out_erasure(
    database: Database, ledger: ConsentLedger, staff_id: int, staff_email: str, request_id: int
) -> None:
    """Erase the lead's personal data (every package's part, as the app is wired) and
    complete the request."""
    with database.write() as session:
        request = open_request(session, request_id)
        if request.kind != RequestKind.ERASURE:
            raise InvalidInput("this is not an erasure request")
        ledger.erase(
            session, request.subject_id, source=ConsentSource.CONSOLE,
            method=ConsentMethod.SYSTEM, source_ref=f"request-{request_id}",
        )  # fmt: skip
        close_request(request, RequestStatus.COMPLETED, staff_email)
        audit.record(
            session, staff_id, StaffAction.REQUEST_ERASE, subject_id=request.subject_id,
            detail=f"request {request_id}: personal data erased",
        )  # fmt: skip
    scrub_sqlite(database)


def refuse(database: Database, staff_id: int, staff_email: str, request_id: int, note: str) -> None:
    if not note.strip():
        raise InvalidInput("note: say why", fields={"note": "a refusal needs a reason"})
    if len(note) > MAX_NOTE:
        raise InvalidInput("note: too long", fields={"note": f"at most {MAX_NOTE} characters"})
    with database.write() as session:
        request = open_request(session, request_id)
        close_request(request, RequestStatus.REFUSED, staff_email, note)
        audit.record(
            session, staff_id, StaffAction.REQUEST_REFUSE, subject_id=request.subject_id,
            detail=f"request {request_id}: refused",
        )  # fmt: skip
