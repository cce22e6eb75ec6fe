"""Inbound unsubscribes: a sending tool's unsubscribe, spam complaint or hard bounce
becomes a ledger withdrawal.

``POST /api/inbound/{provider}`` takes one of:

- ``generic``: the documented JSON shape ``{"events": [{"id", "type":
  "unsubscribe"|"complaint"|"hard_bounce", "email", "purpose" (optional),
  "occurred_at" (RFC 3339, optional)}]}``, signed per Standard Webhooks with the
  ``whsec_`` secret ``zeroparty inbound set generic`` prints;
- ``mailgun``: Mailgun's webhook body (``signature`` {timestamp, token, signature}:
  hex HMAC-SHA256 of timestamp + token keyed with the webhook signing key, and
  ``event-data``): ``unsubscribed``, ``complained``, ``failed`` with severity
  ``permanent``;
- ``sendgrid``: SendGrid's Event Webhook (a JSON array), signed with ECDSA P-256 over
  ``X-Twilio-Email-Event-Webhook-Timestamp`` + the raw body, checked with the
  verification key (base64 DER public key): ``unsubscribe``, ``group_unsubscribe``,
  ``spamreport``, ``bounce`` (not ``blocked``, a temporary refusal).

Other events of a provider are acknowledged and ignored. A signature that does not
verify (or a timestamp more than five minutes from our clock) changes nothing, is
logged and answered 401. The purpose withdrawn is the one the event names (generic
``purpose``; Mailgun's ``user-variables.purpose``; SendGrid's custom argument
``purpose``), or else every communication purpose the lead permits or has pending. The
entry's source is ``api``, its ``source_ref`` ``inbound:<provider>``, its evidence the
provider, its event name and id. Replays are harmless: a purpose already withdrawn is
left as it is, and an event older than the lead's latest change of that purpose (a
re-grant since) changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentChange, ConsentLedger, InvalidEmail, normalise_email
from consent_ledger.entries import parse_timestamp
from consent_ledger.read_model import consent_states
from consent_sync.subscription_models import InboundSource
from zeroparty.db import utcnow
from zeroparty.errors import InvalidInput, NotFound, Unauthorized
from zeroparty.webhooks import WebhookSecretError, generate_secret, secret_key, verify

log = logging.getLogger("zeroparty.inbound")

TOLERANCE_SECONDS = 300
TIME_PRECISION = timedelta(seconds=2)
MAX_EVENTS = 1000
COMMUNICATION = "communication"

_sources = cast(Table, InboundSource.__table__)


class Kind(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"
    HARD_BOUNCE = "hard_bounce"


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One event of a sending tool, in our terms."""

    event_id: str
    kind: Kind
    provider_event: str
    email: str
    purpose: str | None
    occurred_at: datetime | None


@dataclass(slots=True)
class InboundReport:
    withdrawn: int = 0
    unchanged: int = 0
    unknown_leads: int = 0
    ignored: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "withdrawn": self.withdrawn,
            "unchanged": self.unchanged,
            "unknown_leads": self.unknown_leads,
            "ignored": self.ignored,
        }


class BadSignature(Unauthorized):
    code = "bad_signature"


# -- signatures -------------------------------------------------------------------------


def _fresh(timestamp: str | int | float, now: float) -> bool:
    try:
        return abs(now - float(timestamp)) <= TOLERANCE_SECONDS
    except (TypeError, ValueError):
        return False


def mailgun_signed(key: str, signature: Mapping[str, Any], now: float) -> bool:
    """Mailgun: hex HMAC-SHA256 of timestamp + token, keyed with the signing key."""
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not all(isinstance(v, str) for v in (timestamp, token, given)):
        return False
    expected = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return _fresh(str(timestamp), now) and hmac.compare_digest(expected, str(given))


def sendgrid_signed(key: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """SendGrid: ECDSA (P-256, SHA-256) over the timestamp header + the raw body."""
    signature = headers.get("x-twilio-email-event-webhook-signature")
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp")
    if not signature or not timestamp or not _fresh(timestamp, now):
        return False
    try:
        public_key = load_der_public_key(base64.b64decode(key))
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return False
        public_key.verify(
            base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError):
        return False
    return True


# -- provider formats -------------------------------------------------------------------


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body: not JSON", fields={"body": "not JSON"}) from exc


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def parse_generic(
    key: str, headers: Mapping[str, str], body: bytes, now: float
) -> list[InboundEvent]:
    try:
        signed = verify(key, headers, body, tolerance=TOLERANCE_SECONDS, now=now)
    except WebhookSecretError:
        signed = False
    if not signed:
        raise BadSignature("the Standard Webhooks signature does not verify")
    document = _json(body)
    items = document.get("events") if isinstance(document, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_EVENTS:
        reason = f"a list of 1 to {MAX_EVENTS} events"
        raise InvalidInput(f"events: {reason}", fields={"events": reason})
    events: list[InboundEvent] = []
    for n, item in enumerate(items):
        where = f"events[{n}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: an object", fields={where: "an object"})
        kind = item.get("type")
        if kind not in tuple(Kind):
            reason = "type: one of " + ", ".join(Kind)
            raise InvalidInput(f"{where}.{reason}", fields={f"{where}.type": reason})
        event_id, email, purpose = item.get("id"), item.get("email"), item.get("purpose")
        if not isinstance(event_id, str) or not event_id or len(event_id) > 200:
            raise InvalidInput(f"{where}.id: required", fields={f"{where}.id": "required"})
        if not isinstance(email, str):
            raise InvalidInput(f"{where}.email: required", fields={f"{where}.email": "required"})
        if purpose is not None and not isinstance(purpose, str):
            raise InvalidInput(f"{where}.purpose: text", fields={f"{where}.purpose": "text"})
        occurred_at = None
        if item.get("occurred_at") is not None:
            try:
                occurred_at = parse_timestamp(item["occurred_at"])
            except ValueError as exc:
                field = f"{where}.occurred_at"
                raise InvalidInput(f"{field}: {exc}", fields={field: str(exc)}) from exc
        events.append(InboundEvent(event_id, Kind(kind), kind, email, purpose, occurred_at))
    return events


def parse_mailgun(
    key: str, headers: Mapping[str, str], body: bytes, now: float
) -> list[InboundEvent]:
    document = _json(body)
    signature = document.get("signature") if isinstance(document, dict) else None
    if not isinstance(signature, dict) or not mailgun_signed(key, signature, now):
        raise BadSignature("the Mailgun signature does not verify")
    data = document.get("event-data")
    if not isinstance(data, dict):
        raise InvalidInput("event-data: required", fields={"event-data": "required"})
    name = data.get("event")
    if name == "unsubscribed":
        kind = Kind.UNSUBSCRIBE
    elif name == "complained":
        kind = Kind.COMPLAINT
    elif name == "failed" and data.get("severity") == "permanent":
        kind = Kind.HARD_BOUNCE
    else:
        return []
    variables = data.get("user-variables")
    purpose = variables.get("purpose") if isinstance(variables, dict) else None
    recipient = data.get("recipient")
    if not isinstance(recipient, str):
        raise InvalidInput("event-data.recipient: required", fields={"recipient": "required"})
    return [
        InboundEvent(
            str(data.get("id") or signature.get("token")),
            kind,
            str(name) if kind is not Kind.HARD_BOUNCE else "failed:permanent",
            recipient,
            purpose if isinstance(purpose, str) else None,
            _epoch(data.get("timestamp")),
        )
    ]


_SENDGRID_KINDS = {
    "unsubscribe": Kind.UNSUBSCRIBE,
    "group_unsubscribe": Kind.UNSUBSCRIBE,
    "spamreport": Kind.COMPLAINT,
    "bounce": Kind.HARD_BOUNCE,
}


def parse_sendgrid(
    key: str, headers: Mapping[str, str], body: bytes, now: float
) -> list[InboundEvent]:
    if not sendgrid_signed(key, headers, body, now):
        raise BadSignature("the SendGrid signature does not verify")
    document = _json(body)
    if not isinstance(document, list) or len(document) > MAX_EVENTS:
        reason = f"a list of at most {MAX_EVENTS} events"
        raise InvalidInput(f"body: {reason}", fields={"body": reason})
    events: list[InboundEvent] = []
    for item in document:
        if not isinstance(item, dict):
            continue
        kind = _SENDGRID_KINDS.get(str(item.get("event")))
        # A "blocked" bounce is a temporary refusal, not a hard bounce.
        if kind is None or (kind is Kind.HARD_BOUNCE and item.get("type") == "blocked"):
            continue
        email, purpose = item.get("email"), item.get("purpose")
        if not isinstance(email, str):
            continue
        events.append(
            InboundEvent(
                str(item.get("sg_event_id") or ""),
                kind,
                str(item["event"]),
                email,
                purpose if isinstance(purpose, str) else None,
                _epoch(item.get("timestamp")),
            )
        )
    return events


Parser = Callable[[str, Mapping[str, str], bytes, float], list[InboundEvent]]
PROVIDERS: dict[str, Parser] = {
    "generic": parse_generic,
    "mailgun": parse_mailgun,
    "sendgrid": parse_sendgrid,
}


# -- configuration ----------------------------------------------------------------------


def check_key(provider: str, key: str | None) -> str:
    """The key to store for ``provider`` (a new ``whsec_`` secret for generic when none
    is given); :class:`InvalidInput` when it cannot check a signature."""
    if provider not in PROVIDERS:
        reason = "one of " + ", ".join(PROVIDERS)
        raise InvalidInput(f"provider: {reason}", fields={"provider": reason})
    if provider == "generic":
        key = key or generate_secret()
        try:
            secret_key(key)
        except WebhookSecretError as exc:
            raise InvalidInput(f"key: {exc}", fields={"key": str(exc)}) from exc
        return key
    if not key or len(key) > 500:
        raise InvalidInput("key: required", fields={"key": "required"})
    if provider == "sendgrid":
        try:
            public_key = load_der_public_key(base64.b64decode(key, validate=True))
        except ValueError as exc:
            reason = "SendGrid's verification key: base64 of a DER public key"
            raise InvalidInput(f"key: {reason}", fields={"key": reason}) from exc
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise InvalidInput("key: not an EC public key", fields={"key": "not an EC key"})
    return key


def set_source(session: Session, provider: str, key: str | None) -> str:
    """Store what checks ``provider``'s signatures (replacing the old); returns it."""
    key = check_key(provider, key)
    values = {"provider": provider, "key": key, "updated_at": utcnow()}
    dialect = session.connection().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_sources).values(values)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["provider"], set_={"key": key, "updated_at": values["updated_at"]}
        )
    )
    return key


# -- recording --------------------------------------------------------------------------


def receive(
    session: Session,
    ledger: ConsentLedger,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> InboundReport:
    """Check and record one inbound request in the caller's write transaction. Raises
    :class:`NotFound` (unknown or unconfigured provider), :class:`BadSignature` or
    :class:`InvalidInput`; nothing is recorded then."""
    parser = PROVIDERS.get(provider)
    key = (
        session.execute(select(_sources.c.key).where(_sources.c.provider == provider)).scalar()
        if parser is not None
        else None
    )
    if parser is None or key is None:
        raise NotFound(f"no inbound provider {provider!r} is set up")
    events = parser(key, headers, body, time.time() if now is None else now)
    return _record(session, ledger, provider, events)


def _record(
    session: Session, ledger: ConsentLedger, provider: str, events: Sequence[InboundEvent]
) -> InboundReport:
    report = InboundReport()
    facts = ledger.purpose_facts(session)
    known = {key for key, *_ in facts}
    communication = {key for key, _title, category, *_ in facts if category == COMMUNICATION}
    for event in events:
        if event.purpose is not None and event.purpose not in known:
            field = "purpose"
            raise InvalidInput(
                f"purpose: {event.purpose!r} is not a purpose", fields={field: "unknown purpose"}
            )
    changes: list[ConsentChange] = []
    now = utcnow()
    for event in events:
        try:
            email = normalise_email(event.email)
        except InvalidEmail:
            report.ignored += 1
            continue
        subject_id = ledger.find_lead(session, email)
        if subject_id is None:
            report.unknown_leads += 1
            continue
        occurred_at = min(event.occurred_at or now, now)
        wanted = {event.purpose} if event.purpose else communication
        states = _states(session.connection(), subject_id)
        picked: dict[str, datetime] = {}
        for purpose in sorted(wanted):
            live, last = states.get(purpose, (False, None))
            if not live:
                continue
            if last is None or last <= occurred_at:
                picked[purpose] = occurred_at
            elif last <= occurred_at + TIME_PRECISION:
                # Providers stamp whole seconds: an event of the same second as the grant
                # came after it, and is recorded at the grant's time, not before it.
                picked[purpose] = last
        if not picked:
            report.unchanged += 1
            continue
        report.withdrawn += 1
        changes.extend(
            ConsentChange(
                subject_id=subject_id,
                purpose=purpose,
                action=ConsentAction.WITHDRAWN,
                source=ConsentSource.API,
                method=ConsentMethod.ELECTRONIC,
                occurred_at=at,
                source_ref=f"inbound:{provider}",
                evidence={
                    "provider": provider,
                    "event": event.provider_event,
                    "kind": event.kind.value,
                    "event_id": event.event_id[:200],
                },
            )
            for purpose, at in picked.items()
        )
    ledger.record(session, changes)
    return report


def _states(connection: Connection, subject_id: str) -> dict[str, tuple[bool, datetime | None]]:
    """Per purpose: whether a withdrawal would change something (permitted, or a grant
    pending its confirmation) and when the latest change of it occurred."""
    rows = connection.execute(
        select(
            consent_states.c.purpose_key,
            consent_states.c.status,
            consent_states.c.permitted,
            consent_states.c.last_occurred_at,
        ).where(consent_states.c.subject_id == subject_id)
    )
    return {
        row.purpose_key: (bool(row.permitted) or row.status == "pending", row.last_occurred_at)
        for row in rows
    }


def refused(provider: str, reason: str, client: str | None) -> None:
    """Log a refused inbound request (nothing was recorded)."""
    log.warning("inbound %s from %s refused: %s", provider[:32], client or "?", reason)
