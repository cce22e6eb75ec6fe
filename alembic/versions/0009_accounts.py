"""scoring: BANT qualification history and hand-off acknowledgements

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-25

Accounts are computed at read time from ``scoring_leads`` and current consent, so they
need no table. ``scoring_qualification`` keeps every BANT value sales recorded (who,
when); it is personal data, deleted with the lead's gating consent and on erasure.
``scoring_handoff_acks`` records which hand-off (lead, stage, entry time) sales
acknowledged, by whom and when, for the SLA; erased with the lead.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.db import UTCDateTime

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scoring_qualification",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("consent_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_qualification")),
    )
    with op.batch_alter_table("scoring_qualification", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scoring_qualification_subject_field", ["subject_id", "field"], unique=False
        )

    op.create_table(
        "scoring_handoff_acks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("entered_at", UTCDateTime(), nullable=False),
        sa.Column("acked_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_handoff_acks")),
        sa.UniqueConstraint(
            "subject_id",
            "stage",
            "entered_at",
            name=op.f("uq_scoring_handoff_acks_subject_id"),
        ),
    )
    with op.batch_alter_table("scoring_handoff_acks", schema=None) as batch_op:
        batch_op.create_index("ix_scoring_handoff_acks_acked_at", ["acked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scoring_handoff_acks", schema=None) as batch_op:
        batch_op.drop_index("ix_scoring_handoff_acks_acked_at")
    op.drop_table("scoring_handoff_acks")
    with op.batch_alter_table("scoring_qualification", schema=None) as batch_op:
        batch_op.drop_index("ix_scoring_qualification_subject_field")
    op.drop_table("scoring_qualification")
