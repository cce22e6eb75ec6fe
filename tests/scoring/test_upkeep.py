"""A score that stays current: the scheduled pass (``scoring.upkeep``, run by ``serve``)
rescores, in batches, the leads whose points decay or whose windows close, and with
``[scoring] demote_after_days`` recycles idle leads, each move recorded with its reason.
The clock is the pass's ``now``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from scoring.jobs import background_jobs
from scoring.upkeep import run_upkeep
from tests.fixtures.statements import StatementCounter
from tests.scoring.conftest import days_ago, grant, rows, withdraw
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings

FIT = {"company_size": "201-1000", "job_title": "Chief Data Officer"}  # 35 points
DEMOTE = ('purpose = "profiling"\n', 'purpose = "profiling"\ndemote_after_days = 60\n')
DECAY = ("points = 15\nwindow_days = 180", "points = 15\nwindow_days = 180\nhalf_life_days = 30")


def _lead(database: Database, email: str) -> Any:
    return rows(
        database,
        "SELECT l.* FROM scoring_leads l JOIN subject_profiles p USING (subject_id) "
        "WHERE p.email = :email",
        email=email,
    )[0]


def _rules(database: Database, email: str) -> dict[str, float]:
    found = rows(
        database,
        "SELECT rule, points FROM scoring_points JOIN subject_profiles p USING (subject_id) "
        "WHERE p.email = :email",
        email=email,
    )
    return {r.rule: r.points for r in found}


@pytest.fixture
def mql(submit: Callable[..., Any], events: Callable[..., Any]) -> str:
    """A lead at MQL now: 35 of fit, a pricing-page view (20, 90-day window) and a
    webinar (15, 180-day window): 70."""
    submit("kept@example.com", **FIT)
    events("kept@example.com", "pricing_page_viewed", "webinar_attended")
    return "kept@example.com"


def test_a_closed_window_lowers_the_score_and_stages_hold(
    mql: str, submit: Callable[..., Any], database: Database
) -> None:
    submit("fit-only@example.com", **FIT)  # no behaviour point: never due
    assert _lead(database, mql).score == 70
    soon = run_upkeep(database, now=utcnow() + timedelta(hours=1))
    assert (soon.rescored, soon.changed) == (0, 0), "scored within rescore_every: not due"
    later = run_upkeep(database, now=utcnow() + timedelta(hours=7))
    assert (later.rescored, later.changed) == (1, 0), "stale, but nothing decays yet"
    report = run_upkeep(database, now=utcnow() + timedelta(days=91))
    assert (report.rescored, report.changed, report.demoted) == (1, 1, 0)
    lead = _lead(database, mql)
    assert (lead.stage, lead.score) == ("MQL", 50), "a lower score does not demote by itself"
    assert "pricing-page" not in _rules(database, mql)
    again = run_upkeep(database, now=utcnow() + timedelta(days=91, hours=1))
    assert again.rescored == 0, "once rescored, not due again until stale"


def test_decay_is_applied_on_schedule(
    load_model: Callable[..., list[str]], mql: str, database: Database
) -> None:
    load_model(DECAY)
    first = run_upkeep(database, now=utcnow())
    assert first.rescored == 1, "scored by another model: due"
    report = run_upkeep(database, now=utcnow() + timedelta(days=30, hours=7))
    assert report.changed == 1
    assert _rules(database, mql)["webinar"] == pytest.approx(7.5, abs=0.1)


def test_leads_are_taken_in_batches(
    submit: Callable[..., Any], events: Callable[..., Any], database: Database
) -> None:
    for n in range(5):
        email = f"batch{n}@example.com"
        submit(email, **FIT)
        events(email, "pricing_page_viewed")
    report = run_upkeep(database, now=utcnow() + timedelta(days=91), batch_size=2)
    assert (report.rescored, report.changed, report.batches) == (5, 5, 3)
    assert {_lead(database, f"batch{n}@example.com").score for n in range(5)} == {35}


def test_a_batch_costs_the_same_statements_whatever_its_size(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    statement_counter: StatementCounter,
) -> None:
    def leads(first: int, count: int) -> None:
        for n in range(first, first + count):
            submit(f"count{n}@example.com", **FIT)
            events(f"count{n}@example.com", "pricing_page_viewed")

    leads(0, 2)
    with statement_counter.count() as small:
        assert run_upkeep(database, now=utcnow() + timedelta(days=91)).rescored == 2
    leads(2, 6)
    with statement_counter.count() as large:
        assert run_upkeep(database, now=utcnow() + timedelta(days=182)).rescored == 6

    # Reads and transactions per batch are the same; only the rows written grow (SQLite
    # counts each row of an executemany as one statement).
    def reads(sql: Any) -> list[str]:
        return [s for s in sql if not s.lstrip().upper().startswith(("INSERT", "UPDATE"))]

    assert len(reads(large)) == len(reads(small)), large.report()


def test_a_withdrawn_lead_is_not_rescored(
    mql: str, database: Database, load_model: Callable[..., list[str]]
) -> None:
    withdraw(database, mql)
    report = run_upkeep(database, now=utcnow() + timedelta(days=91))
    assert report.rescored == 0
    assert rows(database, "SELECT count(*) AS n FROM scoring_leads")[0].n == 0


def test_idle_leads_are_recycled_with_the_reason(
    load_model: Callable[..., list[str]], mql: str, database: Database
) -> None:
    load_model(DEMOTE)
    assert rows(database, "SELECT count(*) AS n FROM scoring_webhooks")[0].n == 1
    assert run_upkeep(database, now=utcnow() + timedelta(days=59)).demoted == 0
    report = run_upkeep(database, now=utcnow() + timedelta(days=61))
    assert report.demoted == 1
    lead = _lead(database, mql)
    assert (lead.stage, lead.recycled_score) == ("Lead", 70)
    change = rows(database, "SELECT * FROM scoring_stage_changes ORDER BY id DESC LIMIT 1")[0]
    moved = (change.from_stage, change.to_stage, change.actor)
    assert moved == ("MQL", "Lead", "system:inactivity")
    assert change.reason.startswith("no activity for 60 days")
    assert "recycled to Lead at score 70" in change.reason
    hook = rows(database, "SELECT cancelled_at, cancel_reason FROM scoring_webhooks")[0]
    assert hook.cancelled_at is not None
    assert hook.cancel_reason == "demoted"
    assert run_upkeep(database, now=utcnow() + timedelta(days=62)).demoted == 0


def test_activity_keeps_a_lead_where_it_is(
    load_model: Callable[..., list[str]],
    api: TestClient,
    events: Callable[..., Any],
    database: Database,
) -> None:
    load_model(DEMOTE)
    for email in ("busy@example.com", "idle@example.com"):
        grant(database, email, occurred_at=days_ago(100))
        events(email, "pricing_page_viewed", "webinar_attended", at=days_ago(70))
        moved = api.post("/api/leads/stage", json={"email": email, "stage": "MQL"})
        assert moved.status_code == 200, moved.text
    with database.write() as session:
        session.execute(text("UPDATE scoring_leads SET stage_since = :at"), {"at": days_ago(70)})
    events("busy@example.com", "case_study_downloaded", at=days_ago(10))
    report = run_upkeep(database, now=utcnow())
    assert report.demoted == 1
    assert _lead(database, "busy@example.com").stage == "MQL"
    assert _lead(database, "idle@example.com").stage == "Lead"


BAD_KEYS = [
    (('purpose = "profiling"\n', 'purpose = "profiling"\nrescore_every = "soon"\n'),
     "scoring.rescore_every", "duration"),
    (('purpose = "profiling"\n', 'purpose = "profiling"\ndemote_after_days = 0\n'),
     "scoring.demote_after_days", "number"),
    (('purpose = "profiling"\n', 'purpose = "profiling"\ndemote_after_days = "90d"\n'),
     "scoring.demote_after_days", "number"),
]  # fmt: skip


@pytest.mark.parametrize(("replacement", "where", "why"), BAD_KEYS)
def test_bad_upkeep_keys_are_refused(
    load_model: Callable[..., list[str]],
    database: Database,
    replacement: tuple[str, str],
    where: str,
    why: str,
) -> None:
    before = rows(database, "SELECT count(*) AS n FROM scoring_models")[0].n
    with pytest.raises(SiteConfigError) as raised:
        load_model(replacement)
    problems = dict(raised.value.problems)
    assert why in problems[f"site.toml: {where}"], problems
    assert rows(database, "SELECT count(*) AS n FROM scoring_models")[0].n == before


def test_serve_runs_the_pass(settings: Settings, database: Database) -> None:
    jobs = background_jobs(settings, database)
    assert "scoring-upkeep" in [job.name for job in jobs]
