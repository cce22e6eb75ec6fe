"""foundation: consent ledger, notices, api keys

Revision ID: 0001
Revises:
Create Date: 2026-11-25

The ledger's tables, the API keys, and the database-side guards: UPDATE, DELETE and
TRUNCATE on ``consent_events`` and ``notice_versions`` are refused by triggers (STYLE:
append-only tables are enforced by the database, not only by the ORM).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from zeroparty.append_only import allow_changes, forbid_changes
from zeroparty.db import UTCDateTime

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("consent_events", "notice_versions")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_head")),
    )
    op.create_table(
        "purposes",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("mechanism", sa.String(length=16), nullable=False),
        sa.Column("double_opt_in", sa.Boolean(), nullable=False),
        sa.Column("jurisdictions", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_purposes")),
    )
    op.create_table(
        "subjects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("jurisdiction", sa.String(length=16), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("erased_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subjects")),
    )
    op.create_table(
        "consent_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("purpose_key", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("confirmation_required", sa.Boolean(), nullable=False),
        sa.Column("notice_sha256", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("jurisdiction", sa.String(length=16), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("evidence_sha256", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["purpose_key"], ["purposes.key"], name=op.f("fk_consent_events_purpose_key_purposes")
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["subjects.id"], name=op.f("fk_consent_events_subject_id_subjects")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_consent_events")),
        sa.UniqueConstraint("hash", name=op.f("uq_consent_events_hash")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_events_subject_purpose_time",
            ["subject_id", "purpose_key", "occurred_at", "seq"],
            unique=False,
        )

    op.create_table(
        "consent_state",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("purpose_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("permitted", sa.Boolean(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=True),
        sa.Column("notice_sha256", sa.String(length=64), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_occurred_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["purpose_key"], ["purposes.key"], name=op.f("fk_consent_state_purpose_key_purposes")
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["subjects.id"], name=op.f("fk_consent_state_subject_id_subjects")
        ),
        sa.PrimaryKeyConstraint("subject_id", "purpose_key", name=op.f("pk_consent_state")),
    )
    op.create_table(
        "notice_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("purpose_key", sa.String(length=64), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["purpose_key"], ["purposes.key"], name=op.f("fk_notice_versions_purpose_key_purposes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notice_versions")),
        sa.UniqueConstraint(
            "purpose_key", "locale", "version", name=op.f("uq_notice_versions_purpose_key")
        ),
    )
    with op.batch_alter_table("notice_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_versions_sha256"), ["sha256"], unique=False)

    op.create_table(
        "subject_profiles",
        sa.Column("subject_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["subjects.id"], name=op.f("fk_subject_profiles_subject_id_subjects")
        ),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_subject_profiles")),
        sa.UniqueConstraint("email", name=op.f("uq_subject_profiles_email")),
    )
    op.create_table(
        "topics",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("purpose_key", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["purpose_key"], ["purposes.key"], name=op.f("fk_topics_purpose_key_purposes")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_topics")),
    )
    op.create_table(
        "consent_evidence",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["consent_events.seq"], name=op.f("fk_consent_evidence_seq_consent_events")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_consent_evidence")),
    )

    op.execute(
        sa.text("INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, :genesis)").bindparams(
            genesis="0" * 64
        )
    )
    for table in APPEND_ONLY:
        forbid_changes(table)


def downgrade() -> None:
    for table in APPEND_ONLY:
        allow_changes(table)
    op.drop_table("consent_evidence")
    op.drop_table("topics")
    op.drop_table("subject_profiles")
    with op.batch_alter_table("notice_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_versions_sha256"))

    op.drop_table("notice_versions")
    op.drop_table("consent_state")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_events_subject_purpose_time")

    op.drop_table("consent_events")
    op.drop_table("subjects")
    op.drop_table("purposes")
    op.drop_table("ledger_head")
    op.drop_table("api_keys")
