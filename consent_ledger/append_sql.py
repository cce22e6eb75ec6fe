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

from zeroparty.db import sqlite_time

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
    insert_subject: str
    insert_profile: str
    bind_time: Callable[[datetime], object]
    # PostgreSQL only: an entry, its evidence, its projection and the head in one
    # statement (one round trip while the head is locked); see _postgres_append_entry.
    append_entry: str | None = None


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
        # Parameters: notice hash, e-mail, purpose. Last, whether a material change
        # replaced that notice version since (issue 16: a grant under it is refused).
        "record_context": (
            "SELECT p.double_opt_in, n.locale, s.id, s.locale, s.jurisdiction, "
            "EXISTS (SELECT 1 FROM notice_versions m WHERE m.purpose_key = n.purpose_key "
            "AND m.locale = n.locale AND m.version > n.version AND m.change = 'material') "
            "FROM purposes p "
            "LEFT JOIN notice_versions n ON n.purpose_key = p.key AND n.sha256 = ? "
            "LEFT JOIN subject_profiles sp ON sp.email = ? "
            "LEFT JOIN subjects s ON s.id = sp.subject_id "
            "WHERE p.key = ? ORDER BY n.version DESC LIMIT 1"
        ),
        # A new lead. On SQLite, write transactions begin IMMEDIATE, so nobody can have
        # added the e-mail since the caller looked it up. On PostgreSQL another
        # transaction may add it meanwhile: the profile yields (no savepoint needed),
        # no row comes back, and the caller uses the lead that transaction created.
        "insert_subject": (
            "INSERT INTO subjects (id, locale, jurisdiction, created_at) VALUES (?, ?, ?, ?)"
        ),
        "insert_profile": (
            "INSERT INTO subject_profiles (subject_id, email, name, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)"
        ),
    }
    if dialect == "postgresql":
        statements["insert_profile"] += " ON CONFLICT (email) DO NOTHING RETURNING subject_id"
        # Subject and profile in one round trip; the profile's foreign key is checked at
        # the end of the statement, when the subject row exists.
        statements["insert_profile"] = (
            f"WITH subject AS ({statements['insert_subject']}) {statements['insert_profile']}"
        )
        statements = {key: sql.replace("?", "%s") for key, sql in statements.items()}
        statements["append_entry"] = _postgres_append_entry(statements)
    bind_time = sqlite_time if dialect == "sqlite" else _aware_time
    return AppendSql(bind_time=bind_time, **statements)


def _postgres_append_entry(statements: dict[str, str]) -> str:
    """One entry appended by one statement, head lock included.

    The chain link is computed by PostgreSQL in the statement that takes the head
    lock: the caller sends the entry's canonical bytes in three parts, cut where
    ``prev_hash`` and ``seq`` go, and the statement locks the head row, fills in the
    next ``seq`` and the last hash, hashes the bytes (``sha256``) and writes entry,
    evidence, projection and head. So the head stays locked for this one statement and
    the commit, and an append costs one round trip. The caller re-computes the hash
    from the row that comes back and refuses the append if the two disagree.

    Each part is a data-modifying CTE: PostgreSQL runs every one of them to completion
    and checks the foreign keys (evidence and state on the event) at the end of the
    statement. Evidence and projection are optional, each switched by a boolean
    parameter, so one prepared statement serves every entry.

    Parameters, in order: the three parts of the canonical bytes; the event's columns
    from ``subject_id`` to ``evidence_sha256`` (EVENT_COLUMNS less ``seq``,
    ``prev_hash`` and ``hash``); evidence salt, body, has-evidence; the projection's
    values less ``last_seq``, do-upsert, and 1 for an entry that wins ties.
    Returns ``seq``, ``prev_hash``, ``hash`` and how many projection rows the upsert
    wrote (0: the entry needs ``ledger._project``, as with ``upsert_state``).
    """
    event_values = ", ".join("%s" for _ in EVENT_COLUMNS[1:-2])
    state_values = "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    state_insert, found, state_conflict = statements["upsert_state"].partition(state_values)
    assert found, "upsert_state no longer has the VALUES clause rewritten here"
    return (
        "WITH old AS (SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE), "
        "new AS (SELECT old.seq + 1 AS seq, old.hash AS prev_hash, "
        # Qualified, so no function earlier on a search_path can stand in for them.
        "pg_catalog.encode(pg_catalog.sha256(%s::bytea "
        "|| pg_catalog.convert_to(old.hash, 'UTF8') || %s::bytea "
        "|| pg_catalog.convert_to((old.seq + 1)::text, 'UTF8') || %s::bytea), 'hex') "
        "AS hash FROM old), "
        "head AS (UPDATE ledger_head SET seq = new.seq, hash = new.hash FROM new "
        "WHERE ledger_head.id = 1), "
        f"event AS (INSERT INTO consent_events ({', '.join(EVENT_COLUMNS)}) "
        f"SELECT new.seq, {event_values}, new.prev_hash, new.hash FROM new), "
        "evidence AS (INSERT INTO consent_evidence (seq, salt, body) "
        "SELECT new.seq, %s, %s FROM new WHERE %s), "
        f"state AS ({state_insert}SELECT %s, %s, %s, %s, %s, %s, new.seq, %s FROM new "
        f"WHERE %s{state_conflict}) "
        "SELECT new.seq, new.prev_hash, new.hash, (SELECT count(*) FROM state) FROM new"
    )
