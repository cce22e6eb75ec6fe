"""Reports with SVG charts and their numbers; versions with side-by-side diffs."""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod
from console.charts import Chart, Series, render_bar_chart
from console.providers import ConsoleProviders
from tests.console.conftest import log_in, make_staff
from tests.factories import record
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings
from zeroparty.site import load_site


def test_reports_with_data(as_role: Callable[[str], TestClient], database: Database) -> None:
    record(database, "a@example.com", "newsletter", method=ConsentMethod.DOUBLE_OPT_IN)
    record(database, "b@example.com", "profiling")
    record(database, "b@example.com", "profiling", ConsentAction.WITHDRAWN)
    page = as_role("marketer").get("/console/reports").text
    # opt-in per purpose and per form, grants, GPC, DOI, stages, the funnel, the SLA
    assert page.count("<svg") == 8
    assert "Grants and withdrawals per week" in page
    # Stages come from scoring: two leads, neither scored yet; visitors are not counted.
    assert "Funnel Lead → MQL → SQL" in page
    assert "<td>Lead</td><td>2</td><td>100%</td>" in page
    # The numbers are there as a table too: this week, 2 grants, 1 withdrawal.
    assert re.search(r"<td>\d{4}-\d\d-\d\d</td><td>2</td><td>1</td>", page)
    assert "style=" not in page
    assert "<script" not in page


def test_reports_empty(as_role: Callable[[str], TestClient]) -> None:
    page = as_role("admin").get("/console/reports").text
    assert page.count("<svg") == 8
    assert "No data in this period." in page


def test_stages_and_funnel_from_a_provider(settings: Settings, database: Database) -> None:
    @dataclasses.dataclass(frozen=True)
    class Stage:
        stage: str
        leads: int

    counts = [
        Stage("Visitor", 50),
        Stage("Lead", 30),
        Stage("MQL", 15),
        Stage("SQL", 5),
        Stage("Opportunity", 3),
        Stage("Customer", 1),
    ]
    app = create_app(settings, database)
    app.state.console_providers = dataclasses.replace(
        app.state.console_providers, stage_counts=lambda _session: counts
    )
    make_staff(database, "m@staff.example", "marketer")
    with TestClient(app) as client:
        page = log_in(client, "m@staff.example").get("/console/reports").text
    assert "Leads per lifecycle stage" in page
    assert "Funnel Visitor → Lead → MQL → SQL" in page
    assert "<td>Visitor</td><td>104</td><td>100%</td>" in page
    assert "<td>SQL</td><td>9</td>" in page


def test_sla_attainment_from_a_provider(settings: Settings, database: Database) -> None:
    @dataclasses.dataclass(frozen=True)
    class Week:
        week: datetime.date
        met: int
        missed: int
        open: int

    this_week = utcnow().date() - datetime.timedelta(days=utcnow().weekday())
    app = create_app(settings, database)
    app.state.console_providers = dataclasses.replace(
        app.state.console_providers, sla_weeks=lambda _session, _since: [Week(this_week, 3, 1, 2)]
    )
    make_staff(database, "s@staff.example", "marketer")
    with TestClient(app) as client:
        page = log_in(client, "s@staff.example").get("/console/reports").text
    assert "Hand-offs answered within their SLA per week" in page
    assert f"<td>{this_week.isoformat()}</td><td>3</td><td>1</td><td>2</td><td>75%</td>" in page


def test_reports_without_capture(settings: Settings, database: Database) -> None:
    app = create_app(settings, database)
    app.state.console_providers = ConsoleProviders()
    make_staff(database, "a@staff.example", "admin")
    with TestClient(app) as client:
        client = log_in(client, "a@staff.example")
        assert "capture is not connected" in client.get("/console/reports").text
        assert "No form data: capture is not connected." in client.get("/console/versions").text


def test_chart_escapes_and_labels() -> None:
    svg = render_bar_chart(
        Chart("c", "<b>t</b>", "d", ["<w>"], [Series("<s>", [3]), Series("two", [0])])
    )
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    assert 'role="img"' in svg
    assert "<title" in svg
    assert "<desc" in svg
    assert 'fill="url(#c-p0)"' in svg
    assert 'fill="url(#c-p1)"' in svg
    assert ">3</text>" in svg  # direct value label


def test_versions_and_diff(
    as_role: Callable[[str], TestClient], database: Database, tmp_path: Path
) -> None:
    site = Path("site.toml").read_text(encoding="utf-8")
    changed = tmp_path / "site.toml"
    page = as_role("marketer").get("/console/versions").text
    assert "newsletter (en)" in page
    assert "contact (form)" in page
    # A changed notice text and form make new versions.
    text = site.replace(
        'intro = { en = "Tell us a little about you',
        'intro = { en = "<i>New</i> intro. Tell us a little about you',
        1,
    ).replace("I can unsubscribe at any time with one click.", "Unsubscribe <b>any</b> time.", 1)
    assert text != site
    changed.write_text(text, encoding="utf-8")
    load_site(database, changed)
    page = as_role("marketer").get("/console/versions").text
    assert "differences from version 1" in page
    diff = as_role("marketer").get(
        "/console/versions/form/diff", params={"key": "contact", "a": "1", "b": "2"}
    )
    assert diff.status_code == 200
    assert "&lt;i&gt;New&lt;/i&gt; intro" in diff.text
    assert '<td class="changed">' in diff.text
    notice = as_role("compliance").get(
        "/console/versions/notice/diff", params={"key": "newsletter/en", "a": "1", "b": "2"}
    )
    assert notice.status_code == 200
    # Sentence by sentence: the unchanged first sentence is equal, the second changed.
    assert '<td class="equal">Yes, send me the Northwind newsletter' in notice.text
    assert "Unsubscribe &lt;b&gt;any&lt;/b&gt; time." in notice.text
