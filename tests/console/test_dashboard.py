"""The console's home is a dashboard: leads, permitted leads per purpose, opt-in and
double opt-in rates, grants and withdrawals, requests due, SLA breaches and ledger
health, each a tile with a figure and a server-drawn SVG chart; roles see only their
tiles; the page is read in a fixed number of statements."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from starlette.testclient import TestClient

from consent_ledger import requests as subject_requests
from consent_ledger.actions import ConsentAction
from tests.factories import record
from tests.fixtures.statements import StatementCounter
from zeroparty.db import Database, utcnow

BUDGET_SQLITE = 22  # statements at the driver, BEGIN and COMMIT/ROLLBACK included
BUDGET_POSTGRESQL = 21
TILE_RE = re.compile(r'<li class="tile[^"]*" id="tile-([a-z-]+)"')


def _figure(html: str, key: str) -> str:
    found = re.search(rf'id="tile-{key}">.*?<p class="figure">(.*?)</p>', html, re.S)
    assert found, key
    return re.sub(r"<[^>]+>", "", found.group(1)).replace("⚠", "").strip()


def test_admin_sees_every_tile_with_a_chart(
    as_role: Callable[[str], TestClient], database: Database, lead: str
) -> None:
    record(database, "bob@example.com", "newsletter")
    record(database, "bob@example.com", "newsletter", ConsentAction.WITHDRAWN)
    page = as_role("admin").get("/console/")
    assert page.status_code == 200
    html = page.text
    assert "<h1>Dashboard</h1>" in html
    tiles = TILE_RE.findall(html)
    assert tiles == [
        "leads",
        "permitted",
        "opt-in",
        "double-opt-in",
        "grants",
        "requests",
        "sla",
        "health",
    ]
    assert _figure(html, "leads") == "2"
    # ann: newsletter live; profiling withdrawn; bob: newsletter withdrawn.
    assert _figure(html, "permitted") == "1"
    assert _figure(html, "grants") == "+1"  # 3 grants, 2 withdrawals
    assert _figure(html, "requests") == "0"
    assert _figure(html, "health") == "never verified"
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg"') >= 7
    assert "<script" not in html


def test_overdue_requests_raise_an_alert(
    as_role: Callable[[str], TestClient], database: Database, lead: str
) -> None:
    now = utcnow()
    with database.write() as session:
        for days in (40, 26):  # due 10 days ago; due in 4 or 5 days
            subject_requests.record_request(
                session,
                lead,
                subject_requests.RequestKind.ACCESS,
                subject_requests.RequestChannel.STAFF,
                received_at=now - timedelta(days=days),
            )
    html = as_role("compliance").get("/console/").text
    assert _figure(html, "requests") == "2"
    assert 'class="tile alert" id="tile-requests"' in html
    assert "1 overdue; 1 due within 7 days" in html


def test_a_marketer_sees_no_requests_or_health(
    as_role: Callable[[str], TestClient], lead: str
) -> None:
    html = as_role("marketer").get("/console/").text
    tiles = TILE_RE.findall(html)
    assert "requests" not in tiles
    assert "health" not in tiles
    assert "leads" in tiles
    assert "sla" in tiles


def test_the_dashboard_is_read_in_a_fixed_number_of_statements(
    as_role: Callable[[str], TestClient],
    database: Database,
    lead: str,
    statement_counter: StatementCounter,
) -> None:
    client = as_role("admin")
    client.get("/console/")  # warm caches (the scoring model's look-up)
    counts = []
    for extra in range(2):
        for n in range(5):
            record(database, f"extra{extra}-{n}@example.com", "newsletter")
        with statement_counter.count() as sql:
            assert client.get("/console/").status_code == 200
        counts.append(len(sql))
    # The same count however many leads and entries there are.
    assert counts[0] == counts[1]
    # The staff session (3 reads) and one read transaction for every tile: leads 2,
    # permitted 2, the ledger's daily counts 1, capture's submissions 3, requests 1,
    # scoring's SLA weeks and the count of waiting hand-offs 4, health 1, each
    # transaction with its BEGIN and its COMMIT or ROLLBACK (counted at the driver).
    budget = {"sqlite": BUDGET_SQLITE, "postgresql": BUDGET_POSTGRESQL}[database.dialect]
    assert counts[1] == budget, sql.report("GET /console/")
