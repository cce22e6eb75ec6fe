"""capture: answers waiting for proof of address control

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

A submission under the address of an existing lead waits in
``capture_pending_submissions`` until the confirmation link mailed to that address is
followed, or it expires (personal data: erased with the lead).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.db import UTCDateTime

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0003"  # capture_definitions is created there


def upgrade() -> None:
    op.create_table(
        "capture_pending_submissions",
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["capture_definitions.id"],
            name=op.f("fk_capture_pending_submissions_definition_id_capture_definitions"),
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name=op.f("fk_capture_pending_submissions_subject_id_subjects"),
        ),
        sa.PrimaryKeyConstraint("submission_id", name=op.f("pk_capture_pending_submissions")),
    )
    with op.batch_alter_table("capture_pending_submissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_capture_pending_submissions_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_capture_pending_submissions_subject_id"), ["subject_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("capture_pending_submissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_pending_submissions_subject_id"))
        batch_op.drop_index(batch_op.f("ix_capture_pending_submissions_expires_at"))
    op.drop_table("capture_pending_submissions")
