"""Alembic environment: one metadata for every package, URL from zeroparty settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import capture.models  # noqa: F401  (registers capture's tables)
import consent_ledger.models  # registers the ledger's tables
import consent_ledger.requests  # noqa: F401  (registers data-subject requests)
import consent_sync.models
import consent_sync.subscription_models  # noqa: F401  (registers subscriptions' tables)
import console.models  # noqa: F401  (registers the console's tables)
import preference_center.models  # noqa: F401  (registers the preference center's tables)
import scoring.models  # noqa: F401  (registers scoring's tables)
import zeroparty.apikeys
import zeroparty.mail
import zeroparty.retention  # registers retention_periods
import zeroparty.site_info  # noqa: F401  (registers site_info)
from zeroparty.db import Base, make_engine
from zeroparty.settings import Settings

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    engine = make_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
