"""Every kind of bad input: a clear error (next to the field, or as JSON) and nothing
written (every table a submission touches keeps its row count)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from tests.capture.conftest import find_all, one
from tests.capture.test_views_form import answers
from tests.conftest import TEST_SECRET
from zeroparty.db import Database

GOOD = {"email": "ann@example.com", "message": "Hello", "consent": "profiling"}


def _expired_token(render: Callable[..., str]) -> str:
    tokens = CaptureTokens((TEST_SECRET,))
    payload = tokens.read_render(render("contact"))
    real_time = time.time
    try:
        # itsdangerous stamps tokens with time.time(): sign one two days ago.
        time.time = lambda: real_time() - 2 * 24 * 3600  # type: ignore[assignment]
        return tokens.issue_render(payload)
    finally:
        time.time = real_time  # type: ignore[assignment]


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    code: str
    field: str | None
    data: Callable[[Callable[..., str]], dict[str, Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


CASES = [
    Case("invalid-email", 422, "invalid_input", "email",
         lambda r: {**GOOD, "email": "ann@", "_rt": r("contact")}),
    # No SMTPUTF8: a non-ASCII local part is refused (an internationalized domain is not).
    Case("internationalized-local-part", 422, "invalid_input", "email",
         lambda r: {**GOOD, "email": "jörg@example.com", "_rt": r("contact")}),
    Case("missing-required", 422, "invalid_input", "message",
         lambda r: {**GOOD, "message": "  ", "_rt": r("contact")}),
    Case("missing-email", 422, "invalid_input", "email",
         lambda r: {"message": "x", "_rt": r("contact")}),
    Case("unknown-field", 422, "unknown_field", "subject_id",
         lambda r: {**GOOD, "subject_id": "0" * 32, "_rt": r("contact")}),
    Case("oversized-field", 422, "invalid_input", "message",
         lambda r: {**GOOD, "message": "x" * 2001, "_rt": r("contact")}),
    Case("not-an-option", 422, "invalid_input", "company_size",
         lambda r: {**GOOD, "company_size": "huge", "_rt": r("contact")}),
    Case("two-values-for-one-field", 422, "invalid_input", "company",
         lambda r: {**GOOD, "company": ["A", "B"], "_rt": r("contact")}),
    Case("nul-character", 422, "invalid_input", "name",
         lambda r: {**GOOD, "name": "A\x00B", "_rt": r("contact")}),
    # One line of text: no line break, no other control character (C0, DEL, C1).
    Case("carriage-return-in-name", 422, "invalid_input", "name",
         lambda r: {**GOOD, "name": "Ann\rSmith", "_rt": r("contact")}),
    Case("line-feed-in-name", 422, "invalid_input", "name",
         lambda r: {**GOOD, "name": "Ann\nSmith", "_rt": r("contact")}),
    Case("crlf-in-company", 422, "invalid_input", "company",
         lambda r: {**GOOD, "company": "ACME\r\nBcc: x@example.com", "_rt": r("contact")}),
    Case("escape-in-name", 422, "invalid_input", "name",
         lambda r: {**GOOD, "name": "Ann\x1b[2JSmith", "_rt": r("contact")}),
    Case("delete-in-name", 422, "invalid_input", "name",
         lambda r: {**GOOD, "name": "Ann\x7fSmith", "_rt": r("contact")}),
    Case("next-line-in-name", 422, "invalid_input", "name",
         lambda r: {**GOOD, "name": "Ann\x85Smith", "_rt": r("contact")}),
    Case("control-character-in-email", 422, "invalid_input", "email",
         lambda r: {**GOOD, "email": "ann\x0b@example.com", "_rt": r("contact")}),
    # Several lines: line breaks and tabs may stay, other control characters may not.
    Case("bell-in-message", 422, "invalid_input", "message",
         lambda r: {**GOOD, "message": "Hello\nthere\x07", "_rt": r("contact")}),
    Case("form-feed-in-message", 422, "invalid_input", "message",
         lambda r: {**GOOD, "message": "Page 1\x0cPage 2", "_rt": r("contact")}),
    Case("consent-not-offered", 422, "unknown_field", "consent",
         lambda r: {**GOOD, "consent": "sale_sharing", "_rt": r("contact")}),
    Case("unknown-purpose", 422, "unknown_field", "consent",
         lambda r: {**GOOD, "consent": "marketing_x", "_rt": r("contact")}),
    Case("consent-without-email", 422, "invalid_input", "email",
         lambda r: {"message": "x", "consent": "profiling", "_rt": r("contact")}),
    Case("honeypot-filled", 422, "spam_suspected", None,
         lambda r: {**GOOD, "_website": "http://spam.example", "_rt": r("contact")}),
    Case("too-fast", 422, "too_fast", None,
         lambda r: {**GOOD, "_rt": r("contact", age=0)}),
    Case("no-render-token", 400, "token_invalid", None, lambda r: dict(GOOD)),
    Case("forged-render-token", 400, "token_invalid", None,
         lambda r: {**GOOD, "_rt": r("contact")[:-4] + "AAAA"}),
    Case("expired-render-token", 410, "token_expired", None,
         lambda r: {**GOOD, "_rt": _expired_token(r)}),
    Case("token-of-another-form", 400, "token_invalid", None,
         lambda r: {**GOOD, "_rt": r("newsletter")}),
    Case("oversized-body", 413, "payload_too_large", None,
         lambda r: {**GOOD, "name": "x" * 70_000, "_rt": r("contact")}),
    Case("wrong-content-type", 415, "unsupported_media_type", None,
         lambda r: {**GOOD, "_rt": r("contact")},
         {"headers": {"content-type": "text/plain"}}),
]  # fmt: skip


# A form posted without a render token is a plain <form> on another site: it gets the
# hosted form to review (test_views_form), not an error.
HTML_CASES = [case for case in CASES if case.name != "no-render-token"]


@pytest.mark.parametrize("case", HTML_CASES, ids=str)
def test_bad_form_post_shows_the_error_and_writes_nothing(
    case: Case,
    app_client: TestClient,
    render: Callable[..., str],
    counts: Callable[[], dict[str, int]],
) -> None:
    data = case.data(render)
    before = counts()
    if case.kwargs.get("headers", {}).get("content-type") == "text/plain":
        response = app_client.post(
            "/f/contact", content="email=ann%40example.com", headers=case.kwargs["headers"]
        )
    else:
        response = app_client.post("/f/contact", data=data, follow_redirects=False)
    assert response.status_code == case.status, response.text[:500]
    html = response.text
    summary = one(html, "div", id="error-summary")
    assert summary["role"] == "alert"
    if case.field is not None:
        if case.field in ("email", "message", "company_size", "company", "name", "consent"):
            assert one(html, "p", id=f"f-{case.field}-error")["text"].strip()
        else:
            assert any(case.field in li["text"] for li in find_all(html, "li"))
    assert find_all(html, "input", name="_rt"), "the form is shown again, ready to send"
    assert counts() == before


# JSON clients have no honeypot field: that case is for forms only.
JSON_CASES = [case for case in CASES if case.name != "honeypot-filled"]


@pytest.mark.parametrize("case", JSON_CASES, ids=str)
def test_bad_json_post_answers_a_json_error_and_writes_nothing(
    case: Case,
    app_client: TestClient,
    render: Callable[..., str],
    counts: Callable[[], dict[str, int]],
) -> None:
    data = case.data(render)
    token = data.pop("_rt", None)
    consent = data.pop("consent", [])
    body: dict[str, Any] = {
        "fields": data,
        "consent": [consent] if isinstance(consent, str) else consent,
    }
    if token is not None:
        body["render_token"] = token
    headers = {"accept": "application/json", **case.kwargs.get("headers", {})}
    before = counts()
    if case.name == "wrong-content-type":
        response = app_client.post("/f/contact", content=b"{}", headers=headers)
    else:
        response = app_client.post("/f/contact", json=body, headers=headers)
    assert response.status_code == case.status, response.text[:500]
    error = response.json()["error"]
    assert error["code"] == case.code
    assert error["message"]
    if case.field is not None:
        assert case.field in error["fields"]
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", None),
        (b"[1, 2]", None),
        (b'{"fields": [], "render_token": "x"}', "fields"),
        (b'{"fields": {"email": 5}, "render_token": "x"}', "email"),
        (b'{"fields": {}, "consent": "newsletter", "render_token": "x"}', "consent"),
        (b'{"fields": {}, "render_token": "x", "owner": "me"}', "owner"),
    ],
)
def test_malformed_json_is_refused(
    app_client: TestClient,
    counts: Callable[[], dict[str, int]],
    body: bytes,
    field: str | None,
) -> None:
    before = counts()
    response = app_client.post(
        "/f/contact", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    if field is not None:
        assert field in error["fields"]
    assert counts() == before


def test_file_uploads_are_refused(
    app_client: TestClient, render: Callable[..., str], counts: Callable[[], dict[str, int]]
) -> None:
    before = counts()
    response = app_client.post(
        "/f/newsletter",
        data={"_rt": render("newsletter")},
        files={"email": ("a.txt", b"ann@example.com", "text/plain")},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 422
    assert counts() == before


def test_too_fast_keeps_the_first_render_time(
    app_client: TestClient, render: Callable[..., str], tokens: CaptureTokens
) -> None:
    first = render("newsletter", age=0)
    response = app_client.post("/f/newsletter", data={"email": "a@example.com", "_rt": first})
    assert response.status_code == 422
    again = tokens.read_render(one(response.text, "input", name="_rt")["value"])
    assert again.rendered_at == tokens.read_render(first).rendered_at
    assert again.submission_id == tokens.read_render(first).submission_id


def test_a_message_keeps_its_lines_and_tabs_with_line_breaks_as_lf(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    """A textarea's line breaks arrive as CRLF from a browser: kept as LF (WHATWG
    "normalize newlines", a lone CR too); a tab may stay in a name or a message."""
    response = app_client.post(
        "/f/contact",
        data={
            **GOOD,
            "name": "Ann\tSmith",
            "message": "Dear team,\r\nline two\rline three\n\tindented",
            "_rt": render("contact"),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[:500]
    kept = answers(database)
    assert kept["name"] == ["Ann\tSmith"]
    assert kept["message"] == ["Dear team,\nline two\nline three\n\tindented"]


def test_a_hidden_field_from_the_address_never_blocks_the_form(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    """A hidden field is filled from the page's address (``?utm_source=a%0Ab``), not
    typed: its control characters become spaces instead of an error the visitor could
    neither see nor fix."""
    response = app_client.post(
        "/f/contact",
        data={**GOOD, "utm_source": "partner\r\npage\x1b", "_rt": render("contact")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[:500]
    assert answers(database)["utm_source"] == ["partner  page"]


def test_the_error_says_what_to_remove(app_client: TestClient, render: Callable[..., str]) -> None:
    response = app_client.post(
        "/f/contact",
        json={
            "fields": {"email": "ann@example.com", "message": "Hi", "name": "Ann\rSmith"},
            "render_token": render("contact"),
        },
        headers={"accept": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == {
        "name": "Remove the line breaks and invisible control characters"
    }
