"""Parsing the console's inputs: one place per input, clear errors, nothing changed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

from consent_ledger.actions import ConsentAction, ConsentSource
from consent_ledger.filters import LedgerFilter
from zeroparty.errors import InvalidInput

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EXPORT_FORMATS = ("csv", "jsonl")


def _bad(name: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{name}: {problem}", fields={name: problem})


def parse_moment(raw: str, name: str = "at") -> datetime:
    """``YYYY-MM-DDTHH:MM[:SS]`` (what a datetime-local input sends), or a date, read as
    UTC; an explicit offset (RFC 3339) is honoured."""
    text = raw.strip()
    if len(text) > 40:
        raise _bad(name, "too long")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad(name, "a date and time like 2026-11-25T14:00 (UTC)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 1970 <= moment.year <= 9998:
        raise _bad(name, "out of range")
    return moment.astimezone(UTC)


def parse_day(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError as exc:
        raise _bad(name, "a date like 2026-11-25") from exc


def optional(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    return value or None


def parse_ledger_filter(params: Mapping[str, str], purposes: list[str]) -> LedgerFilter:
    """The ledger filter from query parameters; unknown values are refused by name."""
    purpose = optional(params, "purpose")
    if purpose is not None and purpose not in purposes:
        raise _bad("purpose", "unknown purpose")
    action = optional(params, "action")
    if action is not None and action not in {a.value for a in ConsentAction}:
        raise _bad("action", "unknown action")
    source = optional(params, "source")
    if source is not None and source not in {s.value for s in ConsentSource}:
        raise _bad("source", "unknown source")
    form = optional(params, "form")
    if form is not None and not SLUG.match(form):
        raise _bad("form", "a form or quiz slug (lower-case letters, digits, - and _)")
    since_raw, until_raw = optional(params, "from"), optional(params, "to")
    since = until = None
    if since_raw:
        since = datetime.combine(parse_day(since_raw, "from"), time(), tzinfo=UTC)
    if until_raw:
        until = datetime.combine(parse_day(until_raw, "to"), time(), tzinfo=UTC) + timedelta(days=1)
    if since and until and since >= until:
        raise _bad("to", "must not be before from")
    return LedgerFilter(
        purpose=purpose, action=action, source=source, form=form, since=since, until=until
    )


def filter_query(ledger_filter: LedgerFilter) -> dict[str, str]:
    """The filter back as query parameters (for links to the next page and exports)."""
    query = {
        "purpose": ledger_filter.purpose or "",
        "action": ledger_filter.action or "",
        "source": ledger_filter.source or "",
        "form": ledger_filter.form or "",
        "from": ledger_filter.since.date().isoformat() if ledger_filter.since else "",
        "to": (ledger_filter.until - timedelta(days=1)).date().isoformat()
        if ledger_filter.until
        else "",
    }
    return {key: value for key, value in query.items() if value}


def parse_cursor(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise _bad("before", "an entry number")
    return int(raw)


def parse_export_format(raw: str | None) -> str:
    if raw not in EXPORT_FORMATS:
        raise _bad("format", "csv or jsonl")
    return raw


def parse_subject_id(raw: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", raw):
        raise _bad("lead", "a lead id (32 hexadecimal digits)")
    return raw
