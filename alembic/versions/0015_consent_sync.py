"""consent sync: erased addresses' digests; API key scopes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

``consent_sync_erased_addresses`` keeps the SHA-256 of an erased lead's normalised email
(written by erasure, before the profile goes), for the change feed and the suppression
list. ``api_keys.scopes`` names what a key may do (space-separated); NULL, as every key
made before has, means every scope, so existing keys keep working.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.db import UTCDateTime

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_sync_erased_addresses",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("email_sha256", sa.String(length=64), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_consent_sync_erased_addresses")),
    )
    with op.batch_alter_table("consent_sync_erased_addresses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_sync_erased_addresses_email_sha256"),
            ["email_sha256"],
            unique=False,
        )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("scopes")
    with op.batch_alter_table("consent_sync_erased_addresses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_sync_erased_addresses_email_sha256"))
    op.drop_table("consent_sync_erased_addresses")
