"""A lead's page opens with a card (name, company, stage, score, conversion
probability, consent per purpose) and shows the score's points and every package's data
as tables and lists, not a raw JSON dump (issue 18). The name the visitor typed into a
form is shown (the page said "Name —")."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from consent_ledger.subjects import find_subject_id
from tests.console.conftest import XSS
from tests.scoring.conftest import submit
from zeroparty.db import Database

__all__ = ["submit"]  # the fixture, for this module

FIT = {"company_size": "51-200", "job_title": "Director of Sales"}


def _subject(database: Database, email: str) -> str:
    with database.read() as session:
        found = find_subject_id(session, email)
    assert found is not None
    return found


def _card(html: str) -> str:
    found = re.search(r'<section class="card".*?</section>', html, re.S)
    assert found
    return found.group(0)


def _fact(card: str, name: str) -> str:
    found = re.search(rf"<dt>{name}</dt><dd[^>]*>(.*?)</dd>", card, re.S)
    assert found, name
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found.group(1))).strip()


def test_the_card_shows_what_sales_needs(
    as_role: Callable[[str], TestClient],
    api: TestClient,
    database: Database,
    submit: Callable[..., Any],
) -> None:
    submit("ann@acme-corp.com", name="Ann Example", company="Acme Corp", **FIT)
    moved = api.post("/api/leads/stage", json={"email": "ann@acme-corp.com", "stage": "SQL"})
    assert moved.status_code == 200, moved.text
    subject_id = _subject(database, "ann@acme-corp.com")
    page = as_role("marketer").get(f"/console/leads/{subject_id}")
    assert page.status_code == 200
    card = _card(page.text)
    # Before: "Name —" although the visitor typed a name into the form.
    assert _fact(card, "Name") == "Ann Example (typed into contact)"
    assert _fact(card, "Company") == "Acme Corp"
    assert _fact(card, "Stage") == "SQL"
    score = _fact(card, "Score")
    assert score != "—"
    assert float(score) > 0
    assert _fact(card, "Conversion probability") in ("—",) or _fact(
        card, "Conversion probability"
    ).endswith("%")
    assert "✔ profiling" in card
    assert "✘ newsletter" in card
    # The card comes before the timeline; points are a table, nothing is raw JSON.
    assert page.text.index('class="card"') < page.text.index('id="timeline"')
    assert '<h2 id="points">Score points</h2>' in page.text
    points = page.text[page.text.index('id="points"') : page.text.index('id="held"')]
    assert '<th scope="col">Rule</th>' in points
    assert re.search(r'<a href="#entry-\d+">#\d+</a>', points)
    assert "<pre" not in page.text
    assert '"stage":' not in page.text
    assert "{" not in page.text[page.text.index('id="held"') :].replace("{{", "")


def test_a_lead_without_a_name_or_scoring(as_role: Callable[[str], TestClient], lead: str) -> None:
    card = _card(as_role("compliance").get(f"/console/leads/{lead}").text)
    assert _fact(card, "Name") == "not given"
    assert _fact(card, "Stage") == "—"
    assert "✔ newsletter" in card
    assert "✘ profiling" in card


def test_what_a_visitor_typed_is_escaped_on_the_card(
    as_role: Callable[[str], TestClient], database: Database, submit: Callable[..., Any]
) -> None:
    submit("eve@acme-corp.com", name=XSS, company=XSS)
    page = as_role("admin").get(f"/console/leads/{_subject(database, 'eve@acme-corp.com')}")
    assert page.status_code == 200
    assert XSS not in page.text
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;" in _card(page.text)
