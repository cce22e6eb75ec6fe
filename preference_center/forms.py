"""Input parsing for the preference center: one function per form, errors per field."""

from __future__ import annotations

import hmac
import re

from starlette.datastructures import FormData
from starlette.requests import Request

from consent_ledger.api import normalise_email
from preference_center.services import Choices
from zeroparty.errors import Forbidden, InvalidInput, PayloadTooLarge, UnsupportedMediaType

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 200
KEY_RE = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,63}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
ACTIONS = ("save", "unsubscribe_all")
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
ONE_CLICK_LENGTH = str(len(ONE_CLICK_BODY))


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(request: Request, *, max_fields: int = MAX_FIELDS) -> FormData:
    """The body as a form (urlencoded or multipart, no files), or a clear 4xx error."""
    if _content_type(request) not in FORM_TYPES:
        raise UnsupportedMediaType(
            "send the form as application/x-www-form-urlencoded or multipart/form-data"
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"the form is larger than {MAX_FORM_BYTES} bytes")
    form = await request.form(max_files=0, max_fields=max_fields, max_part_size=MAX_FORM_BYTES)
    for _name, value in form.multi_items():
        if not isinstance(value, str):
            raise InvalidInput("files are not accepted here")
    return form


def _keys(form: FormData, name: str) -> frozenset[str]:
    values = [str(v) for v in form.getlist(name)]
    bad = [v for v in values if not KEY_RE.match(v)]
    if bad:
        raise InvalidInput(f"{name}: {bad[0][:64]!r} is not a key", fields={name: "not a key"})
    return frozenset(values)


def parse_action(form: FormData) -> str:
    action = str(form.get("action", "save"))
    if action not in ACTIONS:
        raise InvalidInput("action: unknown action", fields={"action": "unknown action"})
    return action


def parse_choices(form: FormData) -> Choices:
    """The preference form: ``purpose`` and ``topic`` checkboxes (values are keys) and,
    per purpose shown, ``notice.KEY`` with the SHA-256 of the notice text shown."""
    notices: dict[str, str] = {}
    for name, value in form.multi_items():
        if not name.startswith("notice."):
            continue
        key, sha = name.removeprefix("notice."), str(value)
        if not KEY_RE.match(key) or not SHA256_RE.match(sha):
            raise InvalidInput(
                f"{name[:80]}: not a notice hash", fields={name[:80]: "not a notice hash"}
            )
        notices[key] = sha
    return Choices(_keys(form, "purpose"), _keys(form, "topic"), notices)


def parse_email(form: FormData) -> str:
    return normalise_email(form.get("email"))


def check_csrf(form: FormData, expected: str | None) -> None:
    """The form's ``csrf`` must equal the nonce bound into the session cookie."""
    given = form.get("csrf")
    if not expected or not isinstance(given, str) or not hmac.compare_digest(given, expected):
        raise Forbidden("this form has expired or did not come from this site; reload the page")


async def read_one_click(request: Request) -> None:
    """RFC 8058 section 3.1: the POST's body carries ``List-Unsubscribe=One-Click``, or a
    clear 4xx error. The body mail providers send is exactly that, urlencoded (the RFC's
    example), and is recognised as it is, without building a form; any other body is
    read as a form (:func:`read_form`) and checked (:func:`check_one_click`), with
    their answers. Only a body that declares its length is read first (never more than
    that one's length)."""
    if (
        _content_type(request) == FORM_TYPES[0]
        and request.headers.get("content-length") == ONE_CLICK_LENGTH
        and await request.body() == ONE_CLICK_BODY
    ):
        return
    check_one_click(await read_form(request, max_fields=10))


def check_one_click(form: FormData) -> None:
    """RFC 8058 section 3.1: the body carries ``List-Unsubscribe=One-Click``."""
    if form.get("List-Unsubscribe") != "One-Click":
        reason = "must be One-Click (RFC 8058)"
        raise InvalidInput(f"List-Unsubscribe: {reason}", fields={"List-Unsubscribe": reason})
