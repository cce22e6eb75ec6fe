"""console: server-side staff sessions and two-factor login

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Session and pending-login rows are keyed by the SHA-256 of the random id their cookie
carries; recovery codes are stored hashed. Sessions of the old signed-cookie kind simply
stop working: everyone logs in once more.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.db import UTCDateTime

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0007"  # console_users is created there


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["console_users.id"], name=op.f(f"fk_{table}_user_id_console_users")
    )


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("user_agent", sa.String(length=64), nullable=False),
        sa.Column("client_network", sa.String(length=64), nullable=False),
        _user_fk("console_sessions"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(
        op.f("ix_console_sessions_user_id"), "console_sessions", ["user_id"], unique=False
    )
    op.create_table(
        "console_pending_logins",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_path", sa.String(length=512), nullable=False),
        _user_fk("console_pending_logins"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_console_pending_logins")),
    )
    op.create_index(
        op.f("ix_console_pending_logins_user_id"),
        "console_pending_logins",
        ["user_id"],
        unique=False,
    )
    op.create_table(
        "console_two_factor",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("last_time_step", sa.Integer(), nullable=True),
        _user_fk("console_two_factor"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_console_two_factor")),
    )
    op.create_table(
        "console_recovery_codes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        _user_fk("console_recovery_codes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_recovery_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_console_recovery_codes_code_hash")),
    )
    op.create_index(
        op.f("ix_console_recovery_codes_user_id"),
        "console_recovery_codes",
        ["user_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_console_recovery_codes_user_id"), table_name="console_recovery_codes")
    op.drop_table("console_recovery_codes")
    op.drop_table("console_two_factor")
    op.drop_index(op.f("ix_console_pending_logins_user_id"), table_name="console_pending_logins")
    op.drop_table("console_pending_logins")
    op.drop_index(op.f("ix_console_sessions_user_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
