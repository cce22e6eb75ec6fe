"""Scoring's personal data in export and erasure; quiz answers reach scoring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scoring import personal, services
from tests.scoring.conftest import grant, rows
from zeroparty import lead_signals
from zeroparty.db import Database, utcnow
from zeroparty.wiring import build_ledger

FIT = {"company_size": "51-200", "job_title": "CTO"}


def test_export_holds_score_points_events_and_answers(
    submit: Callable[..., Any], events: Callable[..., Any], database: Database
) -> None:
    submit("px@example.com", **FIT)
    events("px@example.com", "webinar_attended")
    subject_id = rows(database, "SELECT subject_id FROM scoring_leads")[0].subject_id
    with database.read() as session:
        exported = personal.export_scoring(session, subject_id)
    assert exported is not None
    assert exported["score"] == 50
    assert [e["type"] for e in exported["events"]] == ["webinar_attended"]
    assert {a["name"] for a in exported["answers"]} >= {"company_size", "job_title"}


def test_export_of_a_lead_never_scored_is_empty(database: Database) -> None:
    with database.read() as session:
        assert personal.export_scoring(session, "0" * 32) is None


def test_quiz_answers_reach_scoring_through_the_lead_signal(database: Database) -> None:
    grant(database, "quiz@example.com")
    subject_id = rows(database, "SELECT subject_id FROM subject_profiles")[0].subject_id
    signal = lead_signals.LeadSignal(
        subject_id,
        utcnow(),
        "analytics-fit@v1",
        (
            lead_signals.LeadInput(
                lead_signals.InputKind.QUIZ_ANSWER, "volume", ("large",), ("profiling",)
            ),
        ),
    )
    with database.write() as session:
        build_ledger(database).publish_signals(session, [signal])
    with database.read() as session:
        explanation = services.explain(session.connection(), subject_id)
    assert [(p.rule, p.source) for p in explanation.points] == [("terabytes", "quiz:volume=large")]
