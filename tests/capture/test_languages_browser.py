"""A German visitor in real Chromium: the browser asks for German (``Accept-Language``
from its locale), sees the form, its consent notice, an error and the thank-you page in
German, and the ledger records the German notice and the locale ``de``; a form embedded
on a German page speaks German."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from consent_ledger.models import ConsentEvent, ConsentEvidence, Subject
from tests.fixtures.browser import LiveServer, axe_violations, free_port, screenshot
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

HUMAN_PAUSE_MS = 2100  # the demo form's minimum fill time is 2 s
NEWSLETTER_DE = (
    "Ja, schickt mir den Northwind-Newsletter per E-Mail, etwa einmal im Monat. "
    "Ich kann mich jederzeit mit einem Klick abmelden."
)


def test_a_german_visitor_fills_the_form_end_to_end(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], browser: Any
) -> None:
    server = serve(create_app(settings, database))
    context = browser.new_context(locale="de-DE", viewport={"width": 1100, "height": 900})
    try:
        page = context.new_page()
        page.goto(server.url + "/f/contact")
        assert page.locator("html").get_attribute("lang") == "de"
        assert page.locator("h1").inner_text() == "Sprechen Sie mit Northwind"
        email = page.get_by_role("textbox", name="Geschäftliche E-Mail-Adresse (erforderlich)")
        page.get_by_role("group", name="Ihre Auswahl").wait_for()
        assert page.get_by_label(NEWSLETTER_DE).is_visible()
        assert axe_violations(page) == []

        email.fill("anna@")
        page.get_by_role("textbox", name="Wie können wir helfen? (erforderlich)").fill("Hallo")
        page.get_by_label(NEWSLETTER_DE).check()
        page.wait_for_timeout(HUMAN_PAUSE_MS)
        page.get_by_role("button", name="Senden").click()
        page.locator("#error-summary").wait_for()
        assert page.locator("#error-summary-title").inner_text() == "Es gibt ein Problem"
        error = page.locator("#f-email-error").inner_text()
        assert "Geben Sie eine gültige E-Mail-Adresse ein" in error
        assert page.get_by_label(NEWSLETTER_DE).is_checked(), "as the visitor ticked it"
        screenshot(page, "capture-form-de-error")

        page.get_by_role("textbox", name="Geschäftliche E-Mail-Adresse").fill("anna@example.de")
        page.get_by_role("button", name="Senden").click()
        page.wait_for_url("**/f/contact/thanks?r=*")
        assert page.locator("html").get_attribute("lang") == "de"
        assert page.locator("h1").inner_text() == "Vielen Dank"
        main = page.locator("main").inner_text()
        assert "Jemand aus unserem Team meldet sich" in main
        assert "Falls etwas bestätigt werden muss" in main
        screenshot(page, "capture-form-de-thanks")
    finally:
        context.close()
    with database.read() as session:
        entries = list(session.execute(select(ConsentEvent)).scalars())
        evidence = [orjson.loads(e.body) for e in session.execute(select(ConsentEvidence))
                    .scalars()]  # fmt: skip
        subject = session.execute(select(Subject)).scalar_one()
    assert [(e.purpose_key, e.action, e.locale) for e in entries] == [
        ("newsletter", "granted", "de")
    ]
    assert entries[0].notice_sha256 == hashlib.sha256(NEWSLETTER_DE.encode()).hexdigest()
    assert [body["locale"] for body in evidence] == ["de"]
    assert subject.locale == "de"


def _german_host(zeroparty_url: str) -> Starlette:
    """A German page on another origin embedding the contact form with the snippet."""

    async def page(_request: Request) -> HTMLResponse:
        return HTMLResponse(
            f"""<!doctype html><html lang="de-DE"><head><meta charset="utf-8">
<title>Northwind: Kontakt</title></head><body><h1>Northwind Analytics</h1>
<script src="{zeroparty_url}/embed.js" data-form="contact" data-title="Kontaktformular" async>
</script></body></html>"""
        )

    return Starlette(routes=[Route("/", page)])


def test_an_embedded_form_speaks_the_language_of_the_page_it_is_on(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    """An English browser on a German page: the page's language wins (``?lang=``)."""
    host_port = free_port()
    host_origin = f"http://127.0.0.1:{host_port}"
    settings = dataclasses.replace(settings, allowed_embed_origins=(host_origin,))
    zeroparty = serve(create_app(settings, database))
    serve(_german_host(zeroparty.url), port=host_port)
    page.goto(host_origin + "/")
    frame = page.wait_for_selector("iframe[title='Kontaktformular']")
    form = page.frame_locator("iframe[title='Kontaktformular']")
    form.locator("h1").wait_for()
    assert form.locator("h1").inner_text() == "Sprechen Sie mit Northwind"
    assert form.get_by_label(NEWSLETTER_DE).is_visible()
    assert "lang=de-DE" in (frame.get_attribute("src") or "")
