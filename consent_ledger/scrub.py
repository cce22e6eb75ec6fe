"""The scrub after erasure: no copy of an erased person's rows stays in the database's files.

An erasure deletes rows; the bytes of a deleted row can outlive the ``DELETE``:

- SQLite zeroes them in the database file (``secure_delete``), but the write-ahead log
  still holds the pages as they were until it is checkpointed and truncated. That is
  cheap, so it is done at once, after each erasure committed (:func:`scrub_now`).
- PostgreSQL leaves a deleted row in its table's and indexes' pages until the space is
  reused; a plain ``VACUUM`` marks it free but leaves its bytes there. Only rewriting the
  table (``VACUUM FULL``: new files, the old ones unlinked) removes them, and that takes
  an ``ACCESS EXCLUSIVE`` lock on the table while it copies it. So an erasure only
  *records* that a scrub is due (:func:`mark_due`, in its own transaction: never lost),
  and the scrub job (:func:`run_scrub`, run by ``serve`` every minute and by ``zeroparty
  ledger scrub``) rewrites the tables at most once per ``ZEROPARTY_ERASURE_SCRUB_MINUTES``
  (default 60), for every erasure since its last run at once. Each table's lock is waited
  for at most :data:`LOCK_TIMEOUT` (so the rewrite never queues writers behind a long
  transaction for long); a table not rewritten leaves the scrub due and the next run
  tries again. One process scrubs at a time (a PostgreSQL advisory lock).

The tables rewritten are those erasure deletes from: every table with a ``subject_id``
column, ``consent_evidence`` and ``mail_outbox``, never the append-only ledger tables.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from consent_ledger.models import ErasureScrub
from zeroparty.background import PeriodicJob
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings

log = logging.getLogger("zeroparty.erasure")

ROW_ID = 1
POLL_SECONDS = 60.0
"""How often ``serve``'s job looks whether a scrub is due (it runs one at most once per
``ZEROPARTY_ERASURE_SCRUB_MINUTES``)."""
LOCK_TIMEOUT = "10s"
"""How long the rewrite of one table waits for its lock before it gives up (logged; the
scrub stays due and the next run tries again), so it never queues writers behind it for
long."""
ADVISORY_LOCK = 0x7A70_5C2B
"""``pg_try_advisory_lock`` key: one scrub at a time across processes and hosts."""

# Tables an erasure deletes or rewrites personal rows in: every table of the schema with
# a ``subject_id`` column (each package's, whatever the app is wired with) and the
# evidence bodies, except the append-only ones (their trigger refuses deletes: nothing
# erased is in them, and rewriting the ledger would only cost time).
_ERASED_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = current_schema()
  AND (c.relname IN ('consent_evidence', 'subject_profiles', 'mail_outbox')
       OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                  AND a.attname = 'subject_id' AND NOT a.attisdropped))
  AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid
                  AND t.tgname = c.relname || '_no_change')
ORDER BY c.relname
"""


@dataclass(frozen=True, slots=True)
class ScrubReport:
    """What one run of the scrub did."""

    erasures: int = 0
    """Erasures not scrubbed when the run started (0: nothing was due)."""
    ran: bool = False
    """Whether it scrubbed (``False``: nothing due, not yet time, or another process is)."""
    rewritten: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """Tables whose lock was not granted within the lock timeout."""
    kept: list[str] = field(default_factory=list)
    """Tables rewritten with dead rows copied along: a transaction that began before they
    were deleted was still open (its snapshot may see them), so they may still hold
    erased bytes."""
    note: str = ""

    @property
    def done(self) -> bool:
        """The run scrubbed every table clean (or truncated the WAL): the scrub is no
        longer due for the erasures it started with."""
        return self.ran and not self.failed and not self.kept


def mark_due(session: Session) -> None:
    """In the erasure's transaction: count one more erasure the scrub has to cover."""
    table = cast(Table, ErasureScrub.__table__)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(id=ROW_ID, erasures=1, scrubbed_through=0, due_since=utcnow())
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={
                "erasures": table.c.erasures + 1,
                "due_since": func.coalesce(table.c.due_since, statement.excluded.due_since),
            },
        )
    )


def _state(session: Session) -> ErasureScrub | None:
    return session.get(ErasureScrub, ROW_ID)


def pending(database: Database) -> int:
    """Erasures the scrub has not covered yet."""
    with database.read() as session:
        row = _state(session)
        return 0 if row is None else row.erasures - row.scrubbed_through


def _mark_done(database: Database, through: int, started: datetime) -> None:
    with database.write() as session:
        row = _state(session)
        if row is None:
            return
        row.scrubbed_through = max(row.scrubbed_through, through)
        row.last_done_at = started
        # Erasures after ``through`` committed after the run read the count: due since then.
        row.due_since = None if row.erasures <= row.scrubbed_through else started


def erased_tables(database: Database) -> list[str]:
    """On PostgreSQL, the tables the scrub rewrites."""
    with database.engine.connect() as connection:
        return list(connection.exec_driver_sql(_ERASED_TABLES).scalars())


def scrub_now(database: Database) -> bool:
    """Run after an erasure committed, outside any transaction.

    SQLite: checkpoint and truncate the write-ahead log now (cheap), and count the scrub
    done. PostgreSQL: nothing here; the erasure marked the scrub due and the job does it.
    Returns ``False`` when SQLite readers held old frames (the job retries).
    """
    if database.dialect != "sqlite":
        return True
    return _truncate_wal(database, utcnow())


def _truncate_wal(database: Database, started: datetime) -> bool:
    with database.read() as session:
        row = _state(session)
        through = 0 if row is None else row.erasures
    with database.engine.connect() as connection:
        busy, _log_frames, _checkpointed = connection.exec_driver_sql(
            "PRAGMA wal_checkpoint(TRUNCATE)"
        ).one()
        connection.commit()
    if busy:
        log.warning("WAL checkpoint after erasure incomplete: readers active; retried later")
        return False
    if through:
        _mark_done(database, through, started)
    return True


def run_scrub(
    database: Database,
    *,
    interval: timedelta,
    force: bool = False,
    now: datetime | None = None,
    lock_timeout: str = LOCK_TIMEOUT,
) -> ScrubReport:
    """Scrub for every erasure not covered yet, unless the last run began less than
    ``interval`` ago (``force``: regardless). Safe in every process at once."""
    started = now or utcnow()
    if not pending(database):  # the usual case, every minute: one read, no lock taken
        return ScrubReport(note="nothing due")
    if database.dialect == "postgresql":
        return _run_postgresql(database, interval, force, started, lock_timeout)
    with database.write() as session:
        row = _state(session)
        if row is None or row.erasures <= row.scrubbed_through:
            return ScrubReport(note="nothing due")
        erasures = row.erasures - row.scrubbed_through
        row.last_run_at = started
    if _truncate_wal(database, started):
        log.info("scrub after %d erasure(s): write-ahead log truncated", erasures)
        return ScrubReport(erasures, True, rewritten=["(write-ahead log)"])
    return ScrubReport(erasures, True, failed=["(write-ahead log)"])


def _run_postgresql(
    database: Database, interval: timedelta, force: bool, started: datetime, lock_timeout: str
) -> ScrubReport:
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if not connection.exec_driver_sql(
            f"SELECT pg_try_advisory_lock({ADVISORY_LOCK})"
        ).scalar_one():
            return ScrubReport(note="another process is scrubbing")
        try:
            with database.write() as session:
                row = _state(session)
                if row is None or row.erasures <= row.scrubbed_through:
                    return ScrubReport(note="nothing due")
                erasures, through = row.erasures - row.scrubbed_through, row.erasures
                if not force and row.last_run_at is not None:
                    next_run = row.last_run_at + interval
                    if started < next_run:
                        return ScrubReport(
                            erasures, note=f"not before {next_run:%Y-%m-%d %H:%M} UTC"
                        )
                row.last_run_at = started
            connection.exec_driver_sql(f"SET lock_timeout = '{lock_timeout}'")
            clock = time.monotonic()
            rewritten, kept, failed = _rewrite(connection, erased_tables(database))
        finally:
            # The connection goes back to the pool: nothing of the scrub stays on it.
            connection.exec_driver_sql("RESET lock_timeout")
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({ADVISORY_LOCK})")
    if not failed and not kept:
        _mark_done(database, through, started)
    log.info(
        "scrub after %d erasure(s): %d table(s) rewritten in %.1f s%s%s",
        erasures, len(rewritten), time.monotonic() - clock,
        f"; not rewritten (lock not granted within {lock_timeout}): {', '.join(failed)}"
        if failed else "",
        f"; dead rows kept for an older open transaction in: {', '.join(kept)}"
        if kept else "",
    )  # fmt: skip
    if failed or kept:
        log.warning("scrub after erasure incomplete: it stays due and the next run tries again")
    return ScrubReport(erasures, True, rewritten, failed, kept)


_KEPT = re.compile(r"(\d+) dead row versions cannot be removed yet")


def _rewrite(connection: Connection, tables: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``VACUUM FULL`` each table; returns the tables rewritten, those of them where dead
    rows had to be copied along (a transaction older than their deletion was still open,
    so the erased bytes may still be there), and those whose lock was not granted."""
    rewritten: list[str] = []
    kept: list[str] = []
    failed: list[str] = []
    raw: Any = connection.connection.driver_connection  # psycopg's own connection
    details: list[str] = []

    def notice(diagnostic: Any) -> None:
        details.append(diagnostic.message_detail or "")

    raw.add_notice_handler(notice)
    try:
        for table in tables:
            details.clear()
            try:
                # VACUUM cannot run in a transaction block: autocommit, one per table.
                connection.exec_driver_sql(f'VACUUM (FULL, VERBOSE) "{table}"')
            except OperationalError as exc:
                failed.append(table)
                log.warning(
                    "scrub after erasure: %s not rewritten (%s); the next run tries again",
                    table, type(exc.orig).__name__,
                )  # fmt: skip
                continue
            rewritten.append(table)
            if any(int(m.group(1)) for d in details for m in _KEPT.finditer(d)):
                kept.append(table)
    finally:
        raw.remove_notice_handler(notice)
    return rewritten, kept, failed


def job(database: Database, settings: Settings) -> PeriodicJob:
    """``serve``'s scrub job: looks every minute, scrubs at most once per interval."""
    interval = timedelta(minutes=settings.erasure_scrub_minutes)
    return PeriodicJob(
        "erasure-scrub", POLL_SECONDS, lambda: run_scrub(database, interval=interval)
    )


def cmd_ledger_scrub(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.cli_support import opened_database

    with opened_database(settings) as database:
        report = run_scrub(
            database, interval=timedelta(minutes=settings.erasure_scrub_minutes), force=True
        )
    if not report.erasures:
        print("nothing to scrub: no erasure since the last scrub")
        return 0
    if not report.ran:
        print(f"not scrubbed: {report.note}")
        return 1
    print(f"scrubbed after {report.erasures} erasure(s): rewrote {', '.join(report.rewritten)}")
    if report.failed:
        print(
            f"not rewritten (lock not granted within {LOCK_TIMEOUT}): "
            f"{', '.join(report.failed)}; the scrub stays due",
            file=sys.stderr,
        )
    if report.kept:
        print(
            f"dead rows kept for a transaction older than the erasure in: "
            f"{', '.join(report.kept)}; the scrub stays due",
            file=sys.stderr,
        )
    return 0 if report.done else 1


def add_command(ledger: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``zeroparty ledger scrub`` (added to the ``ledger`` group)."""
    scrub = ledger.add_parser(
        "scrub",
        help="scrub after erasure now: rewrite the tables erased rows were in (exit 1 if a "
        "table's lock was not granted in time)",
    )
    scrub.set_defaults(handler=cmd_ledger_scrub)
