"""proofs

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-25

Proofs: stored Merkle subtree hashes (derived, rebuildable), signed checkpoints
(append-only: a published tree head is never changed), and the site's identity for
consent receipts.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.append_only import allow_changes, forbid_changes
from zeroparty.db import UTCDateTime

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_ledger_checkpoints")),
    )
    op.create_table(
        "merkle_nodes",
        sa.Column("height", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("height", "index", name=op.f("pk_merkle_nodes")),
    )
    op.create_table(
        "site_info",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("controller", sa.Text(), nullable=False),
        sa.Column("policy_url", sa.String(length=500), nullable=False),
        sa.Column("default_locale", sa.String(length=16), nullable=False),
        sa.Column("locales", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site_info")),
    )
    forbid_changes("ledger_checkpoints")


def downgrade() -> None:
    allow_changes("ledger_checkpoints")
    op.drop_table("site_info")
    op.drop_table("merkle_nodes")
    op.drop_table("ledger_checkpoints")
