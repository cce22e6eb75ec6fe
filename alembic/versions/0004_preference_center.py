"""preference center: link versions, topic subscriptions and their history, link requests

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-25

Per-subject link versions (revocation of mailed links), topic choices with their
history, and the rate-limit log of link requests (keyed hashes, pruned after an hour).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.db import UTCDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "preference_link_versions",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name=op.f("fk_preference_link_versions_subject_id_subjects"),
        ),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_preference_link_versions")),
    )
    op.create_table(
        "topic_subscriptions",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("topic_key", sa.String(length=64), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["subjects.id"], name=op.f("fk_topic_subscriptions_subject_id_subjects")
        ),
        sa.ForeignKeyConstraint(
            ["topic_key"], ["topics.key"], name=op.f("fk_topic_subscriptions_topic_key_topics")
        ),
        sa.PrimaryKeyConstraint("subject_id", "topic_key", name=op.f("pk_topic_subscriptions")),
    )
    op.create_table(
        "topic_subscription_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("topic_key", sa.String(length=64), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["subjects.id"],
            name=op.f("fk_topic_subscription_changes_subject_id_subjects"),
        ),
        sa.ForeignKeyConstraint(
            ["topic_key"],
            ["topics.key"],
            name=op.f("fk_topic_subscription_changes_topic_key_topics"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_subscription_changes")),
    )
    with op.batch_alter_table("topic_subscription_changes", schema=None) as batch_op:
        batch_op.create_index("ix_topic_subscription_changes_subject", ["subject_id", "id"])
    op.create_table(
        "preference_link_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("address_key", sa.String(length=64), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preference_link_requests")),
    )
    with op.batch_alter_table("preference_link_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_preference_link_requests_address_key"), ["address_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_preference_link_requests_requested_at"), ["requested_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("preference_link_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_preference_link_requests_requested_at"))
        batch_op.drop_index(batch_op.f("ix_preference_link_requests_address_key"))
    op.drop_table("preference_link_requests")
    with op.batch_alter_table("topic_subscription_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_topic_subscription_changes_subject")
    op.drop_table("topic_subscription_changes")
    op.drop_table("topic_subscriptions")
    op.drop_table("preference_link_versions")
