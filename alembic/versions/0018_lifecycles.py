"""lead types held beside the stage: scoring_leads.lead_types (issue 19)

A lead's types (IQL, MQL, PQL, SQL-from-service, ...) are kept as JSON in its scoring
row, so that they are deleted with it when the gating consent ends. Existing leads hold
no type (NULL) and keep their stage, score and history as they are.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("scoring_leads", sa.Column("lead_types", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scoring_leads") as batch:
        batch.drop_column("lead_types")
