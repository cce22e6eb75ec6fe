"""Scoring's multi-row insert of kept answers is compiled once per row count and run on
the driver's cursor (a multi-row ``insert().values()`` was compiled again on every
submission); the rows it writes, timestamps included, are what the engine would write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from scoring.models import LeadAttribute
from scoring.services import _ANSWER_COLUMNS, _insert_answers
from zeroparty.db import Database

WHEN = datetime(2026, 12, 4, 4, 50, 1, 123456, tzinfo=UTC)


def _params(start: int, rows: int) -> dict[str, object]:
    values: dict[str, object] = {}
    for i in range(rows):
        row = {
            "subject_id": f"s{start + i}",
            "kind": "field",
            "name": "company",
            "value": f"ACME {start + i}",
            "purposes": '["profiling"]',
            "source_ref": f"submission:{start + i}",
            "occurred_at": WHEN + timedelta(seconds=start + i),
            "consent_seq": 100 + start + i,
        }
        values.update({f"{c}_{i}": row[c] for c in _ANSWER_COLUMNS})
    return values


def test_answers_insert_is_compiled_once_and_writes_typed_rows(database: Database) -> None:
    compiled = []
    with database.write_connection() as connection:
        for start in (0, 3, 6):
            _insert_answers(3).execute(connection, _params(start, 3))
            compiled.append(_insert_answers(3).on(connection.dialect))
    assert _insert_answers(3) is _insert_answers(3)
    assert compiled[0] is compiled[1] is compiled[2]  # not compiled again
    with database.read() as session:
        kept = session.scalars(select(LeadAttribute).order_by(LeadAttribute.consent_seq)).all()
    assert [(a.subject_id, a.kind, a.name, a.value, a.purposes, a.consent_seq) for a in kept] == [
        (f"s{i}", "field", "company", f"ACME {i}", '["profiling"]', 100 + i) for i in range(9)
    ]
    # Timestamps go through the column's type (UTC; naive in SQLite, as everywhere).
    assert [a.occurred_at for a in kept] == [WHEN + timedelta(seconds=i) for i in range(9)]
