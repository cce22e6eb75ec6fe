"""consent sync: outgoing subscriptions and their delivery outbox

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04

``consent_sync_subscriptions`` holds the endpoints staff registered (URL, event types,
Standard Webhooks secret, the ledger seq their deliveries are made up to);
``consent_sync_deliveries`` is their transactional outbox, one row per (subscription,
ledger entry), delivered, retried and dead-lettered by ``zeroparty.outbox``.
``scoring_webhooks`` gains ``event`` (the hand-off, or a withdrawal or erasure notice to
the CRM; existing rows are hand-offs) and ``consent_seq``. ``consent_sync_inbound_sources``
holds what checks each sending tool's signature on ``POST /api/inbound/{provider}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.db import UTCDateTime

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_sync_subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", sa.String(length=500), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("after_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_sync_subscriptions")),
    )
    op.create_table(
        "consent_sync_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("failed_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_sync_deliveries")),
    )
    with op.batch_alter_table("consent_sync_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_consent_sync_deliveries_due", ["next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_consent_sync_deliveries_subscription", ["subscription_id", "seq"], unique=False
        )

    op.create_table(
        "consent_sync_inbound_sources",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_consent_sync_inbound_sources")),
    )
    with op.batch_alter_table("scoring_webhooks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "event",
                sa.String(length=40),
                server_default="lead.stage_reached",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("consent_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scoring_webhooks", schema=None) as batch_op:
        batch_op.drop_column("consent_seq")
        batch_op.drop_column("event")
    op.drop_table("consent_sync_inbound_sources")
    with op.batch_alter_table("consent_sync_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_sync_deliveries_subscription")
        batch_op.drop_index("ix_consent_sync_deliveries_due")
    op.drop_table("consent_sync_deliveries")
    op.drop_table("consent_sync_subscriptions")
