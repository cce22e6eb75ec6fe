"""Leads per stage for the console's reports (``scoring.reports``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scoring.reports import StageCount, stage_counts
from tests.scoring.conftest import grant, withdraw
from tests.scoring.test_seed_model import FIT
from zeroparty.db import Database


def _counts(database: Database) -> dict[str, int]:
    with database.read() as session:
        return {item.stage: item.leads for item in stage_counts(session)}


def test_no_leads_no_counts(database: Database) -> None:
    with database.read() as session:
        assert stage_counts(session) == [
            StageCount(stage, 0) for stage in ("Lead", "MQL", "SQL", "Opportunity", "Customer")
        ]


def test_leads_are_counted_in_their_stage(
    submit: Callable[..., Any], events: Callable[..., Any], database: Database
) -> None:
    submit("mql@example.com", **FIT)
    events("mql@example.com", "pricing_page_viewed", "webinar_attended")
    submit("sql@example.com", **FIT)
    events("sql@example.com", "pricing_page_viewed", "webinar_attended", "case_study_downloaded")
    grant(database, "lead@example.com")
    assert _counts(database) == {"Lead": 1, "MQL": 1, "SQL": 1, "Opportunity": 0, "Customer": 0}


def test_a_withdrawn_lead_is_back_at_lead(
    submit: Callable[..., Any], events: Callable[..., Any], database: Database
) -> None:
    submit("gone@example.com", **FIT)
    events("gone@example.com", "pricing_page_viewed", "webinar_attended")
    withdraw(database, "gone@example.com")
    assert _counts(database)["Lead"] == 1
    assert _counts(database)["MQL"] == 0
