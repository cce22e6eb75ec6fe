"""Outgoing subscriptions: consent changes pushed to the endpoints staff registered.

Staff (admin) register an endpoint with the event types it wants
(``zeroparty subscription add URL --events consent.withdrawn,consent.erased``); its
Standard Webhooks secret is made then and shown once. Every consent change is a ledger
entry, and the ledger is the transactional outbox of these events: an entry commits
with the change it records, and entries are never changed, so nothing acknowledged is
lost and no write path pays a statement for it. :func:`fan_out` turns the entries after
each subscription's ``after_seq`` into its delivery rows and moves ``after_seq``, in one
transaction (so an entry is turned into a subscription's delivery exactly once: a
subscription row is locked by the one fan-out that handles it, SQLite has one writer,
and a delivery's id ``msg_<subscription>_<seq>`` is its primary key).
:func:`dispatch` then delivers due rows with the app's outbox dispatcher
(:mod:`zeroparty.outbox`: retries with exponential backoff, dead letters, at least once
with the same ``webhook-id``).

A message is ``{"type": "consent.<change type>", "timestamp", "data": <the change as
GET /api/changes shows it>}``, built when it is sent: a lead erased since its change
was made is named only by its pseudonymous id and the SHA-256 of its address.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from consent_ledger.entries import format_timestamp
from consent_sync.change_views import change_json
from consent_sync.changes import ChangeType, changes_page, ledger_head
from consent_sync.subscription_models import Subscription, SubscriptionDelivery
from zeroparty import outbox
from zeroparty.db import Database, utcnow
from zeroparty.errors import InvalidInput, NotFound
from zeroparty.outbox import Cancel, DispatchReport
from zeroparty.settings import Settings
from zeroparty.webhooks import Delivery, Sender, generate_secret, post, signed_headers

EVENT_PREFIX = "consent."
EVENT_TYPES = tuple(EVENT_PREFIX + t.value for t in ChangeType)
"""Every event type a subscription may ask for: ``consent.`` and the change feed's type."""
FAN_OUT_BATCH = 1000
USER_AGENT = "zeroparty-subscriptions"

_subs = cast(Table, Subscription.__table__)
_deliveries = cast(Table, SubscriptionDelivery.__table__)


@dataclass(frozen=True, slots=True)
class NewSubscription:
    id: int
    secret: str
    """The signing secret: shown once, to be given to the receiver."""


def parse_events(raw: str | Iterable[str]) -> list[str]:
    """Event types from ``a,b c`` (or a list); ``*`` is every type. Unknown ones and an
    empty list are refused (:class:`InvalidInput` on ``events``)."""
    words = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    if "*" in words:
        return list(EVENT_TYPES)
    unknown = sorted({w for w in words if w not in EVENT_TYPES})
    if unknown or not words:
        reason = ("unknown: " + ", ".join(unknown) + "; " if unknown else "") + (
            "one or more of " + ", ".join(EVENT_TYPES) + " (or *)"
        )
        raise InvalidInput(f"events: {reason}", fields={"events": reason})
    return sorted(set(words), key=EVENT_TYPES.index)


def parse_url(raw: str) -> str:
    """An absolute http(s) URL with a host, at most 2000 characters."""
    url = raw.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        reason = "an absolute http:// or https:// URL with a host"
        raise InvalidInput(f"url: {reason}", fields={"url": reason})
    return url


def add_subscription(
    session: Session,
    url: str,
    events: str | Iterable[str],
    *,
    created_by: str,
    description: str = "",
) -> NewSubscription:
    """Register an endpoint; it is sent the changes recorded from now on."""
    values = {
        "url": parse_url(url),
        "events": " ".join(parse_events(events)),
        "description": description.strip()[:200],
        "secret": generate_secret(),
        "active": True,
        "after_seq": ledger_head(session.connection()),
        "created_at": utcnow(),
        "created_by": created_by,
    }
    new_id = session.execute(insert(_subs).values(values).returning(_subs.c.id)).scalar_one()
    return NewSubscription(new_id, str(values["secret"]))


def remove_subscription(session: Session, subscription_id: int) -> int:
    """Stop an endpoint: nothing more is made for it, what waits is cancelled. Returns
    how many deliveries were cancelled; :class:`NotFound` for an unknown or removed one."""
    now = utcnow()
    connection = session.connection()
    stopped = connection.execute(
        update(_subs)
        .where(_subs.c.id == subscription_id, _subs.c.active)
        .values(active=False, removed_at=now)
    )
    if stopped.rowcount != 1:
        raise NotFound(f"no active subscription {subscription_id}")
    cancelled = connection.execute(
        update(_deliveries)
        .where(
            _deliveries.c.subscription_id == subscription_id,
            _deliveries.c.delivered_at.is_(None),
            _deliveries.c.failed_at.is_(None),
            _deliveries.c.cancelled_at.is_(None),
        )
        .values(cancelled_at=now, cancel_reason="subscription removed")
    )
    return int(cancelled.rowcount)


def subscriptions(connection: Connection, *, include_removed: bool = False) -> list[Any]:
    """Every subscription (without its secret), oldest first."""
    stmt = select(*(c for c in _subs.c if c.name != "secret")).order_by(_subs.c.id)
    if not include_removed:
        stmt = stmt.where(_subs.c.active)
    return list(connection.execute(stmt))


def delivery_log(
    connection: Connection,
    *,
    subscription_id: int | None = None,
    dead_only: bool = False,
    limit: int = 100,
) -> list[Any]:
    """Deliveries, newest first: every column of the outbox row."""
    stmt = select(_deliveries).order_by(_deliveries.c.created_at.desc(), _deliveries.c.id.desc())
    if subscription_id is not None:
        stmt = stmt.where(_deliveries.c.subscription_id == subscription_id)
    if dead_only:
        stmt = stmt.where(_deliveries.c.failed_at.is_not(None))
    return list(connection.execute(stmt.limit(limit)))


def fan_out_once(connection: Connection, batch: int = FAN_OUT_BATCH) -> tuple[int, bool]:
    """Turn up to ``batch`` ledger entries into the deliveries the active subscriptions
    want, in the caller's write transaction. Returns how many deliveries were made and
    whether more entries wait."""
    stmt = select(_subs.c.id, _subs.c.events, _subs.c.after_seq).where(_subs.c.active)
    if connection.dialect.name == "postgresql":
        # One fan-out per subscription at a time; another dispatcher skips it.
        stmt = stmt.with_for_update(skip_locked=True)
    subs = list(connection.execute(stmt.order_by(_subs.c.id)))
    if not subs:
        return 0, False
    low = min(s.after_seq for s in subs)
    page = changes_page(connection, low, batch)
    if not page.changes:
        return 0, False
    now = utcnow()
    rows: list[dict[str, object]] = []
    for sub in subs:
        wanted = set(sub.events.split())
        for change in page.changes:
            event = EVENT_PREFIX + change.type.value
            if change.seq > sub.after_seq and event in wanted:
                rows.append(
                    {
                        "id": f"msg_{sub.id}_{change.seq}",
                        "subscription_id": sub.id,
                        "seq": change.seq,
                        "event_type": event,
                        "created_at": now,
                        "attempts": 0,
                        "next_attempt_at": now,
                    }
                )
    if rows:
        connection.execute(insert(_deliveries), rows)
    moved = [s.id for s in subs if s.after_seq < page.next_after]
    if moved:
        connection.execute(
            update(_subs).where(_subs.c.id.in_(moved)).values(after_seq=page.next_after)
        )
    return len(rows), page.has_more


def fan_out(database: Database, *, batch: int = FAN_OUT_BATCH, max_batches: int = 1000) -> int:
    """:func:`fan_out_once` until the ledger's head, a transaction per batch."""
    made = 0
    for _ in range(max_batches):
        with database.write() as session:
            count, more = fan_out_once(session.connection(), batch)
        made += count
        if not more:
            break
    return made


def _build(connection: Connection, row: Any, now: datetime) -> Delivery | Cancel:
    sub = connection.execute(
        select(_subs.c.url, _subs.c.secret, _subs.c.active).where(_subs.c.id == row.subscription_id)
    ).first()
    if sub is None or not sub.active:
        return Cancel("subscription removed")
    [change] = changes_page(connection, row.seq - 1, 1).changes
    body = orjson.dumps(
        {"type": row.event_type, "timestamp": format_timestamp(now), "data": change_json(change)}
    )
    timestamp = int(now.timestamp())
    return Delivery(sub.url, signed_headers(sub.secret, row.id, timestamp, body, USER_AGENT), body)


def subscription_outbox(settings: Settings) -> outbox.Outbox:
    return outbox.Outbox(
        _deliveries, _build, settings.webhook_max_attempts, settings.webhook_timeout_seconds
    )


@dataclass(slots=True)
class SyncReport:
    made: int
    sent: DispatchReport


def dispatch(
    database: Database,
    settings: Settings,
    *,
    limit: int = 100,
    now: datetime | None = None,
    sender: Sender = post,
) -> SyncReport:
    """Fan the new ledger entries out, then deliver up to ``limit`` due messages."""
    made = fan_out(database)
    sent = outbox.dispatch(
        database, subscription_outbox(settings), limit=limit, now=now, sender=sender
    )
    return SyncReport(made, sent)


def event_types_help() -> Sequence[str]:
    return EVENT_TYPES
