"""Hand-off to the CRM: signed webhooks from the transactional outbox.

A stage change into a hand-off stage writes a ``scoring_webhooks`` row in its own
transaction (:func:`scoring.services._move`). :func:`dispatch_pending` delivers due rows
with the app's outbox dispatcher (:mod:`zeroparty.outbox`: claim in a short transaction,
post outside any, record the outcome; retries with exponential backoff, dead letters
after ``max_attempts``, each row ending in exactly one of delivered, dead-lettered or
cancelled, at least once with the same ``webhook-id``). What is scoring's own is the
claim: it re-checks the gating consent (share-locked on PostgreSQL; a lead who withdrew
is not sent: the row is cancelled) and builds the body from the current data.

A withdrawal committed before the claim stops the webhook; one that commits while the
post is on its way cannot recall it, and cancels any retry. A post the receiver took is
recorded as delivered even when a withdrawal cancelled the row during the flight,
because the CRM has it; a failed post leaves such a row cancelled.

Signatures follow the Standard Webhooks convention (:mod:`zeroparty.webhooks`): headers
``webhook-id`` (the row's id, the same on every retry), ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256 over "id.timestamp.body">``
keyed with the base64 part of a ``whsec_…`` secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from consent_ledger.entries import format_timestamp
from consent_ledger.read_model import lead_profiles
from scoring import consent, crm_notices, services
from scoring.models import Webhook
from zeroparty import outbox
from zeroparty.db import Database
from zeroparty.outbox import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    LEASE_MARGIN,
    Cancel,
    DispatchReport,
    backoff,
)
from zeroparty.webhooks import (
    SECRET_PREFIX,
    Delivery,
    Sender,
    WebhookSecretError,
    post,
    secret_key,
    sign,
    signed_headers,
    verify,
)

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "EVENT_TYPE",
    "LEASE_MARGIN",
    "SECRET_PREFIX",
    "Delivery",
    "DispatchConfig",
    "DispatchReport",
    "Sender",
    "WebhookSecretError",
    "backoff",
    "dead_letters",
    "dispatch_pending",
    "payload",
    "post",
    "secret_key",
    "sign",
    "verify",
]

EVENT_TYPE = "lead.stage_reached"

_hooks = cast(Table, Webhook.__table__)
_profiles = lead_profiles


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    url: str
    secret: str
    max_attempts: int = 8
    timeout: float = 5.0


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
                "current_stage": explanation.stage,
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
                "lead_types": sorted(explanation.lead_types),
                "temperature": explanation.temperature,
                "next_action": explanation.next_action,
            },
        }
    )


def _builder(config: DispatchConfig) -> outbox.Builder:
    def build(connection: Connection, row: Any, now: datetime) -> Delivery | Cancel:
        """The hand-off of a claimed row, or its cancellation when the lead may no
        longer be handed off; a withdrawal or erasure notice as it is."""
        if row.event != EVENT_TYPE:
            notice = crm_notices.payload(connection, row, now)
            headers = signed_headers(
                config.secret, row.id, int(now.timestamp()), notice, "zeroparty-webhooks"
            )
            return Delivery(config.url, headers, notice)
        active = services.active_model(connection)
        # Share-locked on PostgreSQL: a withdrawal of this lead commits before this
        # claim (and the row is cancelled here) or after it (and cancels what is left
        # to retry).
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
            return Cancel("consent")
        body = payload(connection, row, email, now)
        timestamp = int(now.timestamp())
        headers = signed_headers(config.secret, row.id, timestamp, body, "zeroparty-webhooks")
        return Delivery(config.url, headers, body)

    return build


def _outbox(config: DispatchConfig) -> outbox.Outbox:
    return outbox.Outbox(_hooks, _builder(config), config.max_attempts, config.timeout)


def dispatch_pending(
    database: Database,
    config: DispatchConfig,
    *,
    limit: int = 100,
    now: datetime | None = None,
    sender: Sender = post,
) -> DispatchReport:
    """Deliver up to ``limit`` due webhooks; see the module docstring."""
    return outbox.dispatch(database, _outbox(config), limit=limit, now=now, sender=sender)


def dead_letters(connection: Connection) -> list[Any]:
    """Webhooks given up on, newest first."""
    return outbox.dead_letters(connection, _hooks)
