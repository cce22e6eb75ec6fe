"""Input checks for scoring's JSON API: one place per input, every problem at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from consent_ledger.api import InvalidEmail, normalise_email
from consent_ledger.entries import parse_timestamp
from scoring import qualification
from scoring.lifecycle import DEFAULT as DEFAULT_LIFECYCLE
from scoring.lifecycle import Lifecycle
from scoring.outcomes import Outcome
from scoring.services import EventIn
from scoring.sla import SlaState
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


# Event senders name the same leads again and again: the check of an address (the
# costliest part of a batch's validation) is kept for the most recent ones. A refused
# address raises and is not kept.
_normalised_email = lru_cache(maxsize=8192)(normalise_email)


def email_field(value: object, key: str, errors: dict[str, str]) -> str:
    """``value`` as a normalised e-mail address; a reason under ``key`` in ``errors``
    (and an empty string back) when it is not one."""
    try:
        return _normalised_email(value) if isinstance(value, str) else normalise_email(value)
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
        email = email_field(item.get("email"), f"{where}.email", errors)
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
    stage: str
    limit: int
    after: str


def parse_leads_query(
    params: Mapping[str, str], lifecycle: Lifecycle = DEFAULT_LIFECYCLE
) -> LeadsQuery:
    """``?stage=&limit=&cursor=``: a stage of ``lifecycle`` after its first."""
    errors: dict[str, str] = {}
    for key in sorted(set(params) - {"stage", "limit", "cursor"}):
        errors[key[:64]] = "unknown parameter"
    stage = lifecycle.parse(params.get("stage", ""))
    if stage is None or stage == lifecycle.start:
        names = ", ".join(lifecycle.beyond_start)
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
    stage: str
    reason: str
    recycle: bool


def parse_stage_move(
    body: Mapping[str, Any], lifecycle: Lifecycle = DEFAULT_LIFECYCLE
) -> StageMove:
    """``{"email", "stage", "reason", "recycle": false}``, the stage one of
    ``lifecycle``'s."""
    errors: dict[str, str] = {}
    for key in sorted(set(body) - {"email", "stage", "reason", "recycle"}):
        errors[key[:64]] = "unknown field"
    email = email_field(body.get("email"), "email", errors)
    stage = lifecycle.parse(body.get("stage"))
    if stage is None:
        errors["stage"] = "must be one of " + ", ".join(lifecycle.stages)
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


@dataclass(frozen=True, slots=True)
class LeadTypeIn:
    email: str
    type: str
    reason: str


def parse_lead_type(body: Mapping[str, Any]) -> LeadTypeIn:
    """``{"email", "type", "reason"}``: a lead type given by hand, with its reason."""
    errors: dict[str, str] = {}
    for key in sorted(set(body) - {"email", "type", "reason"}):
        errors[key[:64]] = "unknown field"
    email = email_field(body.get("email"), "email", errors)
    lead_type = body.get("type")
    if not isinstance(lead_type, str) or not 0 < len(lead_type) <= 32:
        errors["type"] = "must be the name of a declared lead type"
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        errors["reason"] = "is required: a string of at most 500 characters"
    if errors:
        raise _fail(errors)
    return LeadTypeIn(email, str(lead_type), str(reason).strip())


DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9-]+(\.[a-z0-9-]+)+$")


@dataclass(frozen=True, slots=True)
class AccountsQuery:
    stage: str | None
    limit: int
    after: str


def _limit(params: Mapping[str, str], errors: dict[str, str]) -> int:
    text_ = params.get("limit", "100")
    limit = int(text_) if text_.isdigit() else 0
    if not 1 <= limit <= MAX_PAGE:
        errors["limit"] = f"must be a whole number from 1 to {MAX_PAGE}"
    return limit


def parse_accounts_query(
    params: Mapping[str, str], lifecycle: Lifecycle = DEFAULT_LIFECYCLE
) -> AccountsQuery:
    """``?stage=&limit=&cursor=``: stage optional (any stage of ``lifecycle``)."""
    errors: dict[str, str] = {}
    for key in sorted(set(params) - {"stage", "limit", "cursor"}):
        errors[key[:64]] = "unknown parameter"
    stage = None
    if "stage" in params:
        stage = lifecycle.parse(params["stage"])
        if stage is None:
            errors["stage"] = "must be one of " + ", ".join(lifecycle.stages)
    limit = _limit(params, errors)
    after = params.get("cursor", "")
    if after and not DOMAIN_RE.match(after):
        errors["cursor"] = "not a cursor from a previous page"
    if errors:
        raise _fail(errors)
    return AccountsQuery(stage, limit, after)


def parse_domain(raw: str) -> str:
    domain = raw.strip().lower()
    if not DOMAIN_RE.match(domain):
        raise _fail({"domain": "not a domain name"})
    return domain


@dataclass(frozen=True, slots=True)
class QualificationIn:
    email: str
    values: dict[str, str | None]


def bant_value(name: str, value: object, errors: dict[str, str]) -> str | None:
    """One BANT value checked and written as text (``None`` clears the field)."""
    if value is None:
        return None
    if name == "budget":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= qualification.MAX_BUDGET
        ):
            errors[name] = f"must be an amount from 0 to {qualification.MAX_BUDGET:.0f}, or null"
            return None
        return f"{value:g}" if isinstance(value, float) else str(value)
    if name == "need":
        if not isinstance(value, str) or not value.strip() or len(value) > qualification.MAX_NEED:
            errors[name] = f"must be text of 1 to {qualification.MAX_NEED} characters, or null"
            return None
        return value.strip()
    allowed = (
        qualification.AUTHORITY_VALUES if name == "authority" else qualification.TIMELINE_VALUES
    )
    if value not in allowed:
        errors[name] = f"must be one of {', '.join(allowed)}, or null"
        return None
    return str(value)


def parse_qualification(body: Mapping[str, Any]) -> QualificationIn:
    """``{"email", "budget", "authority", "need", "timeline"}``: at least one of the four."""
    errors: dict[str, str] = {}
    for key in sorted(set(body) - {"email", *qualification.BANT_FIELDS}):
        errors[key[:64]] = "unknown field"
    email = email_field(body.get("email"), "email", errors)
    values = {
        name: bant_value(name, body[name], errors)
        for name in qualification.BANT_FIELDS
        if name in body
    }
    if not values and "email" not in errors:
        errors["budget"] = "give at least one of " + ", ".join(qualification.BANT_FIELDS)
    if errors:
        raise _fail(errors)
    return QualificationIn(email, values)


def parse_ack(body: Mapping[str, Any]) -> str:
    """``{"email"}``: the lead whose current hand-off sales acknowledges."""
    errors: dict[str, str] = {}
    for key in sorted(set(body) - {"email"}):
        errors[key[:64]] = "unknown field"
    email = email_field(body.get("email"), "email", errors)
    if errors:
        raise _fail(errors)
    return email


@dataclass(frozen=True, slots=True)
class SlaQuery:
    state: SlaState | None
    limit: int
    after: str


def parse_sla_query(params: Mapping[str, str]) -> SlaQuery:
    """``?state=due_soon|breached&limit=&cursor=`` (no state: every running clock)."""
    errors: dict[str, str] = {}
    for key in sorted(set(params) - {"state", "limit", "cursor"}):
        errors[key[:64]] = "unknown parameter"
    state = None
    if "state" in params:
        try:
            state = SlaState(params["state"])
        except ValueError:
            errors["state"] = "must be due_soon or breached"
    limit = _limit(params, errors)
    after = params.get("cursor", "")
    if after and not re.fullmatch(r"[0-9a-f]{32}", after):
        errors["cursor"] = "not a cursor from a previous page"
    if errors:
        raise _fail(errors)
    return SlaQuery(state, limit, after)


@dataclass(frozen=True, slots=True)
class OutcomeIn:
    email: str
    outcome: Outcome
    decided_at: datetime | None


def parse_outcome(body: Mapping[str, Any], *, now: datetime | None = None) -> OutcomeIn:
    """``{"email", "outcome": "won"|"lost", "decided_at"}`` (RFC 3339, optional: now;
    not in the future)."""
    errors: dict[str, str] = {}
    for key in sorted(set(body) - {"email", "outcome", "decided_at"}):
        errors[key[:64]] = "unknown field"
    email = email_field(body.get("email"), "email", errors)
    raw = body.get("outcome")
    outcome = Outcome(raw) if isinstance(raw, str) and raw in set(Outcome) else None
    if outcome is None:
        errors["outcome"] = "is required: won or lost"
    decided_at = None
    if body.get("decided_at") is not None:
        try:
            decided_at = parse_timestamp(body["decided_at"])
        except (ValueError, TypeError) as exc:
            errors["decided_at"] = str(exc)
        else:
            if decided_at > (now or utcnow()) + CLOCK_SKEW:
                errors["decided_at"] = "lies in the future"
    if errors or outcome is None:
        raise _fail(errors)
    return OutcomeIn(email, outcome, decided_at)
