"""Data-subject requests of every kind the GDPR and the CCPA name: a queue with legal
deadlines.

Kinds: access (GDPR Art. 15, CCPA 1798.110), portability (Art. 20), erasure (Art. 17,
1798.105), rectification (Art. 16, 1798.106), restriction (Art. 18), objection (Art. 21),
opt-out of sale/sharing (1798.120) and limiting the use of sensitive personal
information (1798.121).

A request is recorded when it is received: by the preference center when a lead
downloads or erases their own data (completed at once), by ``zeroparty erase``
(completed at once), by the public request page once the person proved control of the
address, or by staff who enter one they got by mail or phone. A request about an address
we hold nothing on is recorded too, closed at once as ``nothing_held`` (the answer the
law asks for), without the address: only its SHA-256 is kept.

Its deadline follows the regime of the lead's recorded jurisdiction: 45 days for a US
jurisdiction (CCPA, Cal. Civ. Code 1798.130(a)(2)), otherwise one calendar month (GDPR
Art. 12(3)), so an unknown jurisdiction never gets more time than the GDPR allows. A
deadline may be extended once, with a reason: by two further months (GDPR Art. 12(3))
or by 45 further days (CCPA 1798.130(a)(2)).

The table names the lead by pseudonymous id only: it survives the erasure it records.
Closed requests are kept at least 24 months (CCPA regulations § 7101(a)) and then
purged by retention (:func:`purge_closed`).
"""

from __future__ import annotations

import calendar
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    case,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from consent_ledger.models import Subject
from consent_ledger.subjects import find_subject_id
from zeroparty.db import Base, UTCDateTime, utcnow
from zeroparty.errors import Conflict, InvalidInput, NotFound

CCPA_DAYS = 45
DUE_SOON_DAYS = 7
"""An open request is flagged "due soon" this many days before its deadline."""
MAX_NOTE = 2000
CONFIRMATION_HOURS = 24
"""How long the public request page's mailed link confirms a request."""


class RequestKind(StrEnum):
    ACCESS = "access"
    PORTABILITY = "portability"
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    OPT_OUT_SALE = "opt_out_sale"
    LIMIT_SENSITIVE = "limit_sensitive"


KIND_TITLES: dict[RequestKind, str] = {
    RequestKind.ACCESS: "access (a copy of their data)",
    RequestKind.PORTABILITY: "portability (their data, machine-readable)",
    RequestKind.ERASURE: "erasure (delete their personal data)",
    RequestKind.RECTIFICATION: "rectification (correct their data)",
    RequestKind.RESTRICTION: "restriction of processing",
    RequestKind.OBJECTION: "objection to processing (incl. direct marketing)",
    RequestKind.OPT_OUT_SALE: "opt-out of sale/sharing (CCPA)",
    RequestKind.LIMIT_SENSITIVE: "limit use of sensitive personal information (CCPA)",
}


class RequestChannel(StrEnum):
    PREFERENCE_CENTER = "preference_center"
    STAFF = "staff"
    CLI = "cli"
    REQUEST_PAGE = "request_page"


class RequestStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    REFUSED = "refused"
    NOTHING_HELD = "nothing_held"
    """Closed at once: we hold no personal data about the address named."""


class Regime(StrEnum):
    GDPR = "gdpr"
    CCPA = "ccpa"


class DataSubjectRequest(Base):
    __tablename__ = "data_subject_requests"
    __table_args__ = (Index("ix_data_subject_requests_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(ForeignKey("subjects.id"), index=True)
    email_sha256: Mapped[str | None] = mapped_column(String(64))
    """The requester's normalised address, hashed: set where no lead holds it."""
    channel: Mapped[str] = mapped_column(String(32))
    regime: Mapped[str] = mapped_column(String(8), default=Regime.GDPR.value)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    handled_by: Mapped[str | None] = mapped_column(String(320))
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")
    confirmation_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The nonce of the public page's mailed link that confirmed it: a link records once."""


def add_months(moment: datetime, months: int = 1) -> datetime:
    """The same day ``months`` later, or that month's last day when it has none
    (31 January → 28/29 February), as GDPR Art. 12(3) counts a month."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def add_one_month(moment: datetime) -> datetime:
    return add_months(moment, 1)


def regime_of(jurisdiction: str | None) -> Regime:
    return Regime.CCPA if jurisdiction and jurisdiction.upper().startswith("US") else Regime.GDPR


def due_date(received_at: datetime, jurisdiction: str | None) -> datetime:
    """The legal deadline for a request received at ``received_at``."""
    if regime_of(jurisdiction) is Regime.CCPA:
        return received_at + timedelta(days=CCPA_DAYS)
    return add_one_month(received_at)


def extended_due(due_at: datetime, regime: str) -> datetime:
    """The deadline after its one extension: +2 months (GDPR), +45 days (CCPA)."""
    if regime == Regime.CCPA:
        return due_at + timedelta(days=CCPA_DAYS)
    return add_months(due_at, 2)


def email_digest(normalised_email: str) -> str:
    return hashlib.sha256(normalised_email.encode()).hexdigest()


def parse_kind(raw: str) -> RequestKind:
    """A kind by its value; refused by name otherwise."""
    try:
        return RequestKind(raw.strip())
    except ValueError as exc:
        choices = ", ".join(kind.value for kind in RequestKind)
        raise InvalidInput(f"kind: one of {choices}", fields={"kind": f"one of {choices}"}) from exc


def check_note(note: str, name: str = "note") -> str:
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"{name}: too long", fields={name: f"at most {MAX_NOTE} characters"})
    return note


@dataclass(frozen=True, slots=True)
class RequestView:
    request: DataSubjectRequest
    overdue: bool
    due_soon: bool = False


def _flags(request: DataSubjectRequest, now: datetime) -> RequestView:
    is_open = request.status == RequestStatus.OPEN
    overdue = is_open and request.due_at < now
    soon = is_open and not overdue and request.due_at < now + timedelta(days=DUE_SOON_DAYS)
    return RequestView(request, overdue, soon)


def record_request(
    session: Session,
    subject_id: str | None,
    kind: RequestKind,
    channel: RequestChannel,
    *,
    received_at: datetime | None = None,
    handled_by: str | None = None,
    completed: bool = False,
    note: str = "",
    email: str | None = None,
    confirmation_id: str | None = None,
) -> DataSubjectRequest:
    """Record a request (in the caller's transaction); ``completed`` for one already done
    (self-service, the CLI). ``subject_id`` ``None``: nobody we hold data on; ``email``
    (normalised) is then kept as its hash only and the request is closed as
    ``nothing_held``."""
    jurisdiction: str | None = None
    if subject_id is not None:
        subject = session.get(Subject, subject_id)
        if subject is None:
            raise NotFound("no such lead")
        jurisdiction = subject.jurisdiction
    now = utcnow()
    received = received_at or now
    if received > now + timedelta(minutes=5):
        raise InvalidInput(
            "received: a request cannot be received in the future",
            fields={"received_at": "must not be in the future"},
        )
    check_note(note)
    status = RequestStatus.COMPLETED if completed else RequestStatus.OPEN
    if subject_id is None:
        status = RequestStatus.NOTHING_HELD
    closed = status is not RequestStatus.OPEN
    request = DataSubjectRequest(
        kind=kind.value,
        subject_id=subject_id,
        email_sha256=email_digest(email) if email and subject_id is None else None,
        channel=channel.value,
        regime=regime_of(jurisdiction).value,
        received_at=received,
        due_at=due_date(received, jurisdiction),
        status=status.value,
        handled_by=(handled_by or channel.value) if closed else None,
        handled_at=now if closed else None,
        note=note,
        confirmation_id=confirmation_id,
        extension_reason="",
    )
    session.add(request)
    session.flush()
    return request


def open_request(session: Session, request_id: int) -> DataSubjectRequest:
    """The request, locked for processing; refused unless it is still open."""
    request = session.get(DataSubjectRequest, request_id, with_for_update=True)
    if request is None:
        raise NotFound("no such request")
    if request.status != RequestStatus.OPEN:
        raise Conflict(f"this request is already {request.status.replace('_', ' ')}")
    return request


def get_request(session: Session, request_id: int) -> RequestView:
    request = session.get(DataSubjectRequest, request_id)
    if request is None:
        raise NotFound("no such request")
    return _flags(request, utcnow())


def close_request(
    request: DataSubjectRequest, status: RequestStatus, handled_by: str, note: str = ""
) -> None:
    request.status = status.value
    request.handled_by = handled_by
    request.handled_at = utcnow()
    if note:
        request.note = (request.note + "\n" + note).strip()


def extend_deadline(session: Session, request_id: int, reason: str) -> DataSubjectRequest:
    """Extend an open request's deadline, once, for the reason given (the law asks
    that the person be told why within the first period: GDPR Art. 12(3), CCPA
    1798.130(a)(2)); refused once past the deadline it extends."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("reason: say why", fields={"reason": "an extension needs a reason"})
    check_note(reason, "reason")
    request = open_request(session, request_id)
    if request.extended_at is not None:
        raise Conflict("this request's deadline was extended already; the law allows it once")
    now = utcnow()
    if request.due_at < now:
        raise Conflict("the deadline has passed; it can no longer be extended")
    request.due_at = extended_due(request.due_at, request.regime)
    request.extended_at = now
    request.extension_reason = reason
    return request


def list_requests(
    session: Session, *, status: RequestStatus | None = None, limit: int = 200
) -> list[RequestView]:
    """Requests, open and most urgent first, then the latest handled."""
    now = utcnow()
    stmt = select(DataSubjectRequest)
    if status is not None:
        stmt = stmt.where(DataSubjectRequest.status == status.value)
    is_open = case((DataSubjectRequest.status == RequestStatus.OPEN.value, 0), else_=1)
    stmt = stmt.order_by(is_open, DataSubjectRequest.due_at, DataSubjectRequest.id.desc()).limit(
        limit
    )
    return [_flags(r, now) for r in session.scalars(stmt)]


def count_overdue(session: Session) -> int:
    stmt = select(func.count()).where(
        DataSubjectRequest.status == RequestStatus.OPEN.value,
        DataSubjectRequest.due_at < utcnow(),
    )
    return int(session.scalar(stmt) or 0)


def purge_closed(session: Session, before: datetime, *, dry_run: bool = False) -> int:
    """Delete requests closed before ``before`` (retention); how many. Open requests are
    never purged."""
    where = (
        DataSubjectRequest.status != RequestStatus.OPEN.value,
        DataSubjectRequest.handled_at < before,
    )
    if dry_run:
        return int(session.scalar(select(func.count()).where(*where)) or 0)
    result = session.execute(delete(DataSubjectRequest).where(*where))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the public request page


class RequestConfirmation(Base):
    """A request asked for on the public page, waiting for its mailed link to be
    followed. Holds the address it was mailed to (needed to find the lead once the
    person proved control of it) for at most :data:`CONFIRMATION_HOURS`: deleted when
    confirmed, purged once expired (:func:`purge_confirmations`)."""

    __tablename__ = "data_subject_request_confirmations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def start_confirmation(session: Session, email: str, kind: RequestKind) -> str:
    """A pending request for the normalised ``email``; the nonce its link carries. Never
    looks the address up: the work is the same for a stranger's address and a lead's."""
    nonce = secrets.token_hex(16)
    session.add(RequestConfirmation(id=nonce, email=email, kind=kind.value, requested_at=utcnow()))
    return nonce


@dataclass(frozen=True, slots=True)
class Confirmed:
    request: DataSubjectRequest
    replayed: bool
    """The link had recorded this request before: nothing new recorded."""


class ConfirmationGone(NotFound):
    """The link's pending request is no longer there (expired and purged) and recorded
    nothing."""

    status_code = 410
    code = "request_link_expired"


def confirm(session: Session, nonce: str) -> Confirmed:
    """Record the request a followed link confirms, once: a second use finds the request
    the first recorded. About an address no lead holds, recorded as ``nothing_held``."""
    earlier = session.scalar(
        select(DataSubjectRequest).where(DataSubjectRequest.confirmation_id == nonce)
    )
    if earlier is not None:
        return Confirmed(earlier, True)
    pending = session.get(RequestConfirmation, nonce, with_for_update=True)
    if pending is None:  # perhaps confirmed by a concurrent use while this one waited
        earlier = session.scalar(
            select(DataSubjectRequest).where(DataSubjectRequest.confirmation_id == nonce)
        )
        if earlier is not None:
            return Confirmed(earlier, True)
    if pending is None or pending.requested_at < utcnow() - timedelta(hours=CONFIRMATION_HOURS):
        raise ConfirmationGone("this link has expired; ask again on the request page")
    subject_id = find_subject_id(session, pending.email)
    request = record_request(
        session, subject_id, RequestKind(pending.kind), RequestChannel.REQUEST_PAGE,
        received_at=pending.requested_at, email=pending.email, confirmation_id=nonce,
        handled_by="request page",
    )  # fmt: skip
    session.delete(pending)
    return Confirmed(request, False)


def purge_confirmations(session: Session, *, dry_run: bool = False) -> int:
    """Delete pending requests whose link expired; how many."""
    where = RequestConfirmation.requested_at < utcnow() - timedelta(hours=CONFIRMATION_HOURS)
    if dry_run:
        return int(session.scalar(select(func.count()).where(where)) or 0)
    result = session.execute(delete(RequestConfirmation).where(where))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
