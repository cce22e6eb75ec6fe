"""purpose and topic texts in several languages

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04

``purposes`` and ``topics`` gain ``translations``: the title and description in the
site's other languages as JSON (``{"de": {"title": "…", "description": "…"}}``), written
by ``site load`` from a table of language → text in ``site.toml``. NULL (every row
before) keeps one text for every language, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("purposes", "topics"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("translations", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("topics", "purposes"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("translations")
