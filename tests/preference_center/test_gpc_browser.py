"""GPC on the preference page in headless Chromium (issue 16): a California lead's
browser sends ``Sec-GPC: 1``; the page shows the opt-out of sale and sharing as
honoured, the box unticked, and axe-core finds no violations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from consent_ledger.actions import ConsentMethod
from consent_ledger.models import ConsentEvent
from tests.factories import record
from tests.fixtures.browser import LiveServer, axe_violations, free_port, screenshot
from tests.preference_center.conftest import EMAIL, issue
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings


def test_gpc_is_honoured_and_shown_in_the_browser(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    lead = record(database, EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN,
                  jurisdiction="US-CA").subject_id  # fmt: skip
    port = free_port()
    live = dataclasses.replace(settings, base_url=f"http://127.0.0.1:{port}")
    server = serve(create_app(live, database), port)
    page.set_extra_http_headers({"Sec-GPC": "1"})
    page.goto(server.url + "/p/" + issue(live, database, lead))
    page.wait_for_url(server.url + "/p/")
    assert "Global Privacy Control signal" in page.locator("[data-gpc=honoured]").inner_text()
    sharing = page.locator("#purpose-sale_sharing")
    assert "Global Privacy Control honoured" in sharing.locator(".state").inner_text()
    assert sharing.locator("input[type=checkbox]").is_checked() is False
    screenshot(page, "preference-center-gpc")
    assert axe_violations(page) == []
    page.reload()
    with database.read() as session:
        recorded = session.execute(
            select(func.count()).where(ConsentEvent.action == "gpc-opt-out")
        ).scalar_one()
    assert recorded == 1  # once, however many requests carry the signal
