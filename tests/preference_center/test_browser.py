"""The preference center in headless Chromium: a mailed link, toggles, unsubscribe all,
export download; axe-core finds no violations; screenshots in ``test-artifacts/``."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.fixtures.browser import LiveServer, axe_violations, free_port, screenshot
from tests.fixtures.mail import SmtpServer
from tests.preference_center.conftest import EMAIL, issue
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.mail import deliver_pending, transport_for
from zeroparty.settings import Settings


def _mailed_link(page: Any, server: LiveServer, settings: Settings, database: Database,
                 smtp_server: SmtpServer) -> str:  # fmt: skip
    page.goto(server.url + "/p/request-link")
    assert axe_violations(page) == []
    page.get_by_label("Email address").fill(EMAIL)
    page.get_by_role("button", name="Mail me a link").click()
    assert "If this address is known to us" in page.locator("main").inner_text()
    (message,) = smtp_server.wait_for(1)  # sent right after the answer, no outbox poll
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_pending(database, transport) == 0
    match = re.search(re.escape(server.url) + r"/p/\S+", SmtpServer.text_of(message))
    assert match is not None
    return match.group(0)


def test_preference_center_in_browser(
    settings: Settings,
    database: Database,
    lead: str,
    serve: Callable[..., LiveServer],
    page: Any,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    port = free_port()
    live = dataclasses.replace(
        settings, base_url=f"http://127.0.0.1:{port}", smtp_url=smtp_server.url
    )
    server = serve(create_app(live, database), port)
    link = _mailed_link(page, server, live, database, smtp_server)

    page.goto(link)
    assert page.url == server.url + "/p/"  # the token left the address bar
    assert page.locator("h1").inner_text() == "Your preferences"
    screenshot(page, "preference-center-page", docs=True)
    assert axe_violations(page) == []

    # Toggle topics and a purpose, then save.
    page.get_by_label("Webinar invitations").uncheck()
    page.get_by_label("Yes, email me about important changes").check()
    page.get_by_label("Release notes").check()
    page.get_by_role("button", name="Save my choices").click()
    # Product updates were never confirmed by this lead: a confirmation link is mailed.
    assert page.get_by_role("status").inner_text().startswith("Almost done")
    assert page.get_by_label("Webinar invitations").is_checked() is False
    assert page.get_by_label("Monthly digest").is_checked() is True
    assert page.locator("#purpose-product_updates .state").get_attribute("data-state") == (
        "pending"
    )
    screenshot(page, "preference-center-saved")
    _link_mail, confirmation = smtp_server.wait_for(2)
    assert confirmation["Subject"] == "Please confirm your choice"
    found = re.search(re.escape(server.url) + r"/p/confirm/\S+", SmtpServer.text_of(confirmation))
    assert found is not None
    page.goto(found.group(0))
    assert "Product updates" in page.locator("main").inner_text()
    assert axe_violations(page) == []
    page.get_by_role("button", name="Yes, I confirm").click()
    assert page.get_by_role("status").inner_text() == "Your choice is confirmed."
    page.goto(server.url + "/p/")
    assert page.get_by_label("Release notes").is_checked() is True
    assert page.locator("#purpose-product_updates .state").get_attribute("data-state") == "on"

    page.get_by_role("button", name="Unsubscribe from everything").click()
    assert page.get_by_role("status").inner_text() == "You are unsubscribed from everything."
    assert page.locator("input[type=checkbox]:checked").count() == 0
    screenshot(page, "preference-center-unsubscribed")
    assert axe_violations(page) == []

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download my data").click()
    target = tmp_path / "my-data.json"
    download_info.value.save_as(target)
    data = json.loads(target.read_text())
    assert data["profile"]["email"] == EMAIL
    actions = [(e["purpose"], e["action"]) for e in data["ledger"]]
    assert ("product_updates", "granted") in actions
    assert ("product_updates", "confirmed") in actions
    assert ("product_updates", "withdrawn") in actions
    assert all(s["permitted"] is False for s in data["consent"])


def test_link_clicked_on_another_site_still_opens(
    settings: Settings,
    database: Database,
    lead: str,
    serve: Callable[..., LiveServer],
    page: Any,
) -> None:
    """Webmail is another site: its click must still land on the page (SameSite=Strict)."""
    port = free_port()
    live = dataclasses.replace(settings, base_url=f"http://127.0.0.1:{port}")
    server = serve(create_app(live, database), port)
    link = server.url + "/p/" + issue(live, database, lead)

    async def webmail(_request: Any) -> HTMLResponse:
        return HTMLResponse(f'<html lang="en"><body><a href="{link}">Manage</a></body></html>')

    mail_site = serve(Starlette(routes=[Route("/", webmail)]))
    page.goto(mail_site.url.replace("127.0.0.1", "localhost") + "/")
    page.get_by_role("link", name="Manage").click()
    page.wait_for_url(server.url + "/p/")
    assert page.locator("h1").inner_text() == "Your preferences"
    screenshot(page, "preference-center-from-webmail")
