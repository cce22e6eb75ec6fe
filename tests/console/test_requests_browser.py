"""The whole path of a request in headless Chromium: a person asks on the public request
page, confirms by the mailed link, and a compliance officer carries the erasure out from
the queue, which needs the confirming box ticked; axe-core finds no violations on the
pages; screenshots in ``test-artifacts/``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from consent_ledger.models import SubjectProfile
from tests.console.conftest import LEAD_EMAIL, PASSWORD, make_staff
from tests.fixtures.browser import LiveServer, axe_violations, free_port, screenshot
from tests.fixtures.mail import SmtpServer
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings


def test_a_request_from_the_public_page_to_the_erasure(
    settings: Settings,
    database: Database,
    lead: str,
    serve: Callable[..., LiveServer],
    page: Any,
    smtp_server: SmtpServer,
) -> None:
    make_staff(database, "officer@staff.example", "compliance")
    port = free_port()
    live = dataclasses.replace(
        settings, base_url=f"http://127.0.0.1:{port}", smtp_url=smtp_server.url
    )
    server = serve(create_app(live, database), port)

    page.goto(server.url + "/request")
    assert axe_violations(page) == []
    screenshot(page, "request-page", docs=True)
    page.get_by_label("Your email address").fill(LEAD_EMAIL)
    page.get_by_label("Delete my personal data").check()
    page.get_by_role("button", name="Send me the confirmation link").click()
    assert "We have mailed a link" in page.locator("main").inner_text()
    (message,) = smtp_server.wait_for(1)
    match = re.search(re.escape(server.url) + r"/request/confirm/\S+", SmtpServer.text_of(message))
    assert match is not None
    page.goto(match.group(0))
    assert axe_violations(page) == []
    page.get_by_role("button", name="Confirm my request").click()
    assert "We have received your request" in page.locator("main").inner_text()
    assert axe_violations(page) == []

    page.goto(server.url + "/console/requests")
    page.get_by_label("Email address").fill("officer@staff.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    assert page.url == server.url + "/console/requests"
    assert axe_violations(page) == []
    screenshot(page, "console-requests")
    page.get_by_role("link", name="Work on #1").click()
    assert page.locator("h1").inner_text().startswith("Request #1: erasure")
    assert axe_violations(page) == []
    screenshot(page, "console-request-erasure")
    # One click is not enough: the browser asks for the box first, nothing is sent.
    page.get_by_role("button", name="Erase and complete #1").click()
    assert page.url == server.url + "/console/requests/1"
    with database.read() as session:
        assert session.get(SubjectProfile, lead) is not None
    page.get_by_label("I confirm the erasure of this lead's personal data").check()
    page.get_by_role("button", name="Erase and complete #1").click()
    assert "The lead's personal data is erased" in page.locator("main").inner_text()
    with database.read() as session:
        assert session.get(SubjectProfile, lead) is None
