"""Input checks for scoring's JSON API: one place per input, every problem at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from consent_ledger.entries import parse_timestamp
from consent_ledger.subjects import InvalidEmail, normalise_email
from scoring.services import EventIn
from scoring.stages import Stage
from zeroparty.db import utcnow
from zeroparty.errors import InvalidInput

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 4096
CLOCK_SKEW = timedelta(minutes=5)
EVENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
EVENT_KEYS = {"id", "email", "type", "occurred_at", "properties"}
MAX_PAGE = 500


def _fail(errors: dict[str, str], what: str = "invalid request") -> InvalidInput:
    summary = "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:10])
    return InvalidInput(f"{what}: {summary}", fields=errors)


def _email(value: object, key: str, errors: dict[str, str]) -> str:
    try:
        return normalise_email(value)
    except InvalidEmail as exc:
        errors[key] = exc.fields.get("email", "not a valid email address")
        return ""


def parse_events(body: Mapping[str, Any], *, now: datetime | None = None) -> list[EventIn]:
    """``{"events": [{"id", "email", "type", "occurred_at", "properties"}]}``: 1 to
    1,000 events, ids unique in the batch, times RFC 3339 and not in the future."""
    errors: dict[str, str] = {}
    for key in sorted(set(body) - {"events"}):
        errors[key[:64]] = "unknown field"
    raw = body.get("events")
    if not isinstance(raw, list) or not raw:
        errors["events"] = "must be a non-empty list of events"
        raise _fail(errors, "malformed batch")
    if len(raw) > MAX_BATCH:
        raise _fail({"events": f"at most {MAX_BATCH} events per batch"}, "malformed batch")
    latest = (now or utcnow()) + CLOCK_SKEW
    events: list[EventIn] = []
    ids: set[str] = set()
    for index, item in enumerate(raw):
        where = f"events[{index}]"
        if not isinstance(item, dict):
            errors[where] = "must be an object"
            continue
        for key in sorted(set(item) - EVENT_KEYS):
            errors[f"{where}.{key[:64]}"] = "unknown field"
        event_id = item.get("id")
        if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
            errors[f"{where}.id"] = "is required: 1 to 100 letters, digits or . _ : -"
            event_id = ""
        elif event_id in ids:
            errors[f"{where}.id"] = "is repeated in this batch"
        ids.add(event_id)
        email = _email(item.get("email"), f"{where}.email", errors)
        event_type = item.get("type")
        if not isinstance(event_type, str) or not event_type or len(event_type) > 64:
            errors[f"{where}.type"] = "is required: an event type name"
            event_type = ""
        occurred_at = latest
        try:
            occurred_at = parse_timestamp(item.get("occurred_at"))  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            errors[f"{where}.occurred_at"] = str(exc)
        if occurred_at > latest:
            errors[f"{where}.occurred_at"] = "lies in the future"
        properties = item.get("properties", {})
        if not isinstance(properties, dict):
            errors[f"{where}.properties"] = "must be an object"
            properties = {}
        elif len(orjson.dumps(properties)) > MAX_PROPERTIES_BYTES:
            errors[f"{where}.properties"] = f"at most {MAX_PROPERTIES_BYTES} bytes of JSON"
        events.append(EventIn(index, event_id, email, event_type, occurred_at, properties))
    if errors:
        raise _fail(errors, "malformed batch; nothing was stored")
    return events


@dataclass(frozen=True, slots=True)
class LeadsQuery:
    stage: Stage
    limit: int
    after: str


def parse_leads_query(params: Mapping[str, str]) -> LeadsQuery:
    errors: dict[str, str] = {}
    for key in sorted(set(params) - {"stage", "limit", "cursor"}):
        errors[key[:64]] = "unknown parameter"
    stage = Stage.parse(params.get("stage", ""))
    if stage is None or stage in (Stage.VISITOR, Stage.LEAD):
        names = ", ".join(s.value for s in Stage if s.rank > Stage.LEAD.rank)
        errors["stage"] = f"is required: one of {names}"
    limit_text = params.get("limit", "100")
    limit = int(limit_text) if limit_text.isdigit() else 0
    if not 1 <= limit <= MAX_PAGE:
        errors["limit"] = f"must be a whole number from 1 to {MAX_PAGE}"
    after = params.get("cursor", "")
    if after and not re.fullmatch(r"[0-9a-f]{32}", after):
        errors["cursor"] = "not a cursor from a previous page"
    if errors or stage is None:
        raise _fail(errors)
    return LeadsQuery(stage, limit, after)


@dataclass(frozen=True, slots=True)
class StageMove:
    email: str
    stage: Stage
    reason: str
    recycle: bool


def parse_stage_move(body: Mapping[str, Any]) -> StageMove:
    """``{"email", "stage", "reason", "recycle": false}``."""
    errors: dict[str, str] = {}
    for key in sorted(set(body) - {"email", "stage", "reason", "recycle"}):
        errors[key[:64]] = "unknown field"
    email = _email(body.get("email"), "email", errors)
    stage = Stage.parse(body.get("stage"))
    if stage is None or stage is Stage.VISITOR:
        errors["stage"] = "must be one of " + ", ".join(s.value for s in Stage if s.rank > 0)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        errors["reason"] = "must be a string of at most 500 characters"
        reason = ""
    recycle = body.get("recycle", False)
    if not isinstance(recycle, bool):
        errors["recycle"] = "must be true or false"
        recycle = False
    if errors or stage is None:
        raise _fail(errors)
    return StageMove(email, stage, reason, recycle)
