"""console: staff accounts, staff audit log, login attempts, verification runs,
data-subject requests

Revision ID: 0007
Revises: 0002
Create Date: 2026-11-25

The staff audit log is append-only (triggers). Data-subject requests belong to the
consent ledger (``consent_ledger.requests``) and are created here with the console that
works them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.append_only import allow_changes, forbid_changes
from zeroparty.db import UTCDateTime

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("session_generation", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("password_set_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_users")),
        sa.UniqueConstraint("email", name=op.f("uq_console_users_email")),
    )
    op.create_table(
        "console_audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["console_users.id"],
            name=op.f("fk_console_audit_log_user_id_console_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_audit_log")),
    )
    with op.batch_alter_table("console_audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_console_audit_log_subject", ["subject_id", "id"], unique=False)
    op.create_table(
        "console_login_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("client_key", sa.String(length=64), nullable=False),
        sa.Column("attempted_at", UTCDateTime(), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_login_attempts")),
    )
    with op.batch_alter_table("console_login_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_console_login_attempts_account", ["account_key", "attempted_at"], unique=False
        )
        batch_op.create_index(
            "ix_console_login_attempts_client", ["client_key", "attempted_at"], unique=False
        )
    op.create_table(
        "console_verification_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("started_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=True),
        sa.Column("problem", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["started_by"],
            ["console_users.id"],
            name=op.f("fk_console_verification_runs_started_by_console_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_verification_runs")),
    )
    op.create_table(
        "data_subject_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("handled_by", sa.String(length=320), nullable=True),
        sa.Column("handled_at", UTCDateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name=op.f("fk_data_subject_requests_subject_id_subjects"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_subject_requests")),
    )
    with op.batch_alter_table("data_subject_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_data_subject_requests_status_due", ["status", "due_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_data_subject_requests_subject_id"), ["subject_id"], unique=False
        )
    forbid_changes("console_audit_log")


def downgrade() -> None:
    allow_changes("console_audit_log")
    with op.batch_alter_table("data_subject_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_subject_requests_subject_id"))
        batch_op.drop_index("ix_data_subject_requests_status_due")
    op.drop_table("data_subject_requests")
    op.drop_table("console_verification_runs")
    with op.batch_alter_table("console_login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_console_login_attempts_client")
        batch_op.drop_index("ix_console_login_attempts_account")
    op.drop_table("console_login_attempts")
    with op.batch_alter_table("console_audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_console_audit_log_subject")
    op.drop_table("console_audit_log")
    op.drop_table("console_users")
