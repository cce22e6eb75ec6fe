"""Hypothesis against the parsers that read what strangers send.

- the form parser (``capture/forms.py``): any body, in any of the three encodings, and
  any JSON shape, becomes a checked submission or a ``ZeropartyError`` (a 4xx), never
  another exception (a 500);
- the token readers (``zeroparty/tokens.py``, ``capture/tokens.py``,
  ``preference_center/tokens.py``): any string, and any payload signed with the right
  key (a key holder's bug, or a payload shape from an older version), is a valid claim
  or a ``TokenError``; a tampered token never reads as a different claim; a token of
  one purpose never opens another.

Receipt verification is fuzzed in ``tests/consent_ledger/test_receipts.py`` (mutated
receipts, re-signed or not, and arbitrary JSON: only ``ReceiptError``); not repeated.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from starlette.requests import Request

from capture import forms
from capture.definitions import Definition
from capture.services import DefinitionStore
from capture.tokens import CaptureTokens
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens
from tests.conftest import TEST_SECRET
from zeroparty.db import Database
from zeroparty.errors import ZeropartyError
from zeroparty.settings import Settings
from zeroparty.tokens import TokenError, TokenService, TokenWrongPurpose

FIXTURES = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(
    [
        "email",
        "name",
        "message",
        "company",
        "company_size",
        "interest",
        "timeline",
        "topics",
        "consent",
        "_rt",
        "_website",
        "_page",
        "_action",
        "_at",
        "unknown",
        "",
    ]
)
FIELD_VALUES = st.text(max_size=80) | st.lists(st.text(max_size=20), max_size=4) | JSON


@pytest.fixture
def contact(database: Database) -> Definition:
    with database.read() as session:
        return DefinitionStore().latest(session, "contact").definition


def _request(body: bytes, content_type: str) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/f/contact",
        "headers": [(b"content-type", content_type.encode("latin-1"))],
        "query_string": b"",
        # Inside an app (Starlette turns multipart errors into a 400 only there).
        "app": None,
    }
    return Request(scope, receive)


# A browser test earlier in the same session (Playwright's sync API) may leave an event
# loop running on this thread, where asyncio.run() refuses to start: a thread of its own.
_LOOP_THREAD = concurrent.futures.ThreadPoolExecutor(max_workers=1)


def _parse_then_clean(definition: Definition, body: bytes, content_type: str) -> None:
    try:
        read = forms.read_submission(_request(body, content_type))
        raw = _LOOP_THREAD.submit(asyncio.run, read).result()
        forms.clean(definition, raw)
    except ZeropartyError:
        pass


@FIXTURES
@given(body=st.binary(max_size=600))
def test_any_urlencoded_or_multipart_body_is_parsed_or_refused(
    contact: Definition, body: bytes
) -> None:
    for content_type in (
        forms.URLENCODED,
        f"{forms.MULTIPART}; boundary=xyz",
        forms.MULTIPART,
        forms.JSON,
    ):
        _parse_then_clean(contact, body, content_type)


@FIXTURES
@given(
    fields=st.dictionaries(FIELD_NAMES, FIELD_VALUES, max_size=8),
    consent=st.lists(st.text(max_size=20), max_size=4) | JSON,
    extra=st.dictionaries(st.sampled_from(["render_token", "page_url", "other"]), JSON, max_size=2),
)
def test_any_json_submission_is_cleaned_or_refused(
    contact: Definition, fields: dict[str, Any], consent: Any, extra: dict[str, Any]
) -> None:
    body = orjson.dumps({"fields": fields, "consent": consent, **extra})
    _parse_then_clean(contact, body, forms.JSON)
    pairs = [(k, v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in fields.items()]
    from urllib.parse import urlencode

    _parse_then_clean(contact, urlencode(pairs).encode(), forms.URLENCODED)


# --- tokens ------------------------------------------------------------------------------

LINKS = LinkTokens(Settings(database_url="sqlite://", secret_keys=(TEST_SECRET,)))
CAPTURE = CaptureTokens((TEST_SECRET,))


def _read_everywhere(token: str) -> None:
    """Every reader either accepts ``token`` or raises a ``TokenError``."""
    for reader in (CAPTURE.read_render, CAPTURE.read_confirm):
        with contextlib.suppress(TokenError):
            reader(token)
    with contextlib.suppress(TokenError):
        CAPTURE.result.read(token)
    for purpose in LinkPurpose:
        if purpose not in LINKS.services:
            continue
        with contextlib.suppress(TokenError):
            LINKS.read(purpose, token)


@settings(max_examples=300, deadline=None, database=None)
@given(
    token=st.text(max_size=300)
    | st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", max_size=300)
)
def test_any_string_is_a_claim_or_a_token_error(token: str) -> None:
    _read_everywhere(token)


@settings(max_examples=300, deadline=None, database=None)
@given(
    payload=JSON,
    salt=st.sampled_from(
        ["form-render", "form-result", "confirm", *(p.value for p in LinkPurpose)]
    ),
)
def test_any_payload_signed_with_our_key_is_a_claim_or_a_token_error(
    payload: Any, salt: str
) -> None:
    # Signed exactly as a TokenService signs (first key signs), any payload shape.
    token = str(URLSafeTimedSerializer([TEST_SECRET], salt=salt).dumps(payload))
    _read_everywhere(token)


@settings(max_examples=200, deadline=None, database=None)
@given(
    subject=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    version=st.integers(0, 1000),
    position=st.integers(min_value=0),
    replacement=st.characters(codec="ascii"),
)
def test_a_tampered_link_never_reads_as_another_claim(
    subject: str, version: int, position: int, replacement: str
) -> None:
    claim = LinkClaim(subject, version)
    token = LINKS.issue(LinkPurpose.MANAGE, claim)
    at = position % len(token)
    tampered = token[:at] + replacement + token[at + 1 :]
    try:
        read = LINKS.read(LinkPurpose.MANAGE, tampered)
    except TokenError:
        return
    # base64 may decode two spellings to the same bytes: then it is the same claim.
    assert (read.subject_id, read.version) == (subject, version)


@pytest.mark.parametrize(("issued", "read_as"), list(itertools.permutations(LinkPurpose, 2)))
def test_a_link_of_one_purpose_never_opens_another(
    issued: LinkPurpose, read_as: LinkPurpose
) -> None:
    token = LINKS.issue(issued, LinkClaim("a" * 32, 1, ("newsletter",)))
    with pytest.raises(TokenWrongPurpose):
        LINKS.read(read_as, token)


def test_capture_tokens_are_not_interchangeable() -> None:
    render = CAPTURE.issue_render(CAPTURE.new_render(1, {"newsletter": "0" * 64}))
    result = CAPTURE.result.issue({"d": 1})
    for token in (render, result):
        with pytest.raises(TokenWrongPurpose):
            CAPTURE.read_confirm(token)
    with pytest.raises(TokenError):
        CAPTURE.read_render(result)
    # A capture token is not a preference-center link, and the reverse.
    link = LINKS.issue(LinkPurpose.MANAGE, LinkClaim("a" * 32, 1))
    with pytest.raises(TokenError):
        CAPTURE.read_render(link)
    with pytest.raises(TokenError):
        LINKS.read(LinkPurpose.MANAGE, render)


def test_a_token_signed_with_another_key_is_refused() -> None:
    other = TokenService(("another-secret-key-0123456789",), "form-render", 60)
    with pytest.raises(TokenError):
        CAPTURE.read_render(other.issue({"d": 1, "t": 0, "n": {}, "s": "0" * 32}))
