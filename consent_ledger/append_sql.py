"""The append path's SQL, written once per dialect and run on the driver's cursor.

Appending is the ledger's hot path: per entry, a head lock, an insert or two, a
projection upsert and a head update. Going through SQLAlchemy's statement execution
costs several times what SQLite spends on the same statements (PERF-NOTES: "time spent
in SQLAlchemy's statement construction, not in SQLite, dominated the write path"), so
these few statements go straight to the DBAPI cursor of the session's own connection,
inside its transaction. Everything else keeps to SQLAlchemy.

Values are bound exactly as SQLAlchemy's types would bind them (timestamps as naive
UTC text on SQLite, aware datetimes on PostgreSQL), so rows read back identically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

# Column order of the event insert; matches consent_events.
EVENT_COLUMNS = (
    "seq",
    "subject_id",
    "purpose_key",
    "action",
    "confirmation_required",
    "notice_sha256",
    "source",
    "source_ref",
    "jurisdiction",
    "method",
    "locale",
    "occurred_at",
    "recorded_at",
    "evidence_sha256",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True, slots=True)
class AppendSql:
    lock_head: str
    insert_event: str
    insert_evidence: str
    upsert_state: str
    update_head: str
    bind_time: Callable[[datetime], object]


def _sqlite_time(moment: datetime) -> str:
    # SQLAlchemy's SQLite DATETIME storage format (naive UTC, microseconds).
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _aware_time(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


@cache
def append_sql(dialect: str) -> AppendSql:
    """The statements for ``dialect`` (``sqlite`` or ``postgresql``)."""
    marks = ", ".join("?" for _ in EVENT_COLUMNS)
    statements = {
        "lock_head": "SELECT seq, hash FROM ledger_head WHERE id = 1"
        + (" FOR UPDATE" if dialect == "postgresql" else ""),
        "insert_event": f"INSERT INTO consent_events ({', '.join(EVENT_COLUMNS)}) VALUES ({marks})",
        "insert_evidence": "INSERT INTO consent_evidence (seq, salt, body) VALUES (?, ?, ?)",
        # The projection in one statement for entries whose effect does not depend on
        # the state before them (all but confirmations): applied only when the entry
        # comes after the kept state's last one in projection.order_key order; no row
        # back means it did not, and the caller replays the pair instead.
        "upsert_state": (
            "INSERT INTO consent_state (subject_id, purpose_key, status, permitted, since, "
            "notice_sha256, last_seq, last_occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (subject_id, purpose_key) DO UPDATE SET status = excluded.status, "
            "permitted = excluded.permitted, since = excluded.since, "
            "notice_sha256 = COALESCE(excluded.notice_sha256, consent_state.notice_sha256), "
            "last_seq = excluded.last_seq, last_occurred_at = excluded.last_occurred_at "
            "WHERE consent_state.last_occurred_at < excluded.last_occurred_at "
            "OR (consent_state.last_occurred_at = excluded.last_occurred_at AND ? = 1) "
            "RETURNING last_seq"
        ),
        "update_head": "UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1",
    }
    if dialect == "postgresql":
        statements = {key: sql.replace("?", "%s") for key, sql in statements.items()}
    bind_time = _sqlite_time if dialect == "sqlite" else _aware_time
    return AppendSql(bind_time=bind_time, **statements)
