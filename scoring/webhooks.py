"""Hand-off to the CRM: signed webhooks from the transactional outbox.

A stage change into a hand-off stage writes a ``scoring_webhooks`` row in its own
transaction (:func:`scoring.services._move`). :func:`dispatch_pending` delivers due rows,
one transaction per row: it locks the row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several dispatchers never take the same row; SQLite's single writer does the same),
re-checks the gating consent under a share lock (a lead who withdrew meanwhile is not
sent: the row is cancelled), builds the body from the current data, posts it with a
timeout and records the outcome. A failure is retried with exponential backoff; after
``max_attempts`` the row is dead-lettered (``failed_at``) and listed by
:func:`dead_letters`.

Because the consent row stays share-locked during the post, a withdrawal of that lead
waits for the post to end (at most the timeout): either it committed first and nothing
is sent, or the post happened before it committed.

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
from consent_ledger.models import SubjectProfile
from scoring import consent, services
from scoring.models import Webhook
from zeroparty.db import Database, utcnow

log = logging.getLogger("zeroparty.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 6 * 3600
EVENT_TYPE = "lead.stage_reached"

_hooks = cast(Table, Webhook.__table__)
_profiles = cast(Table, SubjectProfile.__table__)


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
            connection = session.connection()
            row = connection.execute(_due(moment, connection.dialect.name)).first()
            if row is None:
                break
            _dispatch_one(connection, config, row, moment, sender, report)
    return report


def _dispatch_one(
    connection: Connection,
    config: DispatchConfig,
    row: Any,
    now: datetime,
    sender: Sender,
    report: DispatchReport,
) -> None:
    where = _hooks.c.id == row.id
    active = services.active_model(connection)
    gate = (
        consent.gate_states(connection, [row.subject_id], active.model.purpose, lock=True).get(
            row.subject_id
        )
        if active is not None
        else None
    )
    email = connection.execute(
        select(_profiles.c.email).where(_profiles.c.subject_id == row.subject_id)
    ).scalar_one_or_none()
    if gate is None or not gate.permitted or email is None:
        connection.execute(
            update(_hooks).where(where).values(cancelled_at=now, cancel_reason="consent")
        )
        report.cancelled += 1
        return
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
    attempts = row.attempts + 1
    try:
        sender(delivery, config.timeout)
    except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("webhook %s not delivered (attempt %d): %s", row.id, attempts, reason)
        values: dict[str, object] = {"attempts": attempts, "last_error": reason}
        if attempts >= config.max_attempts:
            values["failed_at"] = now
            report.dead_lettered += 1
        else:
            values["next_attempt_at"] = now + backoff(attempts)
            report.retried += 1
        connection.execute(update(_hooks).where(where).values(values))
        return
    connection.execute(
        update(_hooks).where(where).values(attempts=attempts, delivered_at=now, last_error=None)
    )
    report.delivered += 1


def dead_letters(connection: Connection) -> list[Any]:
    """Webhooks given up on, newest first."""
    return list(
        connection.execute(
            select(_hooks)
            .where(_hooks.c.failed_at.is_not(None))
            .order_by(_hooks.c.failed_at.desc())
        )
    )
