"""Rule 3: nothing reaches scoring or a CRM without a live consent; rule 2: a withdrawal
takes effect at once, also against a scoring or dispatch running at the same moment."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentRecord
from scoring import services
from scoring.webhooks import DispatchConfig, dispatch_pending
from tests.fixtures.webhooks import WebhookReceiver
from tests.scoring.conftest import counts, days_ago, grant, rows, ts, withdraw
from zeroparty.db import Database, utcnow
from zeroparty.wiring import build_ledger

FIT = {"company_size": "201-1000", "job_title": "VP Marketing"}
MQL_EVENTS = ("pricing_page_viewed", "webinar_attended")


def test_a_lead_without_consent_is_not_scored_and_its_events_are_only_counted(
    submit: Callable[..., Any], events: Callable[..., Any], api: TestClient, database: Database
) -> None:
    submit("no@example.com", consent=("newsletter",), **FIT)
    result = events("no@example.com", *MQL_EVENTS, "case_study_downloaded")
    assert result == {"accepted": 0, "duplicates": 0, "dropped": 3}
    after = counts(database)
    assert after == {
        **after,
        "scoring_leads": 0,
        "scoring_events": 0,
        "scoring_points": 0,
        "scoring_webhooks": 0,
        "scoring_attributes": 0,
    }
    dropped = rows(database, "SELECT type, count FROM scoring_dropped_events ORDER BY type")
    assert [(r.type, r.count) for r in dropped] == [
        ("case_study_downloaded", 1),
        ("pricing_page_viewed", 1),
        ("webinar_attended", 1),
    ]
    assert api.get("/api/leads", params={"stage": "MQL"}).json()["leads"] == []
    refused = api.post("/api/leads/stage", json={"email": "no@example.com", "stage": "SQL"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "consent_missing"


def test_an_event_counts_only_if_consent_was_live_when_it_happened(
    events: Callable[..., Any], api: TestClient, database: Database
) -> None:
    grant(database, "pit@example.com", occurred_at=days_ago(10))
    before = events("pit@example.com", "pricing_page_viewed", at=days_ago(11))
    assert before["dropped"] == 1
    during = events("pit@example.com", "webinar_attended", at=days_ago(9))
    assert during["accepted"] == 1
    body = api.get("/api/leads/score", params={"email": "pit@example.com"}).json()
    grant_seq = rows(database, "SELECT max(seq) AS s FROM consent_events")[0].s
    assert [(p["rule"], p["consent_entry"]) for p in body["points"]] == [("webinar", grant_seq)]


def test_an_event_from_a_gap_between_two_grants_is_dropped(
    events: Callable[..., Any], database: Database
) -> None:
    first = grant(database, "gap@example.com", occurred_at=days_ago(30))
    withdraw(database, "gap@example.com", occurred_at=days_ago(20))
    grant(database, "gap@example.com", occurred_at=days_ago(10))
    assert events("gap@example.com", "webinar_attended", at=days_ago(15))["dropped"] == 1
    assert events("gap@example.com", "webinar_attended", at=days_ago(25))["accepted"] == 1
    kept = rows(database, "SELECT consent_seq FROM scoring_events")
    assert [r.consent_seq for r in kept] == [first], "cites the grant live at that moment"


def test_withdrawal_removes_scores_at_once_and_stops_the_pending_webhook(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    api: TestClient,
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    submit("wd@example.com", **FIT)
    events("wd@example.com", *MQL_EVENTS)
    assert counts(database)["scoring_webhooks"] == 1
    withdrawal = withdraw(database, "wd@example.com")
    after = counts(database)
    assert after == {
        **after,
        "scoring_leads": 0,
        "scoring_events": 0,
        "scoring_points": 0,
        "scoring_attributes": 0,
    }
    hook = rows(database, "SELECT cancelled_at, cancel_reason FROM scoring_webhooks")[0]
    assert hook.cancelled_at is not None
    assert hook.cancel_reason == "consent"
    assert dispatch_pending(database, dispatch_config).delivered == 0
    assert webhook_receiver.received == []
    body = api.get("/api/leads/score", params={"email": "wd@example.com"}).json()
    assert (body["permitted"], body["score"], body["stage"]) == (False, None, "Lead")
    last = body["stage_changes"][-1]
    assert (last["from"], last["to"], last["actor"]) == ("MQL", "Lead", "system:consent")
    assert f"ledger entry {withdrawal}" in last["reason"]
    assert api.get("/api/leads", params={"stage": "MQL"}).json()["leads"] == []


def test_withdrawing_another_purpose_forgets_only_the_answers_kept_for_it(
    submit: Callable[..., Any], database: Database
) -> None:
    grant(database, "nl@example.com", "newsletter", method=ConsentMethod.DOUBLE_OPT_IN)
    submit("nl@example.com", topics="webinars", **FIT)
    assert {r.name for r in rows(database, "SELECT name FROM scoring_attributes")} >= {
        "company_size",
        "topics",
    }
    withdraw(database, "nl@example.com", "newsletter")
    names = {r.name for r in rows(database, "SELECT name FROM scoring_attributes")}
    assert "topics" not in names
    assert "company_size" in names
    assert rows(database, "SELECT score FROM scoring_leads")[0].score == 35


def test_erasure_removes_every_scoring_row_of_the_lead(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    cli_env: object,
) -> None:
    from zeroparty.cli import main

    submit("er@example.com", **FIT)
    events("er@example.com", *MQL_EVENTS)
    assert main(["erase", "er@example.com"]) == 0
    after = counts(database)
    assert after == {
        **after,
        "scoring_leads": 0,
        "scoring_events": 0,
        "scoring_points": 0,
        "scoring_attributes": 0,
        "scoring_stage_changes": 0,
        "scoring_webhooks": 0,
    }


def _withdraw_and_hold(database: Database, email: str, held: threading.Event, hold: float) -> None:
    with database.write() as session:
        build_ledger(database).record_by_email(
            session,
            ConsentRecord(
                email=email,
                purpose="profiling",
                action=ConsentAction.WITHDRAWN,
                source=ConsentSource.API,
                method=ConsentMethod.ELECTRONIC,
            ),
        )
        held.set()
        time.sleep(hold)


def test_race_a_withdrawal_in_flight_wins_over_a_scoring(
    database: Database, events: Callable[..., Any]
) -> None:
    grant(database, "race@example.com")
    held = threading.Event()
    withdrawal = threading.Thread(
        target=_withdraw_and_hold, args=(database, "race@example.com", held, 0.5)
    )
    withdrawal.start()
    assert held.wait(5)
    # The withdrawal has not committed yet; the intake waits for it, then sees it.
    result = events("race@example.com", *MQL_EVENTS)
    withdrawal.join()
    assert result["dropped"] == 2
    assert counts(database)["scoring_events"] == 0


def test_race_a_scoring_in_flight_is_undone_by_the_withdrawal_that_waited_for_it(
    database: Database,
) -> None:
    grant(database, "race2@example.com")
    scored = threading.Event()

    def score_and_hold() -> None:
        with database.write() as session:
            batch = [
                services.EventIn(
                    0, uuid.uuid4().hex, "race2@example.com", "pricing_page_viewed", utcnow()
                )
            ]
            assert services.ingest_events(session, batch).accepted == 1
            scored.set()
            time.sleep(0.5)

    scoring = threading.Thread(target=score_and_hold)
    scoring.start()
    assert scored.wait(5)
    withdraw(database, "race2@example.com")  # waits for the scoring to commit
    scoring.join()
    after = counts(database)
    assert after == {**after, "scoring_leads": 0, "scoring_events": 0, "scoring_points": 0}


def test_race_a_withdrawal_in_flight_wins_over_a_dispatch(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    submit("race3@example.com", **FIT)
    events("race3@example.com", *MQL_EVENTS)
    held = threading.Event()
    withdrawal = threading.Thread(
        target=_withdraw_and_hold, args=(database, "race3@example.com", held, 0.5)
    )
    withdrawal.start()
    assert held.wait(5)
    report = dispatch_pending(database, dispatch_config)
    withdrawal.join()
    dispatch_pending(database, dispatch_config)
    assert report.delivered == 0
    assert webhook_receiver.received == []


def test_race_a_withdrawal_during_a_post_removes_the_lead_and_cancels_the_rest(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    """A webhook claimed before the withdrawal committed is on its way and cannot be
    recalled; the withdrawal neither waits for it nor lets anything else be sent."""
    submit("race4@example.com", **FIT)
    events("race4@example.com", *MQL_EVENTS)
    webhook_receiver.delay = 0.5
    dispatcher = threading.Thread(target=dispatch_pending, args=(database, dispatch_config))
    dispatcher.start()
    webhook_receiver.wait_for(1)
    withdraw(database, "race4@example.com")
    dispatcher.join()
    assert len(webhook_receiver.answered) == 1
    assert counts(database)["scoring_leads"] == 0
    hook = rows(database, "SELECT delivered_at, cancelled_at FROM scoring_webhooks")[0]
    assert hook.delivered_at is not None  # it was sent: the row says so
    assert hook.cancelled_at is None  # one end state only (issue #14)
    # And nothing more will be sent.
    assert dispatch_pending(database, dispatch_config).delivered == 0
    assert len(webhook_receiver.received) == 1


def test_a_slow_crm_does_not_hold_up_other_writes(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    """No transaction stays open during the post: on SQLite one would stop every writer
    for as long as the CRM takes to answer."""
    submit("slow@example.com", **FIT)
    events("slow@example.com", *MQL_EVENTS)
    webhook_receiver.delay = 2.0
    dispatcher = threading.Thread(target=dispatch_pending, args=(database, dispatch_config))
    dispatcher.start()
    webhook_receiver.wait_for(1)  # the post has reached the receiver, which now waits
    grant(database, "other@example.com")  # a write while the post is on its way
    written_while_posting = not webhook_receiver.answered
    dispatcher.join()
    assert written_while_posting
    assert len(webhook_receiver.answered) == 1


operations = st.lists(
    st.tuples(
        st.sampled_from(["grant", "withdraw", "event", "old-event"]),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_property_scored_leads_are_always_a_subset_of_consented_leads(
    database: Database, steps: list[tuple[str, int]]
) -> None:
    run = uuid.uuid4().hex[:8]
    emails = [f"p{i}-{run}@example.com" for i in range(4)]
    for email in emails:  # every lead exists; consent comes and goes
        grant(database, email, "newsletter")
    for operation, who in steps:
        email = emails[who]
        if operation == "grant":
            grant(database, email)
        elif operation == "withdraw":
            withdraw(database, email)
        else:
            at = utcnow() - (timedelta(days=400) if operation == "old-event" else timedelta(0))
            with database.write() as session:
                services.ingest_events(
                    session,
                    [services.EventIn(0, uuid.uuid4().hex, email, "webinar_attended", at)],
                )
        consented = {
            r.subject_id
            for r in rows(
                database,
                "SELECT subject_id FROM consent_state "
                "WHERE purpose_key = 'profiling' AND permitted",
            )
        }
        for table in ("scoring_leads", "scoring_events", "scoring_points"):
            scored = {r.subject_id for r in rows(database, f"SELECT subject_id FROM {table}")}
            assert scored <= consented, table
    assert ts(utcnow())


def test_a_gpc_signal_in_the_same_submission_leaves_profiling_scores_alone(
    submit: Callable[..., Any], events: Callable[..., Any], api: TestClient
) -> None:
    body = submit("gpc@example.com", headers={"Sec-GPC": "1"}, **FIT)
    assert body["gpc_opt_out"] == ["sale_sharing"]
    events("gpc@example.com", *MQL_EVENTS)
    scored = api.get("/api/leads/score", params={"email": "gpc@example.com"}).json()
    assert (scored["score"], scored["stage"]) == (70, "MQL")
