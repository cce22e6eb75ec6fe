"""capture: erased submissions counted per form version and week

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03

Erasure deletes a lead's submissions but the ledger keeps their grants; the console's
opt-in rates divided those grants by the submissions left and showed more than 100%.
``capture_erased_submissions`` keeps how many submissions of a form version and week
were erased (a count: no subject, no answer), so the boxes shown stay counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0003"  # capture_definitions is created there


def upgrade() -> None:
    op.create_table(
        "capture_erased_submissions",
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("submissions", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["capture_definitions.id"],
            name=op.f("fk_capture_erased_submissions_definition_id_capture_definitions"),
        ),
        sa.PrimaryKeyConstraint(
            "definition_id", "week", name=op.f("pk_capture_erased_submissions")
        ),
    )


def downgrade() -> None:
    op.drop_table("capture_erased_submissions")
