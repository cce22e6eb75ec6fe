"""A filter over the ledger (purpose, action, source, form, time, lead), as SQL clauses.

Shared by the console's ledger view and its streamed exports, so what a person sees
filtered is exactly what the export holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import ColumnElement, Table

from consent_ledger.models import ConsentEvent

_ev = cast(Table, ConsentEvent.__table__)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Entries matching every given criterion; ``form`` is a form or quiz slug (entries
    whose ``source_ref`` is ``slug@vN``); ``since`` inclusive, ``until`` exclusive, on
    ``occurred_at``."""

    purpose: str | None = None
    action: str | None = None
    source: str | None = None
    form: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    subject_id: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.purpose:
            where.append(_ev.c.purpose_key == self.purpose)
        if self.action:
            where.append(_ev.c.action == self.action)
        if self.source:
            where.append(_ev.c.source == self.source)
        if self.form:
            where.append(_ev.c.source_ref.like(_escape_like(self.form) + "@v%", escape="\\"))
        if self.since is not None:
            where.append(_ev.c.occurred_at >= self.since)
        if self.until is not None:
            where.append(_ev.c.occurred_at < self.until)
        if self.subject_id:
            where.append(_ev.c.subject_id == self.subject_id)
        return where
