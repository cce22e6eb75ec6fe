"""Every console page in headless Chromium at 390 px (a phone) and 1280 px (a desktop):
the page never scrolls sideways (wide tables scroll inside their own box), and axe-core
finds no WCAG 2.x A/AA violation. The dashboard, the lead list and a lead's page are
photographed at both widths: into ``docs/screenshots/`` when
``ZEROPARTY_SCREENSHOTS=docs/screenshots`` (``make screenshots``), else into
``test-artifacts/``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentRecord
from consent_ledger.requests import RequestChannel, RequestKind, record_request
from consent_ledger.subjects import find_subject_id
from console.sessions import SessionService
from scoring.models import ScoredLead
from tests.console.conftest import PASSWORD, Clock, make_staff
from tests.factories import notice_hash
from tests.fixtures.browser import ARTIFACTS, LiveServer, axe_violations, free_port
from tests.scoring.conftest import submit
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings
from zeroparty.wiring import build_ledger

__all__ = ["submit"]  # the fixture, for this module

WIDTHS = (390, 1280)
FIT = {"company_size": "51-200", "job_title": "Director of Sales"}
PHOTOGRAPHED = {"/console/": "dashboard", "/console/leads": "lead-list"}


def _many_leads(database: Database, count: int) -> None:
    """Imported leads for a list of several pages, with very long addresses (a narrow
    screen's worst case)."""
    ledger = build_ledger(database)
    notice = notice_hash(database, "newsletter")
    with database.write() as session:
        for n in range(count):
            ledger.record_by_email(
                session,
                ConsentRecord(
                    email=f"a.rather.long.address.number.{n:03d}@subsidiary.example-holdings.com",
                    purpose="newsletter",
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.IMPORT,
                    method=ConsentMethod.DOUBLE_OPT_IN,
                    notice_sha256=notice,
                ),
            )


def _subject(database: Database, email: str) -> str:
    with database.read() as session:
        found = find_subject_id(session, email)
    assert found is not None
    return found


def _photograph(page: Any, name: str) -> None:
    target = Path(os.environ.get("ZEROPARTY_SCREENSHOTS") or ARTIFACTS)
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"console-{name}.png"), full_page=True)


def test_every_console_page_at_390_and_1280_px(
    settings: Settings,
    database: Database,
    lead: str,
    hostile_lead: str,
    submit: Callable[..., Any],
    api: Any,
    serve: Callable[..., LiveServer],
    page: Any,
    clock: Clock,
) -> None:
    make_staff(database, "admin@staff.example", "admin")
    submit("ann.example@acme-corp.com", name="Ann Example", company="Acme Corp", **FIT)
    moved = api.post(
        "/api/leads/stage", json={"email": "ann.example@acme-corp.com", "stage": "SQL"}
    )
    assert moved.status_code == 200, moved.text
    ann = _subject(database, "ann.example@acme-corp.com")
    _many_leads(database, 60)
    with database.write() as session:
        session.merge(  # handed to sales 30 h ago: its SLA is breached
            ScoredLead(
                subject_id=hostile_lead,
                stage="SQL",
                score=0.0,
                stage_since=utcnow() - timedelta(hours=30),
            )
        )
        request = record_request(
            session, lead, RequestKind.ACCESS, RequestChannel.STAFF,
            received_at=utcnow() - timedelta(days=40),
        )  # fmt: skip
        request_id = request.id
    port = free_port()
    live = dataclasses.replace(settings, base_url=f"http://127.0.0.1:{port}")
    app = create_app(live, database)
    app.state.console_sessions = SessionService(live, clock)
    server = serve(app, port)

    page.goto(server.url + "/console/login")
    page.get_by_label("Email address").fill("admin@staff.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    assert page.url == server.url + "/console/"

    paths = [
        "/console/",
        "/console/leads",
        "/console/leads?page=2",
        "/console/leads?q=ann",
        "/console/leads?stage=nonsense&page=99",
        f"/console/leads/{ann}",
        f"/console/leads/{hostile_lead}",
        f"/console/leads/{lead}",
        f"/console/leads/{lead}/proof/newsletter",
        "/console/ledger",
        "/console/requests",
        f"/console/requests/{request_id}",
        "/console/accounts",
        "/console/accounts/acme-corp.com",
        "/console/sla",
        "/console/reports",
        "/console/versions",
        "/console/health",
        "/console/audit",
        "/console/sessions",
        "/console/password",
        "/console/two-factor",
    ]
    problems: list[str] = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            answer = page.goto(server.url + path)
            assert answer is not None
            assert answer.status < 500, path
            scroll, inner = page.evaluate(
                "[document.scrollingElement.scrollWidth, window.innerWidth]"
            )
            if scroll > inner:
                problems.append(f"{path} at {width} px: {scroll} px wide")
            violations = axe_violations(page)
            if violations:
                problems.append(
                    f"{path} at {width} px: "
                    + "; ".join(f"{v['id']} ({len(v['nodes'])})" for v in violations)
                )
            if path in PHOTOGRAPHED:
                _photograph(page, f"{PHOTOGRAPHED[path]}-{width}")
            elif path == f"/console/leads/{ann}":
                _photograph(page, f"lead-{width}")
    assert problems == [], "\n".join(problems)
