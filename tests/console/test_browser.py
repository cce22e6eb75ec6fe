"""The console in headless Chromium: a compliance officer logs in, sets up two-factor
login, finds a lead, reads the timeline and the proof, exports the ledger as CSV and
opens the reports, accounts, the hand-off SLA and the sessions, then logs in again with
a code from the authenticator (computed by pyotp on the test's clock); axe-core
finds no violations on any console page; screenshots in ``test-artifacts/console-*``."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp

from console.sessions import SessionService
from scoring.models import ScoredLead
from tests.console.conftest import LEAD_EMAIL, PASSWORD, Clock, make_staff
from tests.fixtures.browser import LiveServer, axe_violations, free_port, screenshot
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings


def test_compliance_officer_in_browser(
    settings: Settings,
    database: Database,
    lead: str,
    hostile_lead: str,
    serve: Callable[..., LiveServer],
    page: Any,
    tmp_path: Path,
    clock: Clock,
) -> None:
    make_staff(database, "officer@staff.example", "compliance")
    port = free_port()
    live = dataclasses.replace(settings, base_url=f"http://127.0.0.1:{port}")
    app = create_app(live, database)
    app.state.console_sessions = SessionService(live, clock)
    server = serve(app, port)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )

    page.goto(server.url + "/console/leads")
    assert page.url.startswith(server.url + "/console/login")
    assert axe_violations(page) == []
    screenshot(page, "console-login")
    page.get_by_label("Email address").fill("officer@staff.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    assert page.url == server.url + "/console/leads"

    page.get_by_role("link", name="Two-factor").click()
    page.get_by_role("button", name="Set up two-factor login").click()
    totp = pyotp.TOTP(page.locator("code.secret").inner_text())
    assert axe_violations(page) == []
    screenshot(page, "console-two-factor-setup")
    page.get_by_label("Code from the app").fill(totp.at(clock.now))
    page.get_by_role("button", name="Confirm and turn on").click()
    assert page.locator("ul.recovery-codes > li").count() == 10
    assert axe_violations(page) == []
    page.get_by_role("link", name="Leads").click()

    page.get_by_label("Email (or its beginning) or lead id").fill("ann")
    page.get_by_role("button", name="Search").click()
    assert axe_violations(page) == []
    screenshot(page, "console-search")
    page.get_by_role("link", name=LEAD_EMAIL).click()
    assert page.locator("h1").inner_text() == f"Lead {LEAD_EMAIL}"
    assert page.locator("ol.timeline > li").count() == 3
    assert axe_violations(page) == []
    screenshot(page, "console-timeline")

    page.get_by_label("Moment (UTC)").fill("2026-01-01T00:00:00")
    page.get_by_role("button", name="Show").click()
    assert "State per purpose at 2026-01-01" in page.locator("main").inner_text()

    page.get_by_role("link", name="Proof for newsletter").click()
    assert "Verified" in page.get_by_role("status").inner_text()
    assert axe_violations(page) == []
    screenshot(page, "console-proof")

    page.get_by_role("link", name="Ledger", exact=True).click()
    page.get_by_label("Action").select_option("granted")
    page.get_by_role("button", name="Filter").click()
    assert axe_violations(page) == []
    screenshot(page, "console-ledger")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="CSV").click()
    target = tmp_path / "ledger.csv"
    download_info.value.save_as(target)
    with target.open(encoding="utf-8") as exported:
        rows = list(csv.DictReader(exported))
    assert {row["action"] for row in rows} == {"granted"}
    assert len(rows) == 3

    page.get_by_role("link", name="Reports").click()
    assert page.locator("svg[role=img]").count() == 8  # with stages, funnel and SLA
    assert axe_violations(page) == []
    screenshot(page, "console-reports")

    # The hostile lead (live profiling consent) handed to sales 30 h ago: SLA breached.
    with database.write() as session:
        session.merge(
            ScoredLead(
                subject_id=hostile_lead,
                stage="SQL",
                score=0.0,
                stage_since=utcnow() - timedelta(hours=30),
            )
        )
    for path in ("/console/", "/console/requests", "/console/versions", "/console/health",
                 "/console/accounts", "/console/accounts/example.com", "/console/sla",
                 f"/console/leads/{hostile_lead}"):  # fmt: skip
        page.goto(server.url + path)
        assert axe_violations(page) == [], path
        if path == "/console/sla":
            assert "OVERDUE" in page.locator("main").inner_text()
            screenshot(page, "console-sla")
    screenshot(page, "console-hostile-lead")
    assert dialogs == []  # the stored script never ran
    assert not [e for e in errors if "Content Security Policy" in e]

    page.get_by_role("link", name="Sessions").click()
    assert "(this one)" in page.locator("main").inner_text()
    assert axe_violations(page) == []
    screenshot(page, "console-sessions")

    page.get_by_role("button", name="Log out", exact=True).click()
    assert page.url.startswith(server.url + "/console/login")

    # Again, now with the second step: the next code of the authenticator.
    clock.advance(seconds=30)
    page.get_by_label("Email address").fill("officer@staff.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    assert page.url == server.url + "/console/login/code"
    assert axe_violations(page) == []
    screenshot(page, "console-login-code")
    page.get_by_label("Code", exact=True).fill(totp.at(clock.now))
    page.get_by_role("button", name="Continue").click()
    assert page.url == server.url + "/console/"
    page.get_by_role("button", name="Log out", exact=True).click()
    assert page.url.startswith(server.url + "/console/login")
