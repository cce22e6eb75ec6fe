"""Applying Alembic migrations from the CLI and at first start."""

from __future__ import annotations

from collections.abc import Sequence

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from zeroparty.settings import PROJECT_ROOT

ALEMBIC_DIR = PROJECT_ROOT / "alembic"


def alembic_config() -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    return config


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the database at ``engine`` up to ``revision`` (in one transaction)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revisions(engine: Engine) -> frozenset[str]:
    """The revisions the database is at (empty: never migrated)."""
    with engine.connect() as connection:
        return frozenset(MigrationContext.configure(connection).get_current_heads())


def head_revisions() -> frozenset[str]:
    """The revisions a database at head records: the script's heads, less those another
    head needs through ``down_revision`` or ``depends_on`` (Alembic does not record a
    revision that a later one depends on, e.g. 0012 -> 0005, as a head of its own)."""
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    needed: set[str] = set()
    stack = list(heads)
    while stack:
        revision = script.get_revision(stack.pop())
        if revision is None:
            continue
        for parent in (*_names(revision.down_revision), *_names(revision.dependencies)):
            if parent not in needed:
                needed.add(parent)
                stack.append(parent)
    return frozenset(heads - needed)


def _names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def is_current(engine: Engine) -> bool:
    return current_revisions(engine) == head_revisions()
