"""data-subject requests of every kind, for people we hold nothing on, extended once

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

``data_subject_requests`` gains what every right of the GDPR and the CCPA needs:
``kind`` holds the longer names (``limit_sensitive``); ``subject_id`` may be empty (a
request about an address we hold nothing on, kept by ``email_sha256`` only);
``regime`` (gdpr or ccpa) sets the deadline and its one extension (``extended_at``,
``extension_reason``); ``confirmation_id`` is the nonce of the public request page's
mailed link, unique so that a link records one request however often it is followed.
Existing rows are GDPR requests unless their lead's jurisdiction is a US one.

``data_subject_request_confirmations`` holds a request asked for on the public page
until its mailed link is followed (at most 24 hours): the address, the kind, when.

``retention_periods`` holds the retention period per kind of record that ``site.toml``'s
``[retention]`` table sets (a kind without a row keeps its default).

``erasure_scrub`` (one row) counts erasures and how many of them the scrub job has
rewritten the tables for (on PostgreSQL the deleted rows' bytes stay in the table files
until then; see ``consent_ledger.scrub``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.db import UTCDateTime

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_scrub",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("erasures", sa.BigInteger(), nullable=False),
        sa.Column("scrubbed_through", sa.BigInteger(), nullable=False),
        sa.Column("due_since", UTCDateTime(), nullable=True),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.Column("last_done_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure_scrub")),
    )
    op.create_table(
        "retention_periods",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_retention_periods")),
    )
    op.create_table(
        "data_subject_request_confirmations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_subject_request_confirmations")),
    )
    op.create_index(
        op.f("ix_data_subject_request_confirmations_requested_at"),
        "data_subject_request_confirmations",
        ["requested_at"],
        unique=False,
    )
    with op.batch_alter_table("data_subject_requests", schema=None) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=16), type_=sa.String(length=32),
            existing_nullable=False,
        )  # fmt: skip
        batch_op.alter_column("subject_id", existing_type=sa.String(length=32), nullable=True)
        batch_op.add_column(sa.Column("email_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("regime", sa.String(length=8), nullable=False, server_default="gdpr")
        )
        batch_op.add_column(sa.Column("extended_at", UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("extension_reason", sa.Text(), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("confirmation_id", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_data_subject_requests_confirmation_id"), ["confirmation_id"]
        )
    op.execute(
        "UPDATE data_subject_requests SET regime = 'ccpa' WHERE subject_id IN "
        "(SELECT id FROM subjects WHERE upper(jurisdiction) LIKE 'US%')"
    )
    with op.batch_alter_table("data_subject_requests", schema=None) as batch_op:
        batch_op.alter_column("regime", server_default=None)
        batch_op.alter_column("extension_reason", server_default=None)


def downgrade() -> None:
    op.execute("DELETE FROM data_subject_requests WHERE subject_id IS NULL")
    with op.batch_alter_table("data_subject_requests", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_data_subject_requests_confirmation_id"), type_="unique"
        )
        batch_op.drop_column("confirmation_id")
        batch_op.drop_column("extension_reason")
        batch_op.drop_column("extended_at")
        batch_op.drop_column("regime")
        batch_op.drop_column("email_sha256")
        batch_op.alter_column("subject_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=32), type_=sa.String(length=16),
            existing_nullable=False,
        )  # fmt: skip
    op.drop_index(
        op.f("ix_data_subject_request_confirmations_requested_at"),
        table_name="data_subject_request_confirmations",
    )
    op.drop_table("data_subject_request_confirmations")
    op.drop_table("retention_periods")
    op.drop_table("erasure_scrub")
