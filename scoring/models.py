"""Tables of scoring.

Invariant (SPEC rule 3): rows about a lead exist here only while its consent for the
model's gating purpose is live. A withdrawal, GPC opt-out, expiry or erasure deletes
``scoring_leads``, ``scoring_attributes``, ``scoring_events``, ``scoring_points`` and
``scoring_qualification`` (BANT) rows of the lead and cancels its pending webhooks in
the same transaction (:func:`scoring.services.on_consent_change`).
``scoring_dropped_events`` counts what was refused for lack of consent and names nobody.

Personal data: attributes (answers), events, points, BANT, stage changes, hand-off
acknowledgements and webhook bodies are about a person; :mod:`scoring.personal` exports
and erases them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from zeroparty.db import Base, UTCDateTime, utcnow

SUBJECT_ID = 32
EVENT_ID = 100


class ScoringModelVersion(Base):
    """One loaded scoring model, immutable; the latest is the one in force."""

    __tablename__ = "scoring_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScoredLead(Base):
    """A permissioned lead's current score and stage (no row: not scored, at the
    lifecycle's first stage, Lead by default)."""

    __tablename__ = "scoring_leads"
    __table_args__ = (
        Index("ix_scoring_leads_stage_subject", "stage", "subject_id"),
        # The console's most urgent hand-offs: a stage's clocks by when they started.
        Index("ix_scoring_leads_stage_since", "stage", "stage_since"),
    )

    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    model_id: Mapped[int | None] = mapped_column(Integer)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stage_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by a recycle: the lead moves up by threshold again only above this score.
    recycled_score: Mapped[float | None] = mapped_column(Float)
    # The lead types it holds beside its stage (JSON: type -> {"at", "by", "reason"});
    # NULL: none. Kept in this row so that they go with it when consent ends.
    lead_types: Mapped[str | None] = mapped_column(Text)


class LeadAttribute(Base):
    """A kept answer usable for scoring: the latest value(s) of a field or quiz question,
    with the purposes it was collected for (JSON list) and the permitting ledger entry."""

    __tablename__ = "scoring_attributes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    purposes: Mapped[str] = mapped_column(Text)
    source_ref: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consent_seq: Mapped[int] = mapped_column(BigInteger)


class LeadEvent(Base):
    """A behaviour event kept because consent was live when it happened. ``id`` is the
    sender's event id: a retried event is recognised and not counted twice."""

    __tablename__ = "scoring_events"
    __table_args__ = (Index("ix_scoring_events_subject_time", "subject_id", "occurred_at"),)

    id: Mapped[str] = mapped_column(String(EVENT_ID), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    properties: Mapped[str] = mapped_column(Text, default="{}")
    consent_seq: Mapped[int] = mapped_column(BigInteger)


class ScorePoint(Base):
    """One explained point of a lead's current score (see :class:`scoring.engine.Point`)."""

    __tablename__ = "scoring_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID), index=True)
    rule: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consent_seq: Mapped[int] = mapped_column(BigInteger)


class StageChange(Base):
    """Every stage move, with who or what made it and why. Erasure deletes a lead's rows."""

    __tablename__ = "scoring_stage_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID), index=True)
    from_stage: Mapped[str] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Webhook(Base):
    """The transactional outbox of hand-offs: written with the stage change, delivered by
    :func:`scoring.webhooks.dispatch_pending`. ``id`` is the Standard Webhooks
    ``webhook-id`` (the same on every retry). Exactly one of ``delivered_at``,
    ``failed_at`` (dead letter), ``cancelled_at`` ends a row."""

    __tablename__ = "scoring_webhooks"
    __table_args__ = (Index("ix_scoring_webhooks_due", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    # What the webhook says (scoring.crm_notices): the hand-off, or that a lead handed
    # off withdrew (``consent_seq``: the ledger entry) or was erased.
    event: Mapped[str] = mapped_column(
        String(40), default="lead.stage_reached", server_default="lead.stage_reached"
    )
    consent_seq: Mapped[int | None] = mapped_column(BigInteger)


class DroppedEvents(Base):
    """How many events were refused for lack of consent, per day and type. No lead."""

    __tablename__ = "scoring_dropped_events"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class Qualification(Base):
    """One BANT value sales recorded for a lead (``value`` ``None``: cleared), with who
    and when; the latest row per field is the current value, earlier rows the history.
    Like the other rows about a lead, deleted when its gating consent ends."""

    __tablename__ = "scoring_qualification"
    __table_args__ = (Index("ix_scoring_qualification_subject_field", "subject_id", "field"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID))
    field: Mapped[str] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    consent_seq: Mapped[int] = mapped_column(BigInteger)


class HandoffAck(Base):
    """Sales acknowledged a hand-off: the lead's entry into ``stage`` at ``entered_at``
    (its ``stage_since`` then), by whom and when. One row per entry. Kept, like stage
    changes, until the lead is erased."""

    __tablename__ = "scoring_handoff_acks"
    __table_args__ = (
        UniqueConstraint("subject_id", "stage", "entered_at"),
        Index("ix_scoring_handoff_acks_acked_at", "acked_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID))
    stage: Mapped[str] = mapped_column(String(16))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))


class LeadOutcome(Base):
    """How a lead's opportunity ended, as sales recorded it (won or lost): what the
    predictive score learns from. One per lead; recorded only with live consent for
    the gating purpose and deleted with the lead's other scoring rows when it ends."""

    __tablename__ = "scoring_outcomes"

    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(8))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(100))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PredictiveModelVersion(Base):
    """One training of the predictive score, append-only (triggers refuse UPDATE and
    DELETE): the model and its card as JSON, and whether it was published. The latest
    published row is the model in force. Holds weights and aggregate metrics, no lead."""

    __tablename__ = "scoring_predictive_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    scoring_model_id: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str] = mapped_column(Text)
    published: Mapped[bool] = mapped_column(Boolean)
    decision: Mapped[str] = mapped_column(Text)
