"""Framing, CORS and origin rules, security headers, and the embed script."""

from __future__ import annotations

import dataclasses
import gzip
import re
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from capture.views import EMBED_JS
from tests.capture.conftest import one
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

ALLOWED = "https://www.northwind.example"
EVIL = "https://evil.example"


def test_form_page_headers(app_client: TestClient) -> None:
    response = app_client.get("/f/contact")
    csp = response.headers["content-security-policy"]
    assert f"frame-ancestors 'self' {ALLOWED};" in csp
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce is not None
    assert one(response.text, "script")["nonce"] == nonce.group(1)
    assert "unsafe-inline" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert "set-cookie" not in response.headers
    other = app_client.get("/f/contact")
    assert other.headers["content-security-policy"] != csp, "a fresh nonce per response"


def test_form_without_allowed_origins_may_only_be_framed_by_itself(
    app_client: TestClient,
) -> None:
    csp = app_client.get("/f/newsletter").headers["content-security-policy"]
    assert "frame-ancestors 'self';" in csp


def test_allowed_embed_origins_setting_applies_to_every_form(
    settings: Settings, database: Database
) -> None:
    settings = dataclasses.replace(settings, allowed_embed_origins=("https://partner.example",))
    with TestClient(create_app(settings, database)) as client:
        csp = client.get("/f/newsletter").headers["content-security-policy"]
    assert "frame-ancestors 'self' https://partner.example;" in csp


def test_other_pages_keep_the_strict_defaults(app_client: TestClient) -> None:
    response = app_client.get("/")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "form"])
def test_submission_from_another_origin_is_refused(
    app_client: TestClient,
    render: Callable[..., str],
    counts: Callable[[], dict[str, int]],
    as_json: bool,
) -> None:
    before = counts()
    token = render("contact")
    if as_json:
        response = app_client.post(
            "/f/contact",
            json={"fields": {"email": "e@example.com", "message": "x"}, "render_token": token},
            headers={"origin": EVIL},
        )
        assert response.json()["error"]["code"] == "origin_refused"
    else:
        response = app_client.post(
            "/f/contact",
            data={"email": "e@example.com", "message": "x", "_rt": token},
            headers={"origin": EVIL},
        )
        assert "does not accept submissions from https://evil.example" in response.text
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert counts() == before


def test_null_origin_is_refused(app_client: TestClient, render: Callable[..., str]) -> None:
    response = app_client.post(
        "/f/contact",
        data={"email": "e@example.com", "message": "x", "_rt": render("contact")},
        headers={"origin": "null"},
    )
    assert response.status_code == 403


def test_same_origin_and_allowed_origin_submissions_are_accepted(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    same = app_client.post(
        "/f/contact",
        data={"email": "f@example.com", "message": "x", "_rt": render("contact")},
        headers={"origin": "http://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303
    cross = app_client.post(
        "/f/contact",
        json={"fields": {"email": "g@example.com", "message": "x"},
              "render_token": render("contact")},
        headers={"origin": ALLOWED},
    )  # fmt: skip
    assert cross.status_code == 201
    assert cross.headers["access-control-allow-origin"] == ALLOWED
    assert cross.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in cross.headers


def test_errors_for_allowed_origins_carry_cors_headers(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    response = app_client.post(
        "/f/contact",
        json={"fields": {"email": "nope"}, "render_token": render("contact")},
        headers={"origin": ALLOWED},
    )
    assert response.status_code == 422
    assert response.headers["access-control-allow-origin"] == ALLOWED


def test_preflight(app_client: TestClient) -> None:
    allowed = app_client.options(
        "/f/contact",
        headers={"origin": ALLOWED, "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"},
    )  # fmt: skip
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "content-type" in allowed.headers["access-control-allow-headers"]
    refused = app_client.options(
        "/f/contact", headers={"origin": EVIL, "access-control-request-method": "POST"}
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


def test_json_definition_is_readable_by_allowed_origins_only(app_client: TestClient) -> None:
    headers = {"accept": "application/json"}
    allowed = app_client.get("/f/contact", headers={**headers, "origin": ALLOWED})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    refused = app_client.get("/f/contact", headers={**headers, "origin": EVIL})
    assert "access-control-allow-origin" not in refused.headers


def test_embedded_page_talks_only_to_an_allowed_parent(app_client: TestClient) -> None:
    allowed = app_client.get(f"/f/contact?embed=1&parent={ALLOWED}")
    assert one(allowed.text, "body")["data-parent"] == ALLOWED
    assert one(allowed.text, "form")["action"] == f"/f/contact?embed=1&parent={ALLOWED}"
    refused = app_client.get(f"/f/contact?embed=1&parent={EVIL}")
    assert "data-parent" not in one(refused.text, "body")


def test_confirmation_post_from_another_origin_is_refused(app_client: TestClient) -> None:
    response = app_client.post("/confirm/anything", headers={"origin": EVIL})
    assert response.status_code == 403


def test_embed_script(app_client: TestClient) -> None:
    response = app_client.get("/embed.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "set-cookie" not in response.headers
    assert response.content == EMBED_JS
    assert len(gzip.compress(EMBED_JS, 9)) < 3 * 1024
    assert b"document.cookie" not in EMBED_JS
    assert b"event.origin !== origin" in EMBED_JS


def test_openapi_describes_json_submissions(app_client: TestClient) -> None:
    document = app_client.get("/openapi.json").json()
    post = document["paths"]["/f/{slug}"]["post"]
    assert "201" in post["responses"]
    assert "409" in post["responses"]
    assert "FormSubmission" in document["components"]["schemas"]


def _frame_load(referer: str | None, site: str = "cross-site") -> dict[str, str]:
    headers = {"sec-fetch-dest": "iframe", "sec-fetch-site": site, "sec-fetch-mode": "navigate"}
    return {**headers, "referer": referer} if referer else headers


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/f/contact?embed=1", _frame_load(f"{EVIL}/landing")),
        ("/f/contact", _frame_load(EVIL + "/")),
        ("/f/contact?embed=1", _frame_load("https://www.northwind.example.evil.example/")),
        ("/f/contact?embed=1", _frame_load(f"{EVIL}/", site="same-site")),
        # No Referer (the framing page's policy withheld it): the embed script's parent.
        (f"/f/contact?embed=1&parent={EVIL}", _frame_load(None)),
        ("/f/analytics-fit?embed=1", _frame_load(EVIL)),
    ],
)
def test_a_frame_on_a_site_not_allowed_says_so(
    app_client: TestClient, path: str, headers: dict[str, str]
) -> None:
    """Instead of the blank frame frame-ancestors leaves, a page that says why, with a
    link to the form on its own, and nothing to click into: it may be framed anywhere."""
    response = app_client.get(path, headers=headers)
    assert response.status_code == 403
    html = response.text
    assert "This form cannot be shown on this site." in html
    assert "is not among the sites allowed to embed this form" in html
    for element in ("form", "input", "button", "select", "textarea", "script"):
        assert f"<{element}" not in html, f"a <{element}> in a page any site may frame"
    link = one(html, "a", target="_blank")
    assert link["href"] == path.split("?")[0]
    assert link["rel"] == "noopener"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors *;" in csp
    assert "form-action 'none'" in csp
    assert "script-src" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [
        _frame_load(ALLOWED + "/contact"),  # an allowed site
        _frame_load("http://testserver/f/contact", site="same-origin"),  # a step in the frame
        _frame_load("http://testserver/", site="same-origin"),
        _frame_load(None),  # framing page unknown: the CSP decides, as before
        {"sec-fetch-dest": "document", "sec-fetch-site": "cross-site", "referer": EVIL + "/"},
        {"referer": EVIL + "/"},  # no fetch metadata (an older browser, a script)
    ],
)
def test_other_loads_get_the_form_with_its_frame_ancestors(
    app_client: TestClient, headers: dict[str, str]
) -> None:
    response = app_client.get("/f/contact?embed=1", headers=headers)
    assert response.status_code == 200
    assert one(response.text, "input", id="f-email")
    assert f"frame-ancestors 'self' {ALLOWED};" in response.headers["content-security-policy"]


def test_a_refused_frame_does_not_change_json_answers(app_client: TestClient) -> None:
    response = app_client.get(
        "/f/contact", headers={**_frame_load(EVIL + "/"), "accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["slug"] == "contact"


def test_a_refused_frame_speaks_the_forms_language(app_client: TestClient) -> None:
    response = app_client.get("/f/contact?embed=1&lang=de", headers=_frame_load(EVIL + "/"))
    assert response.status_code == 403
    assert one(response.text, "html")["lang"] == "de"
    assert "Dieses Formular kann auf dieser Website nicht angezeigt werden." in response.text
    assert one(response.text, "a", target="_blank")["text"] == "Formular in einem neuen Tab öffnen"


def test_a_quiz_step_framed_by_a_site_not_allowed_says_so(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    data = {"_rt": render("analytics-fit"), "_action": "next", "_at": "goal", "goal": "browsing"}
    location = app_client.post("/f/analytics-fit", data=data, follow_redirects=False).headers[
        "location"
    ]
    inside = app_client.get(location, headers=_frame_load("http://testserver/", "same-origin"))
    assert one(inside.text, "h2", id="outcome-title")
    refused = app_client.get(location, headers=_frame_load(EVIL + "/"))
    assert refused.status_code == 403
    assert "This form cannot be shown on this site." in refused.text
    assert "<input" not in refused.text
