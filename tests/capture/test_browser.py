"""Forms and quizzes in a real headless Chromium: embedded from a second origin with
embed.js, clicked through, sent with JavaScript off, and checked with axe-core.
Screenshots go to ``test-artifacts/capture-*.png``."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from capture.models import Answer
from consent_ledger.models import ConsentEvent
from tests.fixtures.browser import LiveServer, axe_violations, free_port, screenshot
from tests.fixtures.mail import SmtpServer
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

# The minimum fill time of the demo forms: a person takes longer, the test waits.
HUMAN_PAUSE_MS = 2100


def host_site(zeroparty_url: str, slug: str) -> Starlette:
    """Another site (its own origin) that embeds a form with the one-line snippet."""

    async def page(_request: Request) -> HTMLResponse:
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Northwind: contact</title></head>
<body style="font-family: sans-serif; max-width: 50rem; margin: 2rem auto">
<h1>Northwind Analytics</h1><p>This page lives on another origin and embeds the form.</p>
<script src="{zeroparty_url}/embed.js" data-form="{slug}" data-title="Contact form" async>
</script>
<footer><p>Footer below the form</p></footer>
</body></html>"""
        )

    async def plain(_request: Request) -> HTMLResponse:
        return HTMLResponse(
            f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Northwind: newsletter</title></head>
<body><h1>Northwind Analytics</h1>
<iframe src="{zeroparty_url}/f/{slug}?embed=1" title="Newsletter" width="600" height="700">
</iframe></body></html>"""
        )

    return Starlette(routes=[Route("/", page), Route("/plain", plain)])


def _rows(database: Database) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    with database.read() as session:
        answers: dict[str, list[str]] = {}
        for answer in session.execute(select(Answer).order_by(Answer.id)).scalars():
            answers.setdefault(answer.field, []).append(answer.value)
        entries = [
            (e.purpose_key, e.action)
            for e in session.execute(select(ConsentEvent).order_by(ConsentEvent.seq)).scalars()
        ]
    return answers, entries


def test_form_embedded_on_another_origin(
    settings: Settings,
    database: Database,
    serve: Callable[..., LiveServer],
    page: Any,
) -> None:
    host_port = free_port()
    host_origin = f"http://127.0.0.1:{host_port}"
    settings = dataclasses.replace(settings, allowed_embed_origins=(host_origin,))
    zeroparty = serve(create_app(settings, database))
    serve(host_site(zeroparty.url, "contact"), port=host_port)

    page.goto(f"{host_origin}/?utm_source=partner-page")
    frame_element = page.wait_for_selector("iframe[title='Contact form']")
    form = page.frame_locator("iframe[title='Contact form']")
    form.locator("h1").wait_for()
    assert form.locator("h1").inner_text() == "Talk to Northwind"
    # The frame grows to its content (postMessage from our origin only).
    page.wait_for_function("() => parseInt(document.querySelector('iframe').style.height) > 900")
    screenshot(page, "capture-embedded-form")

    form.get_by_label("Work email").fill("not-an-email")
    form.get_by_label("Company", exact=True).fill("Partner GmbH")
    form.get_by_label("Yes, Northwind may use my answers").check()
    form.get_by_role("button", name="Send").click()
    summary = form.locator("#error-summary")
    summary.wait_for()
    assert "There is a problem" in summary.inner_text()
    assert "Enter a valid email address" in form.locator("#f-email-error").inner_text()
    assert "This field is required" in form.locator("#f-message-error").inner_text()
    assert form.get_by_label("Company", exact=True).input_value() == "Partner GmbH"
    screenshot(page, "capture-embedded-form-errors", docs=True)

    form.get_by_label("Work email").fill("Visitor@Example.com")
    form.get_by_label("How can we help?").fill("Please call me back.")
    page.wait_for_timeout(HUMAN_PAUSE_MS)
    form.get_by_role("button", name="Send").click()
    form.get_by_text("A member of our team will get back to you").wait_for()
    assert form.locator("h1").inner_text() == "Thank you"
    screenshot(page, "capture-embedded-thanks")
    assert frame_element.get_attribute("src").startswith(f"{zeroparty.url}/f/contact?embed=1")

    answers, entries = _rows(database)
    assert answers["email"] == ["visitor@example.com"]
    assert answers["company"] == ["Partner GmbH"]
    assert answers["utm_source"] == ["partner-page"]
    assert entries == [("profiling", "granted")]
    assert page.context.cookies() == []


def test_embedding_is_refused_where_the_origin_is_not_allowed(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    zeroparty = serve(create_app(settings, database))
    host = serve(host_site(zeroparty.url, "newsletter"))
    page.goto(host.url + "/")
    frame = page.frame_locator("iframe[title='Contact form']")
    # Not the blank frame frame-ancestors leaves: a page that says why, and nothing to
    # fill in on a site that may not show the form.
    frame.get_by_text("This form cannot be shown on this site.").wait_for()
    assert frame.locator("form, input, button").count() == 0
    assert host.url.lower().rstrip("/") in frame.locator("main").inner_text()
    screenshot(page, "capture-embed-refused")
    assert axe_violations(page) == []
    link = frame.get_by_role("link", name="Open the form in a new tab")
    with page.context.expect_page() as opened:
        link.click()
    form = opened.value
    form.wait_for_load_state()
    assert form.url == zeroparty.url + "/f/newsletter"
    assert form.get_by_role("textbox", name="Email").is_visible()
    assert form.evaluate("() => window.opener") is None, "rel=noopener"
    form.close()

    # A plain iframe (no embed script, so no parent= hint): known by its Referer.
    page.goto(host.url + "/plain")
    plain = page.frame_locator("iframe[title='Newsletter']")
    plain.get_by_text("This form cannot be shown on this site.").wait_for()
    assert plain.locator("input").count() == 0


def test_a_plain_iframe_on_an_allowed_origin_shows_the_form(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    host_port = free_port()
    host_origin = f"http://127.0.0.1:{host_port}"
    settings = dataclasses.replace(settings, allowed_embed_origins=(host_origin,))
    zeroparty = serve(create_app(settings, database))
    serve(host_site(zeroparty.url, "newsletter"), port=host_port)
    page.goto(host_origin + "/plain")
    frame = page.frame_locator("iframe[title='Newsletter']")
    frame.get_by_role("textbox", name="Email").wait_for()
    assert frame.get_by_text("This form cannot be shown").count() == 0


def test_quiz_clicked_through_to_its_outcome(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    server = serve(create_app(settings, database))
    page.goto(server.url + "/f/analytics-fit")
    assert axe_violations(page) == []
    screenshot(page, "capture-quiz-step-1")
    page.get_by_label("Predictions").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("How much data do you work with?").wait_for()
    screenshot(page, "capture-quiz-step-2")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Back").click()
    assert page.get_by_label("Predictions").is_checked()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("How much data do you work with?").wait_for()
    page.get_by_role("button", name="Next").click()  # nothing chosen: an error
    assert "Choose an answer" in page.locator("#f-volume-error").inner_text()
    page.get_by_label("Terabytes or more").check()
    page.get_by_role("button", name="Next").click()
    assert page.locator("#outcome-title").inner_text() == "The scaler"
    assert axe_violations(page) == []
    screenshot(page, "capture-quiz-result", docs=True)
    page.get_by_role("textbox", name="Email").fill("quiz.taker@example.com")
    page.get_by_label("Yes, Northwind may use my answers").check()
    page.wait_for_timeout(HUMAN_PAUSE_MS)
    page.get_by_role("button", name="Keep me posted").click()
    assert page.locator("h1").inner_text() == "Your result: The scaler"
    screenshot(page, "capture-quiz-thanks")
    answers, entries = _rows(database)
    assert answers == {
        "email": ["quiz.taker@example.com"],
        "goal": ["prediction"],
        "volume": ["large"],
    }
    assert entries == [("profiling", "granted")]


def test_form_with_javascript_off_lands_on_the_thank_you_page(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], browser: Any
) -> None:
    server = serve(create_app(settings, database))
    context = browser.new_context(java_script_enabled=False, viewport={"width": 900, "height": 900})
    try:
        page = context.new_page()
        page.goto(server.url + "/f/newsletter")
        page.get_by_role("textbox", name="Email").fill("no-js@example.com")
        page.get_by_label("Yes, send me the Northwind newsletter").check()
        page.wait_for_timeout(HUMAN_PAUSE_MS)
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_url("**/f/newsletter/thanks?r=*")
        assert page.locator("h1").inner_text() == "Thank you"
        assert "If anything needs confirming" in page.locator("main").inner_text()
        screenshot(page, "capture-no-js-thanks")
    finally:
        context.close()
    answers, entries = _rows(database)
    assert answers == {"email": ["no-js@example.com"]}
    assert entries == [("newsletter", "granted")]


@pytest.mark.parametrize("with_errors", [False, True], ids=["fresh", "with-errors"])
def test_hosted_form_is_accessible(
    settings: Settings,
    database: Database,
    serve: Callable[..., LiveServer],
    page: Any,
    with_errors: bool,
) -> None:
    server = serve(create_app(settings, database))
    page.goto(server.url + "/f/contact")
    if with_errors:
        page.get_by_role("button", name="Send").click()
        page.locator("#error-summary").wait_for()
        focused = page.evaluate("document.activeElement.id")
        assert focused == "error-summary", "the error summary takes the focus"
    assert axe_violations(page) == []
    screenshot(page, "capture-hosted-form" + ("-errors" if with_errors else ""), docs=True)


def test_keyboard_only_visitor_can_send_the_form(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    server = serve(create_app(settings, database))
    page.goto(server.url + "/f/newsletter")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-email"
    page.keyboard.type("keys@example.com")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "c-newsletter"
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    page.wait_for_timeout(HUMAN_PAUSE_MS)
    page.keyboard.press("Enter")
    page.wait_for_url("**/thanks?r=*")
    assert _rows(database)[1] == [("newsletter", "granted")]


def test_confirmation_link_in_the_browser(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    server = serve(create_app(dataclasses.replace(settings, base_url="BASE"), database))
    page.goto(server.url + "/f/newsletter")
    page.get_by_role("textbox", name="Email").fill("confirm.me@example.com")
    page.get_by_label("Yes, send me the Northwind newsletter").check()
    page.wait_for_timeout(HUMAN_PAUSE_MS)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/thanks?r=*")
    mails = sorted(settings.outbox_dir.glob("*.eml"))
    assert len(mails) == 1, "delivered to the outbox folder right after the request"
    message = email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    match = re.search(r"BASE(/confirm/\S+)", SmtpServer.text_of(message))
    assert match is not None
    page.goto(server.url + match.group(1))
    assert page.locator("h1").inner_text() == "Please confirm"
    assert axe_violations(page) == []
    screenshot(page, "capture-confirm")
    assert _rows(database)[1] == [("newsletter", "granted")]
    page.get_by_role("button", name="Confirm").click()
    assert page.locator("h1").inner_text() == "Thank you, confirmed"
    screenshot(page, "capture-confirmed")
    assert _rows(database)[1] == [("newsletter", "granted"), ("newsletter", "confirmed")]


def test_quiz_steps_work_with_the_browsers_back_and_forward(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    """Each step is a page after a POST-redirect-GET: Back shows the step before with
    its answer, Forward returns, nothing asks to be sent again, and the final submit
    sent twice (after Back from the thank-you page) is stored once."""
    server = serve(create_app(settings, database))
    page.goto(server.url + "/f/analytics-fit")
    page.get_by_label("Predictions").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_text("How much data do you work with?").wait_for()
    step_two = page.url
    assert "?q=" in step_two
    page.get_by_label("Terabytes or more").check()
    page.get_by_role("button", name="Next").click()
    assert page.locator("#outcome-title").inner_text() == "The scaler"

    page.go_back()  # to step 2, its answer chosen
    page.get_by_text("How much data do you work with?").wait_for()
    assert page.url == step_two
    assert page.get_by_label("Terabytes or more").is_checked()
    page.go_back()  # to step 1, its answer chosen
    page.get_by_text("What do you most want from your data?").wait_for()
    assert page.get_by_label("Predictions").is_checked()
    page.go_forward()
    page.get_by_text("How much data do you work with?").wait_for()
    page.go_forward()
    assert page.locator("#outcome-title").inner_text() == "The scaler"
    assert _rows(database) == ({}, []), "nothing is stored before the final submit"

    page.get_by_role("textbox", name="Email").fill("back.and.forth@example.com")
    page.get_by_label("Yes, Northwind may use my answers").check()
    page.wait_for_timeout(HUMAN_PAUSE_MS)
    page.get_by_role("button", name="Keep me posted").click()
    assert page.locator("h1").inner_text() == "Your result: The scaler"
    page.go_back()  # the result page again, not a resubmission
    assert page.locator("#outcome-title").inner_text() == "The scaler"
    page.get_by_role("textbox", name="Email").fill("back.and.forth@example.com")
    if not page.get_by_label("Yes, Northwind may use my answers").is_checked():
        page.get_by_label("Yes, Northwind may use my answers").check()
    page.get_by_role("button", name="Keep me posted").click()
    assert page.locator("h1").inner_text() == "Your result: The scaler"
    answers, entries = _rows(database)
    assert answers == {
        "email": ["back.and.forth@example.com"],
        "goal": ["prediction"],
        "volume": ["large"],
    }
    assert entries == [("profiling", "granted")], "the second send replays the first"
