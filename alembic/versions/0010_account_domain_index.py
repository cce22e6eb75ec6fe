"""scoring: index on the e-mail domain for accounts

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

Accounts group permissioned leads by the domain of their e-mail address, computed at
read time. Without an index every page of ``GET /api/accounts`` aggregated every lead;
with an index on the domain expression a page walks domains in order from its cursor
and stops after the page, and one account is a look-up. The expression is spelled here
as :class:`consent_ledger.models.EmailDomain` compiles it on each database, which the
planners need for a match; it is written out (not imported) so this migration stays
what it was when applied.

On SQLite, Alembic does not reflect expression indexes, so a later ``batch_alter_table``
that recreates ``subject_profiles`` would drop this index silently: such a migration
must create it again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_subject_profiles_email_domain"
EXPRESSIONS = {
    "postgresql": "split_part(email, '@', 2)",
    "sqlite": "substr(email, instr(email, '@') + 1)",
}


def upgrade() -> None:
    expression = EXPRESSIONS[op.get_bind().dialect.name]
    op.create_index(INDEX, "subject_profiles", [sa.text(expression)], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name="subject_profiles")
