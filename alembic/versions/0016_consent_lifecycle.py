"""consent lifecycle (issue 16): notice versions say whether they changed consent

``notice_versions.change``: ``initial``, ``material`` (grants under earlier versions go
stale and are expired by the lifecycle job) or ``editorial`` (consent kept); existing
rows are ``material``, the safe reading of a change nobody classified.
``notice_versions.change_summary``: what changed, in words (optional).
``purposes.expires_after_days`` / ``remind_before_days``: a grant lapses after so many
days (an ``expired`` entry appended by the lifecycle job), with an optional reminder;
``consent_expiry_reminders``: the reminder sent per lead and purpose (one per grant).

Plain ADD/DROP COLUMN (no table rebuild): the append-only triggers on notice_versions
stay in place on SQLite.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.db import UTCDateTime

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "notice_versions",
        sa.Column("change", sa.String(length=16), server_default="material", nullable=False),
    )
    op.add_column("notice_versions", sa.Column("change_summary", sa.Text(), nullable=True))
    op.add_column("purposes", sa.Column("expires_after_days", sa.Integer(), nullable=True))
    op.add_column("purposes", sa.Column("remind_before_days", sa.Integer(), nullable=True))
    op.create_table(
        "consent_expiry_reminders",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("purpose_key", sa.String(length=64), nullable=False),
        sa.Column("grant_since", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["purpose_key"],
            ["purposes.key"],
            name=op.f("fk_consent_expiry_reminders_purpose_key_purposes"),
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name=op.f("fk_consent_expiry_reminders_subject_id_subjects"),
        ),
        sa.PrimaryKeyConstraint(
            "subject_id", "purpose_key", name=op.f("pk_consent_expiry_reminders")
        ),
    )


def downgrade() -> None:
    op.drop_table("consent_expiry_reminders")
    op.drop_column("purposes", "remind_before_days")
    op.drop_column("purposes", "expires_after_days")
    op.drop_column("notice_versions", "change_summary")
    op.drop_column("notice_versions", "change")
