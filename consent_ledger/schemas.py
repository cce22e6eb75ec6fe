"""Input parsing for the ledger's JSON API: one function per input, errors per field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.entries import parse_timestamp
from consent_ledger.evidence import EvidenceError, clean_evidence
from consent_ledger.services import ConsentRecord
from consent_ledger.site import JURISDICTION_RE, LOCALE_RE
from consent_ledger.subjects import InvalidEmail, normalise_email
from zeroparty.errors import InvalidInput
from zeroparty.free_text import has_control_characters

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
API_ACTIONS = {
    ConsentAction.GRANTED,
    ConsentAction.WITHDRAWN,
    ConsentAction.REFUSED,
    ConsentAction.CONFIRMED,
    # A Global Privacy Control signal the site's backend received (issue 16): an opt-out
    # of a sale-or-sharing purpose (SPEC rule 7); method gpc-signal, no evidence needed.
    ConsentAction.GPC_OPT_OUT,
}
API_METHODS = {
    ConsentMethod.ELECTRONIC,
    ConsentMethod.WRITTEN,
    ConsentMethod.VERBAL,
    ConsentMethod.CHECKBOX,
    ConsentMethod.DOUBLE_OPT_IN,
    ConsentMethod.EMAIL_LINK,
}
CONSENT_POST_KEYS = {
    "email",
    "purpose",
    "action",
    "notice_sha256",
    "occurred_at",
    "source",
    "method",
    "evidence",
    "jurisdiction",
    "locale",
    "name",
}


def _string(body: Mapping[str, Any], key: str, errors: dict[str, str], *,
            required: bool = False, limit: int = 200) -> str | None:  # fmt: skip
    value = body.get(key)
    if value is None:
        if required:
            errors[key] = "is required"
        return None
    if not isinstance(value, str) or not value.strip():
        errors[key] = "must be a non-empty string"
        return None
    if len(value) > limit:
        errors[key] = f"at most {limit} characters"
        return None
    if has_control_characters(value.strip()):
        errors[key] = "must be one line of text without control characters"
        return None
    return value.strip()


def _pattern(value: str | None, key: str, pattern: re.Pattern[str], hint: str,
             errors: dict[str, str]) -> str | None:  # fmt: skip
    if value is not None and not pattern.match(value):
        errors[key] = hint
        return None
    return value


def _fail(errors: dict[str, str]) -> InvalidInput:
    summary = "; ".join(f"{k}: {v}" for k, v in errors.items())
    return InvalidInput(f"invalid request: {summary}", fields=errors)


def parse_email(value: object, errors: dict[str, str]) -> str | None:
    try:
        return normalise_email(value)
    except InvalidEmail as exc:
        errors.update(exc.fields)
        return None


def parse_consent_post(body: Mapping[str, Any]) -> ConsentRecord:
    """Check a ``POST /api/consent`` body; every problem is reported at once."""
    errors: dict[str, str] = {}
    for key in sorted(set(body) - CONSENT_POST_KEYS):
        errors[key[:64]] = "unknown field"
    email = parse_email(body.get("email"), errors)
    purpose = _string(body, "purpose", errors, required=True, limit=64)
    action_text = _string(body, "action", errors, required=True, limit=32)
    action = None
    if action_text is not None:
        try:
            action = ConsentAction(action_text)
        except ValueError:
            action = None
        if action not in API_ACTIONS:
            errors["action"] = "must be one of " + ", ".join(sorted(a.value for a in API_ACTIONS))
            action = None
    notice = _pattern(
        _string(body, "notice_sha256", errors, limit=64),
        "notice_sha256",
        SHA256_RE,
        "must be the 64 lower-case hex digits of the notice text's SHA-256",
        errors,
    )
    if action is ConsentAction.GRANTED and notice is None and "notice_sha256" not in errors:
        errors["notice_sha256"] = "is required when consent is granted"
    occurred_at: datetime | None = None
    occurred_text = body.get("occurred_at")
    if occurred_text is not None:
        try:
            occurred_at = parse_timestamp(occurred_text)
        except ValueError as exc:
            errors["occurred_at"] = str(exc)
    source_label = _string(body, "source", errors, required=True)
    gpc = action is ConsentAction.GPC_OPT_OUT
    default_method = ConsentMethod.GPC_SIGNAL if gpc else ConsentMethod.ELECTRONIC
    method_text = _string(body, "method", errors, limit=32) or default_method.value
    method = None
    try:
        method = ConsentMethod(method_text)
    except ValueError:
        method = None
    if gpc and method is not ConsentMethod.GPC_SIGNAL and "method" not in errors:
        errors["method"] = "a GPC signal's method is gpc-signal (or leave it out)"
        method = None
    elif not gpc and method not in API_METHODS:
        errors["method"] = "must be one of " + ", ".join(sorted(m.value for m in API_METHODS))
    jurisdiction = _pattern(
        _string(body, "jurisdiction", errors, limit=16),
        "jurisdiction",
        JURISDICTION_RE,
        "must be an ISO 3166 code such as DE or US-CA",
        errors,
    )
    locale = _pattern(
        _string(body, "locale", errors, limit=16),
        "locale",
        LOCALE_RE,
        "must be a locale such as en",
        errors,
    )
    name = _string(body, "name", errors)
    raw_evidence = body.get("evidence")
    evidence: dict[str, Any] = {}
    if raw_evidence is None:
        if action in (ConsentAction.GRANTED, ConsentAction.CONFIRMED):
            errors["evidence"] = "is required: how and where the consent was gathered"
    elif not isinstance(raw_evidence, dict) or not raw_evidence:
        errors["evidence"] = "must be a non-empty JSON object"
    else:
        try:
            evidence = clean_evidence(raw_evidence)
        except EvidenceError as exc:
            errors["evidence"] = exc.fields["evidence"]
    if errors or not (email and purpose and action and method and source_label):
        raise _fail(errors)
    return ConsentRecord(
        email=email,
        purpose=purpose,
        action=action,
        source=ConsentSource.API,
        method=method,
        notice_sha256=notice,
        occurred_at=occurred_at,
        source_ref=source_label,
        jurisdiction=jurisdiction,
        locale=locale,
        name=name,
        evidence=evidence,
    )


def parse_consent_query(params: Mapping[str, str]) -> tuple[str, str, datetime | None]:
    """``email``, ``purpose`` and optional ``at`` of ``GET /api/consent``."""
    errors: dict[str, str] = {}
    for key in sorted(set(params) - {"email", "purpose", "at"}):
        errors[key[:64]] = "unknown parameter"
    email = parse_email(params.get("email"), errors)
    purpose = params.get("purpose", "").strip()
    if not purpose:
        errors["purpose"] = "is required"
    at = None
    if "at" in params:
        try:
            at = parse_timestamp(params["at"])
        except ValueError as exc:
            errors["at"] = str(exc)
    if errors or email is None:
        raise _fail(errors)
    return email, purpose, at
