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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

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
    record_context: str
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
        # What recording consent needs to know first, in one round trip: the purpose
        # (no row: unknown), the locale of the notice version named by its hash (NULL:
        # not a notice of this purpose) and the lead with this e-mail, if known.
        # Parameters: notice hash, e-mail, purpose.
        "record_context": (
            "SELECT p.double_opt_in, n.locale, s.id, s.locale, s.jurisdiction "
            "FROM purposes p "
            "LEFT JOIN notice_versions n ON n.purpose_key = p.key AND n.sha256 = ? "
            "LEFT JOIN subject_profiles sp ON sp.email = ? "
            "LEFT JOIN subjects s ON s.id = sp.subject_id "
            "WHERE p.key = ? ORDER BY n.version DESC LIMIT 1"
        ),
    }
    if dialect == "postgresql":
        statements = {key: sql.replace("?", "%s") for key, sql in statements.items()}
    bind_time = _sqlite_time if dialect == "sqlite" else _aware_time
    return AppendSql(bind_time=bind_time, **statements)


@contextmanager
def driver_cursor(connection: Connection) -> Iterator[Any]:
    """The DBAPI cursor of ``connection``, inside its transaction. Driver errors come out
    as the exception classes SQLAlchemy would raise (``IntegrityError``, …), so callers
    and the app's error handling see no difference."""
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except connection.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            None,
            None,
            exc,
            connection.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            dialect=connection.dialect,
        ) from exc
    finally:
        cursor.close()
