"""scoring: models, scored leads, answers, events, points, stage changes, webhook outbox

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-25

Scoring model versions are append-only (triggers refuse UPDATE and DELETE, as for form
versions). Everything else about a lead is personal data, erasable, and deleted when
the lead's consent for the gating purpose ends. No foreign keys to ``subjects``: rows
are deleted with the consent change, and appends must not wait on subject locks.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.append_only import allow_changes, forbid_changes
from zeroparty.db import UTCDateTime

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "scoring_models"


def upgrade() -> None:
    op.create_table(
        "scoring_attributes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("purposes", sa.Text(), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("consent_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_attributes")),
    )
    with op.batch_alter_table("scoring_attributes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scoring_attributes_subject_id"), ["subject_id"], unique=False
        )

    op.create_table(
        "scoring_dropped_events",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "type", name=op.f("pk_scoring_dropped_events")),
    )
    op.create_table(
        "scoring_events",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=False),
        sa.Column("consent_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_events")),
    )
    with op.batch_alter_table("scoring_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scoring_events_subject_time", ["subject_id", "occurred_at"], unique=False
        )

    op.create_table(
        "scoring_leads",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
        sa.Column("stage_since", UTCDateTime(), nullable=False),
        sa.Column("recycled_score", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_scoring_leads")),
    )
    with op.batch_alter_table("scoring_leads", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scoring_leads_stage_subject", ["stage", "subject_id"], unique=False
        )

    op.create_table(
        "scoring_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_models")),
    )
    op.create_table(
        "scoring_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("consent_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_points")),
    )
    with op.batch_alter_table("scoring_points", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scoring_points_subject_id"), ["subject_id"], unique=False
        )

    op.create_table(
        "scoring_stage_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("from_stage", sa.String(length=16), nullable=False),
        sa.Column("to_stage", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_stage_changes")),
    )
    with op.batch_alter_table("scoring_stage_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_scoring_stage_changes_subject_id"), ["subject_id"], unique=False
        )

    op.create_table(
        "scoring_webhooks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("failed_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_webhooks")),
    )
    with op.batch_alter_table("scoring_webhooks", schema=None) as batch_op:
        batch_op.create_index("ix_scoring_webhooks_due", ["next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_scoring_webhooks_subject_id"), ["subject_id"], unique=False
        )
    forbid_changes(APPEND_ONLY)


def downgrade() -> None:
    allow_changes(APPEND_ONLY)
    with op.batch_alter_table("scoring_webhooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scoring_webhooks_subject_id"))
        batch_op.drop_index("ix_scoring_webhooks_due")

    op.drop_table("scoring_webhooks")
    with op.batch_alter_table("scoring_stage_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scoring_stage_changes_subject_id"))

    op.drop_table("scoring_stage_changes")
    with op.batch_alter_table("scoring_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scoring_points_subject_id"))

    op.drop_table("scoring_points")
    op.drop_table("scoring_models")
    with op.batch_alter_table("scoring_leads", schema=None) as batch_op:
        batch_op.drop_index("ix_scoring_leads_stage_subject")

    op.drop_table("scoring_leads")
    with op.batch_alter_table("scoring_events", schema=None) as batch_op:
        batch_op.drop_index("ix_scoring_events_subject_time")

    op.drop_table("scoring_events")
    op.drop_table("scoring_dropped_events")
    with op.batch_alter_table("scoring_attributes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scoring_attributes_subject_id"))

    op.drop_table("scoring_attributes")
