"""Working the data-subject request queue from the console: entering a request received
by mail or phone (also about someone we hold nothing on), answering an access or
portability request with a download, carrying out an erasure or a withdrawal-type
request (restriction, objection, opt-out of sale/sharing, limiting sensitive data) after
an explicit confirmation, completing a rectification with what was corrected, extending
a deadline once, refusing with a reason. Every step is in the staff audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consent_ledger import export
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource, PurposeCategory
from consent_ledger.api import (
    ConsentChange,
    ConsentLedger,
    InvalidEmail,
    is_negative,
    normalise_email,
    scrub_sqlite,
)
from consent_ledger.requests import (
    DataSubjectRequest,
    RequestChannel,
    RequestKind,
    RequestStatus,
    RequestView,
    check_note,
    close_request,
    extend_deadline,
    get_request,
    open_request,
    parse_kind,
    record_request,
)
from console import audit
from console.audit import StaffAction
from zeroparty.db import Database, utcnow
from zeroparty.errors import InvalidInput

MAX_NOTE = 2000
DOWNLOAD_KINDS = (RequestKind.ACCESS, RequestKind.PORTABILITY)
WITHDRAWAL_KINDS = (
    RequestKind.RESTRICTION,
    RequestKind.OBJECTION,
    RequestKind.OPT_OUT_SALE,
    RequestKind.LIMIT_SENSITIVE,
)


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """A purpose a withdrawal-type request would change, and how."""

    purpose: str
    title: str
    action: ConsentAction


@dataclass(frozen=True, slots=True)
class RequestDetail:
    view: RequestView
    changes: list[PlannedChange]
    lead_erased: bool


def _unconfirmed(step: str) -> InvalidInput:
    return InvalidInput(
        f"confirm: tick the box to confirm {step}; it cannot be undone",
        fields={"confirm": f"confirm {step}: it cannot be undone"},
    )


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
    """A request staff received (by mail, phone, letter). About an address no lead
    holds, it is recorded and closed as ``nothing_held`` (answer the person so)."""
    request_kind = parse_kind(kind)
    check_note(note)
    try:
        address = normalise_email(email)
    except InvalidEmail as exc:
        raise InvalidInput(
            "email: not a valid address", fields={"email": "not a valid email address"}
        ) from exc
    with database.write() as session:
        subject_id = ledger.find_lead(session, address)
        request = record_request(
            session, subject_id, request_kind, RequestChannel.STAFF,
            received_at=received_at, note=note, email=address, handled_by=staff_email,
        )  # fmt: skip
        held = "" if subject_id else " (nothing held on this address)"
        audit.record(
            session, staff_id, StaffAction.REQUEST_CREATE, subject_id=subject_id,
            detail=f"request {request.id}: {request_kind.value}, entered by {staff_email}{held}",
        )  # fmt: skip
        return request


def _planned(
    ledger: ConsentLedger, session: Any, request: DataSubjectRequest
) -> list[PlannedChange]:
    """What a withdrawal-type request changes in the lead's consent."""
    kind = RequestKind(request.kind)
    if kind not in WITHDRAWAL_KINDS or request.subject_id is None:
        return []
    states = ledger.lead_states(session, request.subject_id)
    planned: list[PlannedChange] = []
    for key, title, category, *_ in ledger.purpose_facts(session):
        status, permitted, _sha = states.get(key, ("", False, None))
        if kind is RequestKind.OPT_OUT_SALE:
            # CCPA 1798.120: honoured whatever the current state, unless already a no.
            if category == PurposeCategory.SALE_OR_SHARING and not (status and is_negative(status)):
                planned.append(PlannedChange(key, title, ConsentAction.REFUSED))
        elif kind is RequestKind.LIMIT_SENSITIVE:
            # zeroparty's forms collect no sensitive categories by design; what is left to
            # limit is inferring characteristics (CCPA regs § 7027(m)): profiling.
            if category == PurposeCategory.PROFILING and permitted:
                planned.append(PlannedChange(key, title, ConsentAction.WITHDRAWN))
        elif permitted:  # restriction (Art. 18) and objection (Art. 21): everything stops
            planned.append(PlannedChange(key, title, ConsentAction.WITHDRAWN))
    return planned


def request_detail(database: Database, ledger: ConsentLedger, request_id: int) -> RequestDetail:
    with database.read() as session:
        view = get_request(session, request_id)
        changes = _planned(ledger, session, view.request) if view.request.status == "open" else []
        lead = (
            ledger.lead_card(session, view.request.subject_id) if view.request.subject_id else None
        )
        erased = lead is not None and lead.erased_at is not None
        session.expunge(view.request)
    return RequestDetail(view, changes, erased)


def access_export(
    database: Database, ledger: ConsentLedger, staff_id: int, staff_email: str, request_id: int
) -> dict[str, Any]:
    """Everything held about the lead (as the preference center's download holds it),
    and the request completed: access (Art. 15) and portability (Art. 20, JSON)."""
    with database.write() as session:
        request = open_request(session, request_id)
        if request.kind not in DOWNLOAD_KINDS:
            raise InvalidInput("this is not an access or portability request")
        subject_id = request.subject_id
        assert subject_id is not None  # only nothing-held requests have none; closed
        sections = {
            provider.name: provider.export(session, subject_id)
            for provider in ledger.personal_data_providers
        }
        entries = list(export.iter_export_rows(session.connection(), subject_id))
        close_request(request, RequestStatus.COMPLETED, staff_email)
        audit.record(
            session, staff_id, StaffAction.REQUEST_ACCESS, subject_id=subject_id,
            detail=f"request {request_id}: data exported ({request.kind})",
        )  # fmt: skip
    return {
        "subject_id": subject_id,
        "exported_at": utcnow().isoformat(),
        "request": request_id,
        "kind": request.kind,
        "data": sections,
        "ledger": entries,
    }


def carry_out_erasure(
    database: Database,
    ledger: ConsentLedger,
    staff_id: int,
    staff_email: str,
    request_id: int,
    confirmed: bool,
) -> None:
    """Erase the lead's personal data (every package's part, as the app is wired) and
    complete the request; refused unless ``confirmed``."""
    if not confirmed:
        raise _unconfirmed("the erasure")
    with database.write() as session:
        request = open_request(session, request_id)
        if request.kind != RequestKind.ERASURE or request.subject_id is None:
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


def carry_out_withdrawals(
    database: Database,
    ledger: ConsentLedger,
    staff_id: int,
    staff_email: str,
    request_id: int,
    confirmed: bool,
) -> int:
    """Restriction, objection, opt-out of sale/sharing, limiting sensitive data: the
    purposes concerned withdrawn (or refused) in the ledger, effective at once
    everywhere (SPEC rule 2), and the request completed; how many entries."""
    if not confirmed:
        raise _unconfirmed("these changes")
    with database.write() as session:
        request = open_request(session, request_id)
        if request.kind not in WITHDRAWAL_KINDS or request.subject_id is None:
            raise InvalidInput("this request is not carried out by withdrawing consent")
        planned = _planned(ledger, session, request)
        changes = [
            ConsentChange(
                subject_id=request.subject_id,
                purpose=change.purpose,
                action=change.action,
                source=ConsentSource.CONSOLE,
                method=ConsentMethod.SYSTEM,
                source_ref=f"request-{request_id}",
            )
            for change in planned
        ]
        if changes:
            ledger.record(session, changes)
        done = ", ".join(f"{c.purpose} {c.action.value}" for c in planned) or "nothing to change"
        close_request(request, RequestStatus.COMPLETED, staff_email, done)
        audit.record(
            session, staff_id, StaffAction.REQUEST_WITHDRAW, subject_id=request.subject_id,
            detail=f"request {request_id}: {request.kind}: {done}",
        )  # fmt: skip
    return len(changes)


def complete_rectification(
    database: Database,
    staff_id: int,
    staff_email: str,
    request_id: int,
    note: str,
    confirmed: bool,
) -> None:
    """A rectification is done by hand where the data lives; completed with what was
    corrected (required)."""
    if not note.strip():
        raise InvalidInput("note: say what was corrected", fields={"note": "what was corrected"})
    check_note(note)
    if not confirmed:
        raise _unconfirmed("the completion")
    with database.write() as session:
        request = open_request(session, request_id)
        if request.kind != RequestKind.RECTIFICATION:
            raise InvalidInput("this is not a rectification request")
        close_request(request, RequestStatus.COMPLETED, staff_email, note)
        audit.record(
            session, staff_id, StaffAction.REQUEST_COMPLETE, subject_id=request.subject_id,
            detail=f"request {request_id}: rectification completed",
        )  # fmt: skip


def extend(
    database: Database, staff_id: int, staff_email: str, request_id: int, reason: str
) -> datetime:
    """Extend the deadline once (reason required); the new deadline."""
    with database.write() as session:
        request = extend_deadline(session, request_id, reason)
        audit.record(
            session, staff_id, StaffAction.REQUEST_EXTEND, subject_id=request.subject_id,
            detail=f"request {request_id}: deadline extended to {request.due_at:%Y-%m-%d}",
        )  # fmt: skip
        return request.due_at


def refuse(database: Database, staff_id: int, staff_email: str, request_id: int, note: str) -> None:
    if not note.strip():
        raise InvalidInput("note: say why", fields={"note": "a refusal needs a reason"})
    check_note(note)
    with database.write() as session:
        request = open_request(session, request_id)
        close_request(request, RequestStatus.REFUSED, staff_email, note)
        audit.record(
            session, staff_id, StaffAction.REQUEST_REFUSE, subject_id=request.subject_id,
            detail=f"request {request_id}: refused",
        )  # fmt: skip
