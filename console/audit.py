"""The staff audit log: who looked at or exported whose data, and what they changed.

Append-only (database triggers). Rows name leads by pseudonymous id and never hold what
was typed into a search box (an email typed there would outlive the lead's erasure).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from console.models import StaffAuditEntry, StaffUser
from zeroparty.db import utcnow


class StaffAction(StrEnum):
    LOGIN = "login"
    LOGIN_REFUSED = "login.refused"
    LOGOUT = "logout"
    SESSION_END = "session.end"
    SESSIONS_END_ALL = "session.end-all"
    TWO_FACTOR_ON = "two-factor.on"
    TWO_FACTOR_OFF = "two-factor.off"
    RECOVERY_CODES_NEW = "two-factor.new-codes"
    PASSWORD_SET = "password.set"  # noqa: S105  (an action name, not a password)
    LEAD_SEARCH = "lead.search"
    LEAD_VIEW = "lead.view"
    LEDGER_VIEW = "ledger.view"
    LEDGER_EXPORT = "ledger.export"
    PROOF_VIEW = "proof.view"
    RECEIPT_DOWNLOAD = "receipt.download"
    VERIFY_RUN = "verify.run"
    REQUEST_CREATE = "request.create"
    REQUEST_ACCESS = "request.access"
    REQUEST_ERASE = "request.erase"
    REQUEST_REFUSE = "request.refuse"
    REQUEST_EXTEND = "request.extend"
    REQUEST_WITHDRAW = "request.withdraw"
    REQUEST_COMPLETE = "request.complete"
    ACCOUNT_VIEW = "account.view"
    HANDOFF_ACK = "handoff.ack"
    SLA_VIEW = "sla.view"
    LEAD_QUALIFY = "lead.qualify"
    LEAD_OUTCOME = "lead.outcome"


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: datetime
    user_email: str | None
    action: str
    subject_id: str | None
    detail: str


def record(
    session: Session,
    user_id: int | None,
    action: StaffAction,
    *,
    subject_id: str | None = None,
    detail: str = "",
) -> None:
    session.add(
        StaffAuditEntry(
            at=utcnow(),
            user_id=user_id,
            action=action.value,
            subject_id=subject_id,
            detail=detail[:2000],
        )
    )


def record_read(session: Session, user_id: int | None, action: str, detail: str) -> None:
    """A bulk read made through another package (an API key's audience or change-feed
    page, an audience export), named by that package's action (``api.changes``, ...):
    the :data:`zeroparty.wiring.StaffLogWriter` the console's wiring offers."""
    session.add(
        StaffAuditEntry(at=utcnow(), user_id=user_id, action=action[:32], detail=detail[:2000])
    )


def recent(
    session: Session, *, subject_id: str | None = None, before: int | None = None, limit: int = 100
) -> list[AuditRow]:
    stmt = (
        select(StaffAuditEntry, StaffUser.email)
        .outerjoin(StaffUser, StaffUser.id == StaffAuditEntry.user_id)
        .order_by(StaffAuditEntry.id.desc())
        .limit(limit)
    )
    if subject_id is not None:
        stmt = stmt.where(StaffAuditEntry.subject_id == subject_id)
    if before is not None:
        stmt = stmt.where(StaffAuditEntry.id < before)
    return [
        AuditRow(e.id, e.at, email, e.action, e.subject_id, e.detail)
        for e, email in session.execute(stmt)
    ]
