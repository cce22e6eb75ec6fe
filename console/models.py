"""Tables of the console.

``console_audit_log`` is append-only (database triggers refuse UPDATE and DELETE): who
among the staff looked at or exported whose data, and what they changed. It names leads
by their pseudonymous id only, never by email, so it survives an erasure without keeping
personal data. ``console_login_attempts`` holds keyed hashes of the address tried and of
the client address, never either in clear.

``console_sessions`` and ``console_pending_logins`` hold only the SHA-256 of the random
ids their cookies carry, never an id itself: a copy of the database opens no session.
``console_recovery_codes`` holds SHA-256 hashes of random codes (high entropy, so no
slow hash is needed). ``console_two_factor.secret`` is the TOTP secret as is: staff
personal data, which a database reader could use to compute codes but not without the
password (and encrypting it under ``ZEROPARTY_SECRET_KEYS`` would lose every
authenticator when those keys rotate).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zeroparty.db import Base, UTCDateTime, utcnow

HASH_HEX = 64


class StaffUser(Base):
    """A staff account. ``session_generation`` is carried in every set-password link:
    bumping it (password set or reset) invalidates them all."""

    __tablename__ = "console_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    session_generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_set_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffSession(Base):
    """A logged-in browser. Live while not revoked, before ``expires_at`` (absolute) and
    within the idle timeout of ``last_seen_at``. ``client_network`` is the client's /24
    (IPv4) or /48 (IPv6), never its full address."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(HASH_HEX), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str] = mapped_column(String(64), default="")
    client_network: Mapped[str] = mapped_column(String(64), default="")


class PendingLogin(Base):
    """A password that was right, waiting for the second factor. Grants nothing: it
    only lets its browser send a code, a few times, for a few minutes."""

    __tablename__ = "console_pending_logins"

    token_hash: Mapped[str] = mapped_column(String(HASH_HEX), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_path: Mapped[str] = mapped_column(String(512), default="/console/")


class TwoFactor(Base):
    """An account's TOTP authenticator (RFC 6238). Unconfirmed until a first code is
    entered; ``last_time_step`` is the last accepted step, so a code is used once."""

    __tablename__ = "console_two_factor"

    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_time_step: Mapped[int | None] = mapped_column(Integer)


class RecoveryCode(Base):
    """A one-time recovery code of an account, hashed; ``used_at`` once spent."""

    __tablename__ = "console_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(HASH_HEX), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


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
