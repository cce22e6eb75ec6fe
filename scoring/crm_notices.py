"""The CRM that received a hand-off is told when that lead withdraws or is erased.

A lead handed to the CRM (a ``lead.stage_reached`` webhook it took) leaves a copy there.
When the gating consent ends (withdrawn, refused, GPC opt-out, expired) the consent
listener (:func:`scoring.services.on_consent_change`) queues a
``lead.consent_withdrawn`` webhook in the transaction that records the change; when the
lead is erased, scoring's erasure (:func:`scoring.personal.erase_scoring`) queues
``lead.erased`` in the erasure's transaction (GDPR Art. 17(2), 19: recipients are told).
Both go through the same outbox, signing and retries as the hand-off; neither carries
the address (the CRM knows the lead by the ``lead_id`` of its hand-off), and neither is
held back by the consent gate, since telling the CRM is what the change asks for. A
lead never handed off (no hand-off delivered) queues nothing.

The row's ``stage`` is the stage the lead was handed off at; ``consent_seq`` the ledger
entry that ended the consent (``None`` for an erasure).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, insert, or_, select
from sqlalchemy.engine import Connection

from consent_ledger.entries import LedgerEntry, format_timestamp
from consent_ledger.read_model import ledger_entries
from scoring.models import Webhook

HANDOFF_EVENT = "lead.stage_reached"
WITHDRAWN_EVENT = "lead.consent_withdrawn"
ERASED_EVENT = "lead.erased"

_hooks = cast(Table, Webhook.__table__)


def _queue(
    connection: Connection, subject_id: str, event: str, stage: str, seq: int | None, now: datetime
) -> None:
    connection.execute(
        insert(_hooks).values(
            id=f"msg_{uuid.uuid4().hex}",
            subject_id=subject_id,
            stage=stage,
            event=event,
            consent_seq=seq,
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )


def queue_withdrawal(
    connection: Connection, subject_id: str, stage: str, entry: LedgerEntry, now: datetime
) -> None:
    """Tell the CRM that a lead it was handed (at ``stage``) ended its consent."""
    _queue(connection, subject_id, WITHDRAWN_EVENT, stage, entry.seq, now)


def handed_off_stage(connection: Connection, subject_id: str) -> str | None:
    """The stage of the lead's latest hand-off the CRM may hold, or ``None``: one it
    took, and also one posted at least once (a failed post may still have reached it)
    or on its way now (leased), since telling a CRM to delete what it lacks is
    harmless and leaving a copy is not."""
    c = _hooks.c
    return connection.execute(
        select(c.stage)
        .where(
            c.subject_id == subject_id,
            c.event == HANDOFF_EVENT,
            or_(c.delivered_at.is_not(None), c.attempts > 0, c.next_attempt_at > c.created_at),
        )
        .order_by(c.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()


def queue_erasure(connection: Connection, subject_id: str, stage: str, now: datetime) -> None:
    """Tell the CRM to delete its copy of an erased lead (queued after the lead's other
    scoring rows are deleted: this row names only the pseudonymous id)."""
    _queue(connection, subject_id, ERASED_EVENT, stage, None, now)


def payload(connection: Connection, row: Any, now: datetime) -> bytes:
    """The body of a withdrawal or erasure notice."""
    data: dict[str, object] = {"lead_id": row.subject_id, "handed_off_stage": row.stage}
    if row.event == ERASED_EVENT:
        data["erased"] = True
    else:
        entry = connection.execute(
            select(
                ledger_entries.c.purpose_key, ledger_entries.c.action, ledger_entries.c.occurred_at
            ).where(ledger_entries.c.seq == row.consent_seq)
        ).one()
        data.update(
            purpose=entry.purpose_key,
            action=entry.action,
            occurred_at=format_timestamp(entry.occurred_at),
            consent_entry=row.consent_seq,
        )
    return orjson.dumps({"type": row.event, "timestamp": format_timestamp(now), "data": data})
