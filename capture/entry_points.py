"""The forms and quizzes a first-time user can open: each slug's latest version."""

from __future__ import annotations

from sqlalchemy import func, select

from capture.definitions import from_json
from capture.models import DefinitionVersion
from zeroparty.db import Database
from zeroparty.wiring import EntryPoint


def entry_points(database: Database) -> list[EntryPoint]:
    latest = (
        select(DefinitionVersion.slug, func.max(DefinitionVersion.version).label("version"))
        .group_by(DefinitionVersion.slug)
        .subquery()
    )
    query = (
        select(DefinitionVersion.definition)
        .join(
            latest,
            (latest.c.slug == DefinitionVersion.slug)
            & (latest.c.version == DefinitionVersion.version),
        )
        .order_by(DefinitionVersion.kind, DefinitionVersion.slug)
    )
    with database.read() as session:
        definitions = [from_json(raw) for raw in session.execute(query).scalars()]
    return [
        EntryPoint(
            "visitors",
            definition.title,
            f"/f/{definition.slug}",
            "a quiz" if definition.is_quiz else "a form",
        )
        for definition in definitions
    ]
