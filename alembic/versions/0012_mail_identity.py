"""site: sender identity for mail

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0005"  # site_info is created there


COLUMNS = (
    ("mail_from_name", 200),
    ("mail_from_address", 320),
    ("mail_reply_to", 320),
    ("mail_company", 500),
)


def upgrade() -> None:
    # The sender of the [site.mail] table; "" = not configured (the site's name at
    # no-reply@<host of ZEROPARTY_BASE_URL>).
    with op.batch_alter_table("site_info") as batch:
        for name, length in COLUMNS:
            batch.add_column(sa.Column(name, sa.String(length), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("site_info") as batch:
        for name, _length in reversed(COLUMNS):
            batch.drop_column(name)
