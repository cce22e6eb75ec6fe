"""Tables of the console.

``console_audit_log`` is append-only (database triggers refuse UPDATE and DELETE): who
among the staff looked at or exported whose data, and what they changed. It names leads
by their pseudonymous id only, never by email, so it survives an erasure without keeping
personal data. ``console_login_attempts`` holds keyed hashes of the address tried and of
the client address, never either in clear.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zeroparty.db import Base, UTCDateTime, utcnow

HASH_HEX = 64


class StaffUser(Base):
    """A staff account. ``session_generation`` is carried in every session cookie and
    set-password link: bumping it (logout, password change) invalidates them all."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    session_generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffAuditEntry(Base):
    """One staff action. Append-only."""

    __tablename__ = "console_audit_log"
    __table_args__ = (Index("ix_console_audit_log_subject", "subject_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("console_users.id"))
    action: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


class LoginAttempt(Base):
    """A login attempt, kept for rate limiting (keyed hashes only)."""

    __tablename__ = "console_login_attempts"
    __table_args__ = (
        Index("ix_console_login_attempts_account", "account_key", "attempted_at"),
        Index("ix_console_login_attempts_client", "client_key", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_key: Mapped[str] = mapped_column(String(HASH_HEX))
    client_key: Mapped[str] = mapped_column(String(HASH_HEX))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)


class VerificationRun(Base):
    """One run of ledger verification started from the console, with its progress."""

    __tablename__ = "console_verification_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_by: Mapped[int | None] = mapped_column(ForeignKey("console_users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16), default="")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    entries: Mapped[int | None] = mapped_column(Integer)
    problem: Mapped[str | None] = mapped_column(Text)
