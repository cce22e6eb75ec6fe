"""Data-subject requests (GDPR Art. 15 and 17, CCPA access and deletion): a queue with
legal deadlines.

A request is recorded when it is received: by the preference center when a lead
downloads or erases their own data (completed at once), or by staff who enter one they
got by mail or phone (then processed from the console). Its deadline follows the lead's
recorded jurisdiction: 45 days for a US jurisdiction (CCPA, Cal. Civ. Code 1798.130),
otherwise one calendar month (GDPR Art. 12(3)), the shorter one, so an unknown
jurisdiction never gets more time than the GDPR allows.

The table names the lead by pseudonymous id only: it survives the erasure it records.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, case, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from consent_ledger.models import Subject
from zeroparty.db import Base, UTCDateTime, utcnow
from zeroparty.errors import Conflict, InvalidInput, NotFound

CCPA_DAYS = 45


class RequestKind(StrEnum):
    ACCESS = "access"
    ERASURE = "erasure"


class RequestChannel(StrEnum):
    PREFERENCE_CENTER = "preference_center"
    STAFF = "staff"


class RequestStatus(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    REFUSED = "refused"


class DataSubjectRequest(Base):
    __tablename__ = "data_subject_requests"
    __table_args__ = (Index("ix_data_subject_requests_status_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    handled_by: Mapped[str | None] = mapped_column(String(320))
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")


def add_one_month(moment: datetime) -> datetime:
    """The same day of the next month, or that month's last day when it has none
    (31 January → 28/29 February), as GDPR Art. 12(3) counts a month."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def due_date(received_at: datetime, jurisdiction: str | None) -> datetime:
    """The legal deadline for a request received at ``received_at``."""
    if jurisdiction and jurisdiction.upper().startswith("US"):
        return received_at + timedelta(days=CCPA_DAYS)
    return add_one_month(received_at)


@dataclass(frozen=True, slots=True)
class RequestView:
    request: DataSubjectRequest
    overdue: bool


def record_request(
    session: Session,
    subject_id: str,
    kind: RequestKind,
    channel: RequestChannel,
    *,
    received_at: datetime | None = None,
    handled_by: str | None = None,
    completed: bool = False,
    note: str = "",
) -> DataSubjectRequest:
    """Record a request (in the caller's transaction); ``completed`` for one already done
    (self-service in the preference center)."""
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise NotFound("no such lead")
    now = utcnow()
    received = received_at or now
    if received > now + timedelta(minutes=5):
        raise InvalidInput(
            "received: a request cannot be received in the future",
            fields={"received_at": "must not be in the future"},
        )
    request = DataSubjectRequest(
        kind=kind.value,
        subject_id=subject_id,
        channel=channel.value,
        received_at=received,
        due_at=due_date(received, subject.jurisdiction),
        status=(RequestStatus.COMPLETED if completed else RequestStatus.OPEN).value,
        handled_by=handled_by if completed else None,
        handled_at=now if completed else None,
        note=note,
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
        raise Conflict(f"this request is already {request.status}")
    return request


def close_request(
    request: DataSubjectRequest, status: RequestStatus, handled_by: str, note: str = ""
) -> None:
    request.status = status.value
    request.handled_by = handled_by
    request.handled_at = utcnow()
    if note:
        request.note = (request.note + "\n" + note).strip()


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
    return [
        RequestView(r, r.status == RequestStatus.OPEN and r.due_at < now)
        for r in session.scalars(stmt)
    ]


def count_overdue(session: Session) -> int:
    stmt = select(func.count()).where(
        DataSubjectRequest.status == RequestStatus.OPEN.value,
        DataSubjectRequest.due_at < utcnow(),
    )
    return int(session.scalar(stmt) or 0)
