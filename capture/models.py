"""Tables of capture.

``capture_definitions`` is append-only (database triggers refuse UPDATE and DELETE): a
published form or quiz version is immutable, and every submission points at the one
it was made on. Personal data lives in ``capture_submissions`` (outcome, tags, score)
and ``capture_answers``; erasure deletes a subject's rows from both
(:mod:`capture.personal`), adding their number per form version and week to
``capture_erased_submissions`` (a count, for opt-in rates; no subject).
``capture_pending_submissions`` holds what was sent under the address of an existing
lead until the sender shows control of it (or it expires): personal data too, erased
and exported with the rest. ``capture_rate_counters`` holds keyed hashes of client
addresses, never the addresses.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from zeroparty.db import Base, UTCDateTime, utcnow

HASH_HEX = 64
SUBMISSION_ID_LENGTH = 32


class DefinitionVersion(Base):
    """One immutable published version of a form or quiz."""

    __tablename__ = "capture_definitions"
    __table_args__ = (UniqueConstraint("slug", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    slug: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(HASH_HEX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Submission(Base):
    """An accepted submission. Quiz results (outcome, tags, score) are kept only when
    every answer they derive from was kept (per-field purpose binding)."""

    __tablename__ = "capture_submissions"

    id: Mapped[str] = mapped_column(String(SUBMISSION_ID_LENGTH), primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("capture_definitions.id"))
    subject_id: Mapped[str | None] = mapped_column(ForeignKey("subjects.id"), index=True)
    locale: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(64))
    tags: Mapped[str | None] = mapped_column(Text)
    score: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ErasedSubmissions(Base):
    """How many submissions of a form version in a week were erased: a count, no subject.

    Erasure deletes a lead's submissions (personal data) but not the ledger's grants
    (the proof of consent), so the opt-in rates the console reports would count the
    grants without the boxes shown with them. This count, added to at erasure, keeps
    the boxes shown in the denominator (:func:`capture.history.submission_weeks`).
    """

    __tablename__ = "capture_erased_submissions"

    definition_id: Mapped[int] = mapped_column(
        ForeignKey("capture_definitions.id"), primary_key=True
    )
    week: Mapped[date] = mapped_column(Date, primary_key=True)
    submissions: Mapped[int] = mapped_column(Integer)


class Answer(Base):
    """One kept answer (one row per chosen value of a multiple choice)."""

    __tablename__ = "capture_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("capture_submissions.id"), index=True)
    subject_id: Mapped[str | None] = mapped_column(ForeignKey("subjects.id"), index=True)
    field: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)


class IdempotencyRecord(Base):
    """The answer given to a submission, kept so a retry gets it again.

    ``key`` is SHA-256 over the form and the client's idempotency key; ``request_sha256``
    over the normalised submission, so the same key with another body is refused.
    """

    __tablename__ = "capture_idempotency"

    key: Mapped[str] = mapped_column(String(HASH_HEX), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(HASH_HEX))
    submission_id: Mapped[str] = mapped_column(String(SUBMISSION_ID_LENGTH), index=True)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RateCounter(Base):
    """Accepted submissions per bucket (keyed hash of client address and form) and
    fixed window: shared by every worker process and host through the database."""

    __tablename__ = "capture_rate_counters"

    bucket: Mapped[str] = mapped_column(String(HASH_HEX), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class PendingSubmission(Base):
    """A submission under an existing lead's address, waiting for proof of control.

    Nothing of it reaches the lead (no answers, results, grants or refusals) until the
    confirmation link mailed to that address is followed; ``payload`` (JSON) is what is
    needed to apply it then. Rows past ``expires_at`` are never applied and are deleted
    by a periodic job.
    """

    __tablename__ = "capture_pending_submissions"

    submission_id: Mapped[str] = mapped_column(String(SUBMISSION_ID_LENGTH), primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("capture_definitions.id"))
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), index=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
