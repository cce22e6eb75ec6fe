"""The hosted form through HTTP: what it shows, and what a submission stores."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable

import orjson
import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient

from capture.models import Answer, Submission
from consent_ledger.models import ConsentEvent, ConsentEvidence, NoticeVersion
from tests.capture.conftest import find_all, one, token_in
from zeroparty.db import Database

NEWSLETTER_EN = (
    "Yes, send me the Northwind newsletter by email, about once a month. "
    "I can unsubscribe at any time with one click."
)
FULL_CONTACT = {
    "email": "  Ann.Example@Example.COM ",
    "name": "Ann Example",
    "company": "ACME",
    "job_title": "Head of Data",
    "company_size": "51-200",
    "industry": "retail",
    "interest": "forecasting",
    "timeline": "quarter",
    "topics": ["monthly_digest", "webinars"],
    "message": "We need forecasts.",
    "utm_source": "newsletter",
    "utm_campaign": "spring",
}


def answers(database: Database) -> dict[str, list[str]]:
    with database.read() as session:
        rows = session.execute(select(Answer).order_by(Answer.id)).scalars().all()
    kept: dict[str, list[str]] = {}
    for row in rows:
        kept.setdefault(row.field, []).append(row.value)
    return kept


def events(database: Database) -> list[ConsentEvent]:
    with database.read() as session:
        return list(session.execute(select(ConsentEvent).order_by(ConsentEvent.seq)).scalars())


def test_hosted_form_shows_labelled_fields_and_unticked_boxes(app_client: TestClient) -> None:
    response = app_client.get("/f/contact")
    assert response.status_code == 200
    html = response.text
    assert one(html, "h1")["text"] == "Talk to Northwind"
    for name in ("email", "name", "company", "job_title", "message"):
        field_id = f"f-{name}"
        assert one(html, "label", for_=field_id)
        assert find_all(html, "input", id=field_id) or find_all(html, "textarea", id=field_id)
    assert one(html, "input", id="f-email")["type"] == "email"
    assert one(html, "input", id="f-email")["autocomplete"] == "email"
    assert one(html, "select", id="f-company_size")
    assert len(find_all(html, "option")) > 10
    assert one(html, "input", id="f-timeline-0")["type"] == "radio"
    assert one(html, "input", id="f-topics-1")["type"] == "checkbox"
    assert one(html, "input", name="utm_source")["type"] == "hidden"
    assert one(html, "fieldset", id="f-consent")
    assert one(html, "legend", text="Your choices")
    boxes = find_all(html, "input", name="consent")
    assert [b["value"] for b in boxes] == ["newsletter", "product_updates", "profiling"]
    assert all("checked" not in box for box in boxes), "no pre-ticked boxes"
    label = one(html, "label", for_="c-newsletter")
    assert label["text"] == NEWSLETTER_EN
    assert label["data-notice-sha256"] == hashlib.sha256(NEWSLETTER_EN.encode()).hexdigest()


def test_hidden_fields_are_prefilled_from_the_query_string(app_client: TestClient) -> None:
    html = app_client.get("/f/contact?utm_source=ads&utm_campaign=fall&other=x").text
    assert one(html, "input", name="utm_source")["value"] == "ads"
    assert one(html, "input", name="utm_campaign")["value"] == "fall"


def test_unknown_form_is_404(app_client: TestClient) -> None:
    response = app_client.get("/f/nope")
    assert response.status_code == 404
    assert (
        app_client.get("/f/nope", headers={"accept": "application/json"}).json()["error"]["code"]
        == "not_found"
    )


@pytest.mark.parametrize("slug", ["%00", "a%00b", "Contact", "x" * 80, "%F0%92%AE%98"])
def test_a_path_that_is_no_slug_is_404(app_client: TestClient, slug: str) -> None:
    """Never looked up (a NUL would be a database error on PostgreSQL)."""
    response = app_client.get(f"/f/{slug}", headers={"accept": "application/json"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_every_field_type_is_stored_when_its_purpose_is_granted(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    response = app_client.post(
        "/f/contact",
        data={**FULL_CONTACT, "_rt": render("contact"), "consent": ["newsletter", "profiling"]},
        headers={"user-agent": "pytest-browser/1.0", "referer": "https://www.northwind.example/x"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/f/contact/thanks?r=")
    kept = answers(database)
    assert kept == {
        "email": ["ann.example@example.com"],
        "name": ["Ann Example"],
        "company": ["ACME"],
        "job_title": ["Head of Data"],
        "company_size": ["51-200"],
        "industry": ["retail"],
        "interest": ["forecasting"],
        "timeline": ["quarter"],
        "topics": ["monthly_digest", "webinars"],
        "message": ["We need forecasts."],
        "utm_source": ["newsletter"],
        "utm_campaign": ["spring"],
    }
    entries = events(database)
    assert [(e.purpose_key, e.action, e.confirmation_required) for e in entries] == [
        ("newsletter", "granted", True),
        ("profiling", "granted", False),
    ]
    with database.read() as session:
        notice = session.execute(
            select(NoticeVersion.sha256).where(
                NoticeVersion.purpose_key == "profiling", NoticeVersion.locale == "en"
            )
        ).scalar_one()
        evidence = orjson.loads(session.get_one(ConsentEvidence, entries[1].seq).body)
    assert entries[1].notice_sha256 == notice
    assert entries[1].source == "form"
    assert entries[1].source_ref == "contact@v1"
    assert entries[1].locale == "en"
    assert evidence["form"] == "contact"
    assert evidence["form_version"] == 1
    assert evidence["user_agent"] == "pytest-browser/1.0"
    assert evidence["referer"] == "https://www.northwind.example/x"
    assert evidence["locale"] == "en"
    thanks = app_client.get(response.headers["location"])
    assert thanks.status_code == 200
    assert "If anything needs confirming, we have sent you an email" in thanks.text
    assert "A member of our team will get back to you" in thanks.text


def test_answers_without_a_granted_purpose_are_never_stored(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    response = app_client.post(
        "/f/contact", data={**FULL_CONTACT, "_rt": render("contact")}, follow_redirects=False
    )
    assert response.status_code == 303
    # Only what the request itself needs; nothing that serves profiling or the newsletter.
    assert answers(database) == {
        "email": ["ann.example@example.com"],
        "name": ["Ann Example"],
        "message": ["We need forecasts."],
    }
    assert events(database) == []


def test_binding_is_per_purpose(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    app_client.post(
        "/f/contact",
        data={**FULL_CONTACT, "_rt": render("contact"), "consent": "newsletter"},
        follow_redirects=False,
    )
    kept = answers(database)
    assert kept["topics"] == ["monthly_digest", "webinars"]  # serves the newsletter
    assert "company" not in kept  # serves profiling, which was not granted


def test_a_purpose_already_permitted_keeps_its_answers(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    first = {"email": "bo@example.com", "message": "hi", "consent": "profiling"}
    app_client.post("/f/contact", data={**first, "_rt": render("contact")})
    second = {"email": "BO@example.com", "message": "again", "company": "Bo Ltd"}
    app_client.post("/f/contact", data={**second, "_rt": render("contact")})
    assert "company" not in answers(database), "held until the address's owner confirms"
    with database.read() as session:
        mail = session.execute(text("SELECT body_text FROM mail_outbox")).scalar_one()
    link = re.search(r"http://testserver(/confirm/held/\S+)", mail)
    assert link is not None
    assert app_client.post(link.group(1)).status_code == 200
    assert answers(database)["company"] == ["Bo Ltd"]
    with database.read() as session:
        subjects = session.execute(text("SELECT count(*) FROM subjects")).scalar_one()
        submissions = session.execute(select(Submission)).scalars().all()
    assert subjects == 1, "matched by normalised email"
    assert len(submissions) == 2


def test_json_submission_answers_json(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    response = app_client.post(
        "/f/newsletter",
        json={
            "fields": {"email": "cy@example.com"},
            "consent": ["newsletter"],
            "render_token": render("newsletter"),
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["stored"] is True
    assert body["consent"] == ["newsletter"]
    assert (
        body["next_step"] == "If anything needs confirming, we have sent you an email with a link."
    )
    assert "granted" not in body
    assert "pending_confirmation" not in body
    assert body["message"] == "Thank you for your interest."
    assert answers(database) == {"email": ["cy@example.com"]}


def test_json_definition_for_custom_front_ends(app_client: TestClient) -> None:
    response = app_client.get("/f/newsletter", headers={"accept": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert body["slug"] == "newsletter"
    assert body["version"] == 1
    assert body["render_token"]
    assert body["consent"][0]["purpose"] == "newsletter"
    assert body["consent"][0]["text"] == NEWSLETTER_EN
    assert "rate_limit" not in body


def test_multipart_submission(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    response = app_client.post(
        "/f/newsletter",
        files={"email": (None, "dee@example.com"), "_rt": (None, render("newsletter"))},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert answers(database) == {"email": ["dee@example.com"]}


def test_redirect_after_success_when_the_form_says_so(
    app_client: TestClient, render: Callable[..., str], load_toml: Callable[..., list[str]]
) -> None:
    load_toml(
        """
[forms.redirecting]
title = "Redirecting"
redirect = "https://www.northwind.example/thanks"
[[forms.redirecting.fields]]
name = "email"
type = "email"
"""
    )
    page = app_client.get("/f/redirecting")
    assert (
        "form-action 'self' https://www.northwind.example;"
        in page.headers["content-security-policy"]
    )
    response = app_client.post(
        "/f/redirecting",
        data={"email": "ed@example.com", "_rt": render("redirecting")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "https://www.northwind.example/thanks"


def test_field_errors_are_tied_to_their_fields(
    app_client: TestClient, render: Callable[..., str], counts: Callable[[], dict[str, int]]
) -> None:
    before = counts()
    response = app_client.post(
        "/f/contact",
        data={"_rt": render("contact"), "email": "not-an-address", "name": "Ann",
              "consent": "profiling"},
    )  # fmt: skip
    assert response.status_code == 422
    html = response.text
    assert one(html, "div", id="error-summary")["role"] == "alert"
    email = one(html, "input", id="f-email")
    assert email["aria-invalid"] == "true"
    assert email["aria-describedby"] == "f-email-error"
    assert "Enter a valid email address" in one(html, "p", id="f-email-error")["text"]
    message = one(html, "textarea", id="f-message")
    assert message["aria-describedby"] == "f-message-error"
    assert one(html, "input", id="f-name")["value"] == "Ann", "values are kept"
    assert "checked" in one(html, "input", id="c-profiling"), "as the visitor ticked it"
    assert "checked" not in one(html, "input", id="c-newsletter")
    assert token_in(html)
    assert counts() == before


def test_plain_form_from_another_site_is_reviewed_on_the_hosted_page(
    app_client: TestClient, counts: Callable[[], dict[str, int]], database: Database
) -> None:
    before = counts()
    response = app_client.post(
        "/f/contact",
        data={"email": "pat@example.com", "message": "From your site", "consent": "profiling"},
        headers={"origin": "https://www.northwind.example",
                 "referer": "https://www.northwind.example/contact"},
    )  # fmt: skip
    assert response.status_code == 200
    html = response.text
    assert "Please check your details" in html
    assert one(html, "input", id="f-email")["value"] == "pat@example.com"
    assert "checked" not in one(html, "input", id="c-profiling"), "ticked only on our page"
    assert one(html, "input", name="_page")["value"] == "https://www.northwind.example/contact"
    assert counts() == before
    sent = app_client.post(
        "/f/contact",
        data={"email": "pat@example.com", "message": "From your site", "consent": "profiling",
              "_rt": _aged(app_client, token_in(html)),
              "_page": "https://www.northwind.example/contact"},
        follow_redirects=False,
    )  # fmt: skip
    assert sent.status_code == 303
    assert [(e.purpose_key, e.action) for e in events(database)] == [("profiling", "granted")]


def _aged(client: TestClient, raw: str) -> str:
    from capture.tokens import CaptureTokens
    from tests.conftest import TEST_SECRET

    tokens = CaptureTokens((TEST_SECRET,))
    token = tokens.read_render(raw)
    return tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))
