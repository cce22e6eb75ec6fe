"""Shared helpers of consent sync's tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from console.models import StaffAuditEntry
from zeroparty.db import Database


def staff_log(database: Database) -> list[tuple[str, str]]:
    """(action, detail) of every staff-log row, oldest first."""
    with database.read() as session:
        rows = session.execute(
            select(StaffAuditEntry.action, StaffAuditEntry.detail).order_by(StaffAuditEntry.id)
        ).all()
    return [(a, d) for a, d in rows]


def count(database: Database, model: Any) -> int:
    with database.read() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())
