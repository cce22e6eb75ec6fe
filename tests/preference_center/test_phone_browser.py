"""A German lead on a phone (390 px, Chromium asking for German): the preference page in
German with the site's German purpose and topic titles, nothing wider than the screen,
no axe-core violation; a change saved; the same link with ``?lang=en`` in English. The
German form at the same width, for the screens in ``docs/screenshots/``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentRecord
from tests.factories import notice_hash
from tests.fixtures.browser import LiveServer, axe_violations, screenshot
from tests.preference_center.conftest import issue
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.wiring import build_ledger

PHONE = {"width": 390, "height": 844}


def _fits(page: Any) -> None:
    """Nothing scrolls sideways: the page is no wider than the phone's screen."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{width} px wide on a {PHONE['width']} px screen"


def _german_lead(database: Database) -> str:
    """A lead who agreed, in German, to the newsletter (confirmed) and profiling."""
    ledger = build_ledger(database)
    for purpose, method in (
        ("newsletter", ConsentMethod.DOUBLE_OPT_IN),
        ("profiling", ConsentMethod.CHECKBOX),
    ):
        with database.write() as session:
            entry = ledger.record_by_email(
                session,
                ConsentRecord(
                    email="lena@example.de",
                    purpose=purpose,
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.FORM,
                    method=method,
                    notice_sha256=notice_hash(database, purpose, "de"),
                    locale="de",
                    evidence={"ip": "198.51.100.23", "user_agent": "pytest"},
                ),
            )
    return entry.subject_id


def test_a_german_lead_on_a_phone(
    settings: Settings,
    database: Database,
    serve: Callable[..., LiveServer],
    browser: Any,
) -> None:
    lead = _german_lead(database)
    server = serve(create_app(settings, database))
    context = browser.new_context(locale="de-DE", viewport=PHONE, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/p/{issue(settings, database, lead)}")
        page.wait_for_url("**/p/")
        assert page.locator("html").get_attribute("lang") == "de"
        assert page.locator("h1").inner_text() == "Ihre Einstellungen"
        legends = page.locator("legend").all_inner_texts()
        assert "Persönliche Betreuung" in legends
        assert "Produktneuigkeiten" in legends
        digest = page.get_by_label("Monatsrückblick")
        assert digest.is_checked()
        _fits(page)
        assert axe_violations(page) == []
        screenshot(page, "preference-center-de-390", docs=True)

        digest.uncheck()
        page.get_by_role("button", name="Auswahl speichern").click()
        page.wait_for_url("**/p/?done=saved")
        assert "Ihre Auswahl ist gespeichert." in page.locator("main").inner_text()
        assert not page.get_by_label("Monatsrückblick").is_checked()
        _fits(page)

        page.goto(f"{server.url}/p/?lang=en")
        assert page.locator("h1").inner_text() == "Your preferences"
        assert "Personalised follow-up" in page.locator("legend").all_inner_texts()
        page.get_by_role("button", name="Save my choices").click()
        page.wait_for_url("**/p/?done=saved&lang=en")
        assert page.locator("html").get_attribute("lang") == "en"
    finally:
        context.close()


def test_the_german_form_on_a_phone(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], browser: Any
) -> None:
    server = serve(create_app(settings, database))
    context = browser.new_context(locale="de-DE", viewport=PHONE, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(server.url + "/f/contact")
        assert page.locator("h1").inner_text() == "Sprechen Sie mit Northwind"
        assert page.get_by_role("group", name="Ihre Auswahl").is_visible()
        _fits(page)
        assert axe_violations(page) == []
        screenshot(page, "capture-form-de-390", docs=True)
    finally:
        context.close()
