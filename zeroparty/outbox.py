"""Delivery of webhooks from a transactional outbox table, shared by every sender.

A package writes a row in the transaction that makes the event (nothing acknowledged is
lost) into a table with the columns of :data:`OUTBOX_COLUMNS`; :func:`dispatch` delivers
due rows one at a time, in three steps, and never holds a transaction during the network
call (on SQLite a transaction open for the length of a slow receiver's answer would stop
every other writer):

1. *claim*, in a short transaction: take a due row (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL; SQLite's single writer serialises), let the package build the message
   from the current data or cancel it (:class:`Cancel`), and lease the row
   (``next_attempt_at`` moves past the post's timeout) so no other dispatcher takes it
   meanwhile;
2. *post* it, with a timeout, outside any transaction;
3. *record* the outcome in a second short transaction: delivered, or retried with
   exponential backoff, or dead-lettered (``failed_at``) after ``max_attempts``.

A row ends in exactly one of delivered, dead-lettered or cancelled: the record step
updates the row only while it is still this dispatcher's claim (its lease is the
claim's token) and not ended, and checks the row count. A post the receiver took is
recorded as delivered even when the row was cancelled during the flight, because the
receiver has it; a failed post leaves such a row cancelled. A dispatcher that dies
between claim and record leaves the lease to expire, and the message is sent again with
the same ``webhook-id``: delivery is at least once, and receivers deduplicate by id as
Standard Webhooks asks; the dispatcher whose lease lapsed records nothing.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.engine import Connection

from zeroparty.db import Database, utcnow
from zeroparty.webhooks import Delivery, Sender, post

log = logging.getLogger("zeroparty.webhooks")

OUTBOX_COLUMNS = (
    "id",  # the Standard Webhooks webhook-id, the same on every retry
    "attempts",
    "next_attempt_at",
    "delivered_at",
    "failed_at",
    "cancelled_at",
    "cancel_reason",
    "last_error",
)
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 6 * 3600
LEASE_MARGIN = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Cancel:
    """What a builder returns for a row that must not be sent (and why)."""

    reason: str


Builder = Callable[[Connection, Any, datetime], "Delivery | Cancel"]
"""Builds the message of a claimed row (any column of the outbox table), in the claim's
transaction, or cancels it."""


@dataclass(frozen=True, slots=True)
class Outbox:
    """One outbox table and how its rows are delivered."""

    table: Table
    build: Builder
    max_attempts: int = 8
    timeout: float = 5.0
    due_where: Sequence[ColumnElement[bool]] = ()
    """Further conditions a due row meets (a paused subscription's rows wait)."""


@dataclass(slots=True)
class DispatchReport:
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0


def backoff(attempts: int) -> timedelta:
    """How long after its ``attempts``-th failed post a message is tried again."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_CAP_SECONDS))


def _due(outbox: Outbox, now: datetime, dialect: str) -> Any:
    c = outbox.table.c
    stmt = (
        select(outbox.table)
        .where(
            c.delivered_at.is_(None),
            c.failed_at.is_(None),
            c.cancelled_at.is_(None),
            c.next_attempt_at <= now,
            *outbox.due_where,
        )
        .order_by(c.next_attempt_at, c.id)
        .limit(1)
    )
    return stmt.with_for_update(skip_locked=True) if dialect == "postgresql" else stmt


@dataclass(frozen=True, slots=True)
class Claim:
    webhook_id: str
    attempts: int
    delivery: Delivery
    lease: datetime  # the row's next_attempt_at while this claim holds it


CANCELLED = object()


def dispatch(
    database: Database,
    outbox: Outbox,
    *,
    limit: int = 100,
    now: datetime | None = None,
    sender: Sender = post,
) -> DispatchReport:
    """Deliver up to ``limit`` due rows of ``outbox``; see the module docstring."""
    report = DispatchReport()
    for _ in range(limit):
        moment = now or utcnow()
        with database.write() as session:
            claimed = claim(session.connection(), outbox, moment, report)
        if claimed is None:
            break
        if claimed is CANCELLED:
            continue
        assert isinstance(claimed, Claim)
        error = send(claimed, outbox.timeout, sender)
        with database.write() as session:
            record(session.connection(), outbox, claimed, error, now or utcnow(), report)
    return report


def claim(
    connection: Connection, outbox: Outbox, now: datetime, report: DispatchReport
) -> Claim | object | None:
    """Take the next due row: ``None`` when there is none, :data:`CANCELLED` when its
    builder cancelled it, else what to post (the row is leased)."""
    row = connection.execute(_due(outbox, now, connection.dialect.name)).first()
    if row is None:
        return None
    where = outbox.table.c.id == row.id
    built = outbox.build(connection, row, now)
    if isinstance(built, Cancel):
        connection.execute(
            update(outbox.table).where(where).values(cancelled_at=now, cancel_reason=built.reason)
        )
        report.cancelled += 1
        return CANCELLED
    lease = now + timedelta(seconds=outbox.timeout) + LEASE_MARGIN
    connection.execute(update(outbox.table).where(where).values(next_attempt_at=lease))
    return Claim(row.id, row.attempts + 1, built, lease)


def send(claimed: Claim, timeout: float, sender: Sender) -> str | None:
    """Post it; the error as text, or ``None`` when the receiver took it."""
    try:
        sender(claimed.delivery, timeout)
    except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.warning(
            "webhook %s not delivered (attempt %d): %s",
            claimed.webhook_id,
            claimed.attempts,
            reason,
        )
        return reason
    return None


def record(
    connection: Connection,
    outbox: Outbox,
    claimed: Claim,
    error: str | None,
    now: datetime,
    report: DispatchReport,
) -> None:
    """Record the outcome of ``claimed``'s post so that the row ends in one state.

    Every UPDATE here is conditional on the row not being delivered or dead-lettered,
    and its row count says whether it applied. A post the receiver took makes the row
    delivered, replacing a cancellation that landed meanwhile. A failure changes the row
    only while it is still this claim's (the lease it set: no other dispatcher has
    claimed or recorded it since) and not cancelled; on a cancelled row it only notes
    the attempt.
    """
    table = outbox.table
    c = table.c
    open_row = (c.id == claimed.webhook_id) & c.delivered_at.is_(None) & c.failed_at.is_(None)
    held = open_row & (c.next_attempt_at == claimed.lease)
    if error is None:
        # The receiver has it: a cancellation committed during the post cannot recall
        # it, so the row is delivered, not cancelled.
        delivered = connection.execute(
            update(table)
            .where(open_row)
            .values(
                attempts=claimed.attempts,
                delivered_at=now,
                last_error=None,
                cancelled_at=None,
                cancel_reason=None,
            )
        )
        if delivered.rowcount == 1:
            report.delivered += 1
        else:
            log.info("webhook %s was delivered again (already recorded)", claimed.webhook_id)
        return
    values: dict[str, object] = {"attempts": claimed.attempts, "last_error": error}
    if claimed.attempts >= outbox.max_attempts:
        values["failed_at"] = now
    else:
        values["next_attempt_at"] = now + backoff(claimed.attempts)
    changed = connection.execute(
        update(table).where(held & c.cancelled_at.is_(None)).values(values)
    )
    if changed.rowcount == 1:
        if "failed_at" in values:
            report.dead_lettered += 1
        else:
            report.retried += 1
        return
    # Cancelled during the post: it stays cancelled, with the attempt noted.
    noted = connection.execute(
        update(table).where(held).values(attempts=claimed.attempts, last_error=error)
    )
    if noted.rowcount == 1:
        report.cancelled += 1


def dead_letters(connection: Connection, table: Table) -> list[Any]:
    """Rows given up on, newest first."""
    return list(
        connection.execute(
            select(table).where(table.c.failed_at.is_not(None)).order_by(table.c.failed_at.desc())
        )
    )
