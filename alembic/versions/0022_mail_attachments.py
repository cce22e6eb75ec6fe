"""mail attachments: the files a queued mail carries

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-04

``mail_outbox`` gains ``attachments``: the mail's files as JSON (name, content type and
the bytes in base64), written in the transaction that queues the mail, so a retried
mail still carries them; NULL for a mail without files (every mail queued before).
The consent receipt mail sends the signed receipt this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attachments", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_column("attachments")
