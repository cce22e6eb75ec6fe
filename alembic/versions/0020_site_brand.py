"""site brand: the checked ``[site.brand]`` table of ``site.toml``

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04

``site_info`` gains ``brand``: the brand ``site load`` checked (name, logo, colours,
footer address and privacy-policy link) as JSON, or NULL when the site file has none
(the shared stylesheet's defaults apply).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("site_info", schema=None) as batch_op:
        batch_op.add_column(sa.Column("brand", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("site_info", schema=None) as batch_op:
        batch_op.drop_column("brand")
