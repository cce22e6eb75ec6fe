"""Reading and checking a submission: one place for every input rule.

A submission arrives urlencoded, as multipart form data, or as JSON
(``{"fields": {...}, "consent": [...], "render_token": "..."}``). Whatever the
encoding, it becomes a :class:`RawSubmission`, then :func:`clean` checks it against the
definition it was rendered from. Nothing here touches the database: a submission
that fails these checks writes nothing at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from capture.definitions import CHOICE_TYPES, Definition, FieldSpec, FieldType
from capture.errors import UnknownField
from consent_ledger.api import InvalidEmail, normalise_email
from zeroparty.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from zeroparty.free_text import (
    has_control_characters,
    normalise_newlines,
    without_control_characters,
)
from zeroparty.i18n import N_

MAX_BODY_BYTES = 64 * 1024
MAX_FIELDS = 200

RENDER_FIELD = "_rt"
HONEYPOT = "_website"
PAGE_URL = "_page"
ACTION = "_action"
AT_STEP = "_at"
META_NAMES = frozenset({RENDER_FIELD, HONEYPOT, PAGE_URL, ACTION, AT_STEP})
JSON_KEYS = frozenset({"fields", "consent", "render_token", "page_url"})

URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"


@dataclass(slots=True)
class RawSubmission:
    """The submission as sent: values by name, ticked purposes, and our hidden fields."""

    values: dict[str, list[str]] = field(default_factory=dict)
    consent: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    is_json: bool = False

    def add(self, name: str, value: str) -> None:
        if name == "consent":
            self.consent.append(value)
        elif name in META_NAMES:
            self.meta[name] = value
        else:
            self.values.setdefault(name, []).append(value)


@dataclass(frozen=True, slots=True)
class CleanSubmission:
    """Checked values of the declared fields (absent: not given) and ticked purposes."""

    values: Mapping[str, tuple[str, ...]]
    consent: tuple[str, ...]
    email: str | None

    def request_sha256(self) -> str:
        """A digest of what was submitted, whatever the encoding (idempotency check)."""
        canonical = orjson.dumps(
            {"v": {k: list(v) for k, v in self.values.items()}, "c": sorted(self.consent)},
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(canonical).hexdigest()


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the submission is larger than {limit // 1024} KB")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"the submission is larger than {limit // 1024} KB")
    return bytes(body)


async def read_submission(request: Request) -> RawSubmission:
    """Parse the body by its content type; 415, 413 or 422 when it cannot be read."""
    kind = media_type(request)
    if kind not in (URLENCODED, MULTIPART, JSON):
        raise UnsupportedMediaType(
            "send the form as application/x-www-form-urlencoded, multipart/form-data "
            "or application/json"
        )
    body = await read_body(request)
    if kind == JSON:
        return _from_json(body)
    if kind == MULTIPART:
        return await _from_multipart(request, body)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError as exc:
        raise InvalidInput("the submission is not UTF-8 text") from exc
    except ValueError as exc:
        raise InvalidInput(f"at most {MAX_FIELDS} fields") from exc
    raw = RawSubmission()
    for name, value in pairs:
        raw.add(name, value)
    return raw


async def _from_multipart(request: Request, body: bytes) -> RawSubmission:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replayed = Request(request.scope, replay)
    try:
        form = await replayed.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_BODY_BYTES)
    except HTTPException as exc:
        raise InvalidInput(f"the form data cannot be read: {exc.detail}") from exc
    raw = RawSubmission()
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                raise InvalidInput("files cannot be uploaded here", fields={name: "no files"})
            raw.add(name, value)
    finally:
        await form.close()
    return raw


def _from_json(body: bytes) -> RawSubmission:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    unknown = sorted(set(data) - JSON_KEYS)
    if unknown:
        raise UnknownField(
            f"unknown keys: {', '.join(unknown)} (known: {', '.join(sorted(JSON_KEYS))})",
            fields=dict.fromkeys(unknown, "unknown key"),
        )
    raw = RawSubmission(is_json=True)
    fields = data.get("fields", {})
    if not isinstance(fields, dict):
        raise InvalidInput("fields must be an object", fields={"fields": "must be an object"})
    if len(fields) > MAX_FIELDS:
        raise InvalidInput(f"at most {MAX_FIELDS} fields")
    problems: dict[str, str] = {}
    for name, value in fields.items():
        if name == "consent" or name in META_NAMES:
            problems[name] = "not a field: use the top-level keys"
        elif isinstance(value, str):
            raw.values[name] = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            raw.values[name] = list(value)
        else:
            problems[name] = "must be text or a list of texts"
    consent = data.get("consent", [])
    if not isinstance(consent, list) or not all(isinstance(p, str) for p in consent):
        problems["consent"] = "must be a list of purpose keys"
    else:
        raw.consent = list(consent)
    for key, meta in (("render_token", RENDER_FIELD), ("page_url", PAGE_URL)):
        value = data.get(key)
        if isinstance(value, str):
            raw.meta[meta] = value
        elif value is not None:
            problems[key] = "must be a string"
    if problems:
        raise InvalidInput("the submission has invalid values", fields=problems)
    return raw


def _check_field(spec: FieldSpec, values: list[str]) -> tuple[tuple[str, ...], str | None]:
    """The field's clean values and, if unfit, why (said to the visitor)."""
    multiline = spec.type is FieldType.TEXTAREA
    if multiline:
        values = [normalise_newlines(v) for v in values]
    elif spec.type is FieldType.HIDDEN:
        # Filled from the page's address, not typed: the visitor could not remove what
        # an error would ask them to remove.
        values = [without_control_characters(v) for v in values]
    cleaned = tuple(v.strip() for v in values if v.strip())
    if any(has_control_characters(v, multiline=multiline) for v in cleaned):
        if multiline:
            return (), N_("Remove the invisible control characters (line breaks may stay)")
        return (), N_("Remove the line breaks and invisible control characters")
    if not cleaned:
        if spec.required:
            if spec.type is FieldType.EMAIL:
                return (), N_("Enter your email address")
            if spec.multiple or spec.type in CHOICE_TYPES:
                return (), N_("Choose an option")
            return (), N_("This field is required")
        return (), None
    if len(cleaned) > 1 and not spec.multiple:
        return (), "send one value only"
    for value in cleaned:
        if len(value) > spec.max_length:
            return (), N_("Use at most %(count)s characters", count=spec.max_length)
    if spec.type in CHOICE_TYPES:
        allowed = {c.value for c in spec.choices}
        if any(v not in allowed for v in cleaned):
            return (), N_("Choose one of the options shown")
        return tuple(dict.fromkeys(cleaned)), None
    if spec.type is FieldType.EMAIL:
        try:
            return (normalise_email(cleaned[0]),), None
        except InvalidEmail as exc:
            return (), N_("Enter a valid email address (%(reason)s)", reason=exc.fields["email"])
    return cleaned, None


def clean(definition: Definition, raw: RawSubmission, *, answers: bool = True) -> CleanSubmission:
    """Check ``raw`` against ``definition``: declared fields only, each within its rules.

    Quiz answers are passed through as sent (``answers``) and checked by the quiz walk.
    Raises :class:`UnknownField` or :class:`InvalidInput` naming every bad field.
    """
    problems: dict[str, str] = {}
    unknown: dict[str, str] = {}
    values: dict[str, tuple[str, ...]] = {}
    questions = {q.key for q in definition.questions()}
    for name in raw.values:
        if definition.field_named(name) is None and not (answers and name in questions):
            unknown[name[:64]] = "not a field of this form"
    for spec in definition.fields:
        cleaned, problem = _check_field(spec, raw.values.get(spec.name, []))
        if problem is not None:
            problems[spec.name] = problem
        elif cleaned:
            values[spec.name] = cleaned
    if answers:
        for key in questions:
            sent = tuple(v for v in raw.values.get(key, []) if v)
            if any(len(v) > 64 or "\x00" in v for v in sent):
                problems[key] = N_("Choose one of the options shown")
            elif sent:
                values[key] = sent
    consent = tuple(dict.fromkeys(raw.consent))
    offered = [p for p in consent if p not in definition.consent]
    if offered:
        unknown["consent"] = f"not offered by this form: {', '.join(p[:64] for p in offered)}"
    if unknown:
        problems.update(unknown)
        raise UnknownField(
            "the submission has fields this form does not have: nothing was stored",
            fields=problems,
        )
    if problems:
        raise InvalidInput(N_("Please correct the marked fields."), fields=problems)
    email_field = next((f for f in definition.fields if f.type is FieldType.EMAIL), None)
    email = values.get(email_field.name, (None,))[0] if email_field else None
    if consent and email is None:
        name = email_field.name if email_field else "email"
        raise InvalidInput(
            N_("An email address is needed to record your choices."),
            fields={name: N_("Enter your email address to record the boxes you ticked")},
        )
    return CleanSubmission(values=values, consent=consent, email=email)
