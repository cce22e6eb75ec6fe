"""Hand-off to the CRM: signed webhooks from the transactional outbox.

A stage change into a hand-off stage writes a ``scoring_webhooks`` row in its own
transaction (:func:`scoring.services._move`). :func:`dispatch_pending` delivers due rows
one at a time, in three steps, and never holds a transaction during the network call
(on SQLite a transaction open for the length of a slow CRM's answer would stop every
other writer):

1. *claim*, in a short transaction: take a due row (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL; SQLite's single writer serialises), re-check the gating consent (a lead
   who withdrew is not sent: the row is cancelled), build the body from the current
   data, and lease the row (``next_attempt_at`` moves past the post's timeout) so no
   other dispatcher takes it meanwhile;
2. *post* it, with a timeout, outside any transaction;
3. *record* the outcome in a second short transaction: delivered, or retried with
   exponential backoff, or dead-lettered (``failed_at``) after ``max_attempts`` and
   listed by :func:`dead_letters`.

A withdrawal committed before the claim stops the webhook; one that commits while the
post is on its way cannot recall it, and cancels any retry. A row ends in exactly one of
delivered, dead-lettered or cancelled: the record step updates the row only while it is
still this dispatcher's claim (its lease is the claim's token) and not ended, and checks
the row count. A post the receiver took is recorded as delivered even when a withdrawal
cancelled the row during the flight, because the CRM has it; a failed post leaves such a
row cancelled, never retried nor dead-lettered. A dispatcher that dies between claim and
record leaves the lease to expire, and the webhook is sent again with the same
``webhook-id``: delivery is at least once, and receivers deduplicate by id as Standard
Webhooks asks; the dispatcher whose lease lapsed records nothing.

Signatures follow the Standard Webhooks convention: headers ``webhook-id`` (the row's
id, the same on every retry), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256 over "id.timestamp.body">`` keyed with the
base64 part of a ``whsec_…`` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Table, select, update
from sqlalchemy.engine import Connection

from consent_ledger.entries import format_timestamp
from consent_ledger.read_model import lead_profiles
from scoring import consent, services
from scoring.models import Webhook
from zeroparty.db import Database, utcnow

log = logging.getLogger("zeroparty.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 6 * 3600
EVENT_TYPE = "lead.stage_reached"

_hooks = cast(Table, Webhook.__table__)
_profiles = lead_profiles


class WebhookSecretError(ValueError):
    pass


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError as exc:
        raise WebhookSecretError("a webhook secret is whsec_ and base64") from exc
    if len(key) < 24:
        raise WebhookSecretError("a webhook secret needs at least 24 random bytes")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for this message."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does: recompute the signature, compare in constant time, and
    refuse timestamps further than ``tolerance`` seconds from ``now`` (replays)."""
    try:
        webhook_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        signatures = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if now is not None and abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, webhook_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


@dataclass(frozen=True, slots=True)
class Delivery:
    url: str
    headers: dict[str, str]
    body: bytes


Sender = Callable[[Delivery, float], None]


def post(delivery: Delivery, timeout: float) -> None:
    """POST with the standard library; any non-2xx answer or network error raises."""
    request = urllib.request.Request(  # noqa: S310 (the URL is the operator's setting)
        delivery.url, data=delivery.body, headers=delivery.headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
        answer.read(65536)


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    url: str
    secret: str
    max_attempts: int = 8
    timeout: float = 5.0


@dataclass(slots=True)
class DispatchReport:
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_CAP_SECONDS))


def payload(connection: Connection, row: Any, email: str, now: datetime) -> bytes:
    explanation = services.explain(connection, row.subject_id)
    return orjson.dumps(
        {
            "type": EVENT_TYPE,
            "timestamp": format_timestamp(now),
            "data": {
                "lead_id": row.subject_id,
                "email": email,
                "stage": row.stage,
                "current_stage": explanation.stage.value,
                "score": explanation.score,
                "model_version": explanation.model_id,
                "points": [
                    {
                        "rule": p.rule,
                        "kind": p.kind,
                        "points": p.points,
                        "source": p.source,
                        "occurred_at": format_timestamp(p.occurred_at),
                        "consent_entry": p.consent_seq,
                    }
                    for p in explanation.points
                ],
                # Tags and quiz scores of the answers kept under live consent.
                "intent": explanation.intent.as_json(),
            },
        }
    )


def _due(now: datetime, dialect: str) -> Any:
    stmt = (
        select(_hooks)
        .where(
            _hooks.c.delivered_at.is_(None),
            _hooks.c.failed_at.is_(None),
            _hooks.c.cancelled_at.is_(None),
            _hooks.c.next_attempt_at <= now,
        )
        .order_by(_hooks.c.next_attempt_at, _hooks.c.id)
        .limit(1)
    )
    return stmt.with_for_update(skip_locked=True) if dialect == "postgresql" else stmt


LEASE_MARGIN = timedelta(seconds=60)


def dispatch_pending(
    database: Database,
    config: DispatchConfig,
    *,
    limit: int = 100,
    now: datetime | None = None,
    sender: Sender = post,
) -> DispatchReport:
    """Deliver up to ``limit`` due webhooks; see the module docstring."""
    report = DispatchReport()
    for _ in range(limit):
        moment = now or utcnow()
        with database.write() as session:
            claimed = _claim(session.connection(), config, moment, report)
        if claimed is None:
            break
        if claimed is _CANCELLED:
            continue
        assert isinstance(claimed, _Claim)
        error = _send(claimed, config, sender)
        with database.write() as session:
            _record(session.connection(), config, claimed, error, now or utcnow(), report)
    return report


@dataclass(frozen=True, slots=True)
class _Claim:
    webhook_id: str
    attempts: int
    delivery: Delivery
    lease: datetime  # the row's next_attempt_at while this claim holds it


_CANCELLED = object()


def _claim(
    connection: Connection, config: DispatchConfig, now: datetime, report: DispatchReport
) -> _Claim | object | None:
    """Take the next due row: ``None`` when there is none, :data:`_CANCELLED` when its
    lead may no longer be handed off, else what to post (the row is leased)."""
    row = connection.execute(_due(now, connection.dialect.name)).first()
    if row is None:
        return None
    where = _hooks.c.id == row.id
    active = services.active_model(connection)
    # Share-locked on PostgreSQL: a withdrawal of this lead commits before this claim
    # (and the row is cancelled here) or after it (and cancels what is left to retry).
    gates = (
        consent.gate_states(connection, [row.subject_id], active.model.purpose, lock=True)
        if active is not None
        else {}
    )
    gate = gates.get(row.subject_id)
    email = connection.execute(
        select(_profiles.c.email).where(_profiles.c.subject_id == row.subject_id)
    ).scalar_one_or_none()
    if gate is None or not gate.permitted or email is None:
        connection.execute(
            update(_hooks).where(where).values(cancelled_at=now, cancel_reason="consent")
        )
        report.cancelled += 1
        return _CANCELLED
    body = payload(connection, row, email, now)
    timestamp = int(now.timestamp())
    delivery = Delivery(
        config.url,
        {
            "content-type": "application/json",
            "user-agent": "zeroparty-webhooks",
            "webhook-id": row.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(config.secret, row.id, timestamp, body),
        },
        body,
    )
    lease = now + timedelta(seconds=config.timeout) + LEASE_MARGIN
    connection.execute(update(_hooks).where(where).values(next_attempt_at=lease))
    return _Claim(row.id, row.attempts + 1, delivery, lease)


def _send(claim: _Claim, config: DispatchConfig, sender: Sender) -> str | None:
    """Post it; the error as text, or ``None`` when the receiver took it."""
    try:
        sender(claim.delivery, config.timeout)
    except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.warning(
            "webhook %s not delivered (attempt %d): %s", claim.webhook_id, claim.attempts, reason
        )
        return reason
    return None


def _record(
    connection: Connection,
    config: DispatchConfig,
    claim: _Claim,
    error: str | None,
    now: datetime,
    report: DispatchReport,
) -> None:
    """Record the outcome of ``claim``'s post so that the row ends in one state.

    Every UPDATE here is conditional on the row not being delivered or dead-lettered,
    and its row count says whether it applied. A post the receiver took makes the row
    delivered, replacing a cancellation that landed meanwhile. A failure changes the row
    only while it is still this claim's (the lease it set: no other dispatcher has
    claimed or recorded it since) and not cancelled; on a cancelled row it only notes
    the attempt.
    """
    open_row = (
        (_hooks.c.id == claim.webhook_id)
        & _hooks.c.delivered_at.is_(None)
        & _hooks.c.failed_at.is_(None)
    )
    held = open_row & (_hooks.c.next_attempt_at == claim.lease)
    if error is None:
        # The CRM has it: a withdrawal committed during the post cannot recall it, so
        # the row is delivered, not cancelled (the lead's data is purged all the same).
        delivered = connection.execute(
            update(_hooks)
            .where(open_row)
            .values(
                attempts=claim.attempts,
                delivered_at=now,
                last_error=None,
                cancelled_at=None,
                cancel_reason=None,
            )
        )
        if delivered.rowcount == 1:
            report.delivered += 1
        else:
            log.info("webhook %s was delivered again (already recorded)", claim.webhook_id)
        return
    values: dict[str, object] = {"attempts": claim.attempts, "last_error": error}
    if claim.attempts >= config.max_attempts:
        values["failed_at"] = now
    else:
        values["next_attempt_at"] = now + backoff(claim.attempts)
    changed = connection.execute(
        update(_hooks).where(held & _hooks.c.cancelled_at.is_(None)).values(values)
    )
    if changed.rowcount == 1:
        if "failed_at" in values:
            report.dead_lettered += 1
        else:
            report.retried += 1
        return
    # Cancelled during the post (a withdrawal): it stays cancelled, with the attempt noted.
    noted = connection.execute(
        update(_hooks).where(held).values(attempts=claim.attempts, last_error=error)
    )
    if noted.rowcount == 1:
        report.cancelled += 1


def dead_letters(connection: Connection) -> list[Any]:
    """Webhooks given up on, newest first."""
    return list(
        connection.execute(
            select(_hooks)
            .where(_hooks.c.failed_at.is_not(None))
            .order_by(_hooks.c.failed_at.desc())
        )
    )
