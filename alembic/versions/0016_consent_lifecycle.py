"""consent lifecycle (issue 16): notice versions say whether they changed consent

``notice_versions.change``: ``initial``, ``material`` (grants under earlier versions go
stale and are expired by the lifecycle job) or ``editorial`` (consent kept); existing
rows are ``material``, the safe reading of a change nobody classified.
``notice_versions.change_summary``: what changed, in words (optional).

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


def downgrade() -> None:
    op.drop_column("notice_versions", "change_summary")
    op.drop_column("notice_versions", "change")
