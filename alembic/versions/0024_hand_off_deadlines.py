"""scoring leads by stage and the time they entered it

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04

``ix_scoring_leads_stage_since`` on ``scoring_leads (stage, stage_since)``: the console
lists the most overdue hand-offs of a stage first (``scoring.sla.most_urgent``), which
is that stage's clocks in the order they started.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_scoring_leads_stage_since", "scoring_leads", ["stage", "stage_since"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_scoring_leads_stage_since", table_name="scoring_leads")
