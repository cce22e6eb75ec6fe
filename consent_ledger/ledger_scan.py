"""Whole-ledger scans on the driver's cursor, for verification.

``ledger verify`` reads every entry and every kept state once; through SQLAlchemy's
result processing that costs more than the hashing itself. These scans select the
columns as the database has them, with timestamps already in the canonical spelling
(``2026-11-25T14:00:00.000000Z``, text: it sorts in time order), and stream them in
batches (a server-side cursor on PostgreSQL), in constant memory.

The projection check only compares and orders timestamps, never hashes them, so its
scans (:func:`fact_rows`, :func:`state_rows`) take SQLite's stored text as it is: one
fixed spelling, sorting in time order too, and a second less per million rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any

from sqlalchemy.engine import Connection

BATCH = 5_000

CHAIN_COLUMNS = (
    "seq, prev_hash, subject_id, purpose_key, action, confirmation_required, "
    "notice_sha256, source, source_ref, jurisdiction, method, locale, "
    "{occurred_at}, {recorded_at}, evidence_sha256, hash"
)


def _time(dialect: str, column: str) -> str:
    """SQL giving ``column`` in the canonical spelling, done by the database (fast)."""
    if dialect == "postgresql":
        return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" (naive UTC, SQLAlchemy's format).
    return f"substr({column}, 1, 10) || 'T' || substr({column}, 12) || 'Z'"


def _comparable_time(dialect: str, column: str) -> str:
    """SQL giving ``column`` as text that compares and sorts in time order, in one
    spelling for every row of a table (SQLite's stored text; canonical on PostgreSQL)."""
    return column if dialect == "sqlite" else _time(dialect, column)


def _stream(connection: Connection, sql: str) -> Generator[tuple[Any, ...], None, None]:
    raw = connection.connection
    if connection.dialect.name == "postgresql":
        cursor = raw.dbapi_connection.cursor(name=f"scan_{uuid.uuid4().hex[:12]}")  # type: ignore[union-attr]
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(BATCH):
            yield from rows
    finally:
        cursor.close()


def chain_rows(connection: Connection) -> Generator[tuple[Any, ...], None, None]:
    """Entries in ``seq`` order, timestamps canonical.

    Columns: seq, prev_hash, subject_id, purpose, action, confirmation_required (0/1 or
    bool: the caller makes it a bool), notice_sha256, source, source_ref, jurisdiction,
    method, locale, occurred_at, recorded_at, evidence_sha256, hash.
    """
    dialect = connection.dialect.name
    columns = CHAIN_COLUMNS.format(
        occurred_at=_time(dialect, "occurred_at"), recorded_at=_time(dialect, "recorded_at")
    )
    yield from _stream(connection, f"SELECT {columns} FROM consent_events ORDER BY seq")


def evidence_rows(connection: Connection) -> Generator[tuple[Any, ...], None, None]:
    """Kept evidence (seq, salt, body) in ``seq`` order."""
    yield from _stream(connection, "SELECT seq, salt, body FROM consent_evidence ORDER BY seq")


def fact_rows(connection: Connection) -> Generator[tuple[Any, ...], None, None]:
    """(subject, purpose, seq, action, confirmation_required, notice, occurred_at) in
    (subject, purpose, occurred_at, seq) order: the ledger grouped pair by pair.
    Timestamps are comparable text (:func:`_comparable_time`), as in :func:`state_rows`."""
    dialect = connection.dialect.name
    sql = (
        "SELECT subject_id, purpose_key, seq, action, confirmation_required, notice_sha256, "
        f"{_comparable_time(dialect, 'occurred_at')} FROM consent_events "
        "ORDER BY subject_id, purpose_key, occurred_at, seq"
    )
    for row in _stream(connection, sql):
        yield (row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6])


def state_rows(connection: Connection) -> Generator[tuple[Any, ...], None, None]:
    """Kept states in (subject, purpose) order: subject, purpose, status, permitted,
    since, notice, last_seq, last_occurred_at (timestamps comparable text, as in
    :func:`fact_rows`)."""
    dialect = connection.dialect.name
    sql = (
        "SELECT subject_id, purpose_key, status, permitted, "
        f"{_comparable_time(dialect, 'since')}, notice_sha256, last_seq, "
        f"{_comparable_time(dialect, 'last_occurred_at')} FROM consent_state "
        "ORDER BY subject_id, purpose_key"
    )
    for row in _stream(connection, sql):
        yield (row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6], row[7])
