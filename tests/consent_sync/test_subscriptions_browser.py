"""An admin registers an endpoint in the console in headless Chromium: logs in, fills the
form, reads the secret shown once, and sees it go into the list; axe-core finds no
violations; screenshots in ``test-artifacts/``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tests.console.conftest import PASSWORD, make_staff
from tests.fixtures.browser import LiveServer, axe_violations, free_port, screenshot
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings


def test_an_admin_registers_an_endpoint_in_the_browser(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    make_staff(database, "admin@staff.example", "admin")
    port = free_port()
    live = dataclasses.replace(settings, base_url=f"http://127.0.0.1:{port}")
    server = serve(create_app(live, database), port)

    page.goto(server.url + "/console/subscriptions")
    page.get_by_label("Email address").fill("admin@staff.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    assert page.url == server.url + "/console/subscriptions"
    assert "No subscriptions yet." in page.locator("#subscriptions").inner_text()
    assert axe_violations(page) == []

    page.get_by_label("URL").fill("https://esp.example/hooks/zeroparty")
    page.get_by_label("consent.withdrawn").check()
    page.get_by_label("consent.erased").check()
    page.get_by_label("Description").fill("Our sending tool")
    page.get_by_role("button", name="Add").click()
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("whsec_")
    assert axe_violations(page) == []
    screenshot(page, "console-subscriptions")
    assert "https://esp.example/hooks/zeroparty" in page.locator("#subscriptions").inner_text()

    page.goto(server.url + "/console/subscriptions")
    assert secret not in page.content(), "shown once"
    page.get_by_role("button", name="Remove").click()
    assert "removed" in page.locator("#subscriptions").inner_text()
