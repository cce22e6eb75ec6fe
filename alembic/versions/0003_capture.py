"""capture: form and quiz versions, submissions, answers, idempotency, rate counters

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Published form and quiz versions are append-only (triggers refuse UPDATE and DELETE,
as for notice versions); answers and submissions are personal data and erasable.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.append_only import allow_changes, forbid_changes
from zeroparty.db import UTCDateTime

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "capture_definitions"


def upgrade() -> None:
    op.create_table(
        "capture_definitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_definitions")),
        sa.UniqueConstraint("slug", "version", name=op.f("uq_capture_definitions_slug")),
    )
    op.create_table(
        "capture_idempotency",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_capture_idempotency")),
    )
    with op.batch_alter_table("capture_idempotency", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_capture_idempotency_submission_id"), ["submission_id"], unique=False
        )
    op.create_table(
        "capture_rate_counters",
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name=op.f("pk_capture_rate_counters")),
    )
    op.create_table(
        "capture_submissions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["capture_definitions.id"],
            name=op.f("fk_capture_submissions_definition_id_capture_definitions"),
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["subjects.id"], name=op.f("fk_capture_submissions_subject_id_subjects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_submissions")),
    )
    with op.batch_alter_table("capture_submissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_capture_submissions_subject_id"), ["subject_id"], unique=False
        )
    op.create_table(
        "capture_answers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=True),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["subjects.id"], name=op.f("fk_capture_answers_subject_id_subjects")
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["capture_submissions.id"],
            name=op.f("fk_capture_answers_submission_id_capture_submissions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_answers")),
    )
    with op.batch_alter_table("capture_answers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_capture_answers_subject_id"), ["subject_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_capture_answers_submission_id"), ["submission_id"], unique=False
        )
    forbid_changes(APPEND_ONLY)


def downgrade() -> None:
    allow_changes(APPEND_ONLY)
    with op.batch_alter_table("capture_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_answers_submission_id"))
        batch_op.drop_index(batch_op.f("ix_capture_answers_subject_id"))
    op.drop_table("capture_answers")
    with op.batch_alter_table("capture_submissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_submissions_subject_id"))
    op.drop_table("capture_submissions")
    op.drop_table("capture_rate_counters")
    with op.batch_alter_table("capture_idempotency", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_idempotency_submission_id"))
    op.drop_table("capture_idempotency")
    op.drop_table("capture_definitions")
