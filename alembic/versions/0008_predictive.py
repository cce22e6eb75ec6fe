"""predictive score: outcomes sales recorded, trained models (append-only)

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-25

``scoring_outcomes`` is personal data (one row per lead, erasable, deleted when the
lead's gating consent ends). ``scoring_predictive_models`` holds every training, the
model and its card as JSON, and is append-only (triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.append_only import allow_changes, forbid_changes
from zeroparty.db import UTCDateTime

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "scoring_predictive_models"


def upgrade() -> None:
    op.create_table(
        "scoring_outcomes",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_scoring_outcomes")),
    )
    op.create_table(
        "scoring_predictive_models",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("scoring_model_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_predictive_models")),
    )
    forbid_changes(APPEND_ONLY)


def downgrade() -> None:
    allow_changes(APPEND_ONLY)
    op.drop_table("scoring_predictive_models")
    op.drop_table("scoring_outcomes")
