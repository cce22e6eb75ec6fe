"""The CRM that took a hand-off is told when that lead withdraws or is erased: signed
like the hand-off (checked as the receiver checks it), without the address; a lead
never handed off tells the CRM nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from scoring.webhooks import DispatchConfig, dispatch_pending, verify
from tests.fixtures.webhooks import WebhookReceiver
from tests.scoring.conftest import WEBHOOK_SECRET, rows, withdraw
from zeroparty.cli import main
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.wiring import build_ledger

FIT = {"company_size": "201-1000", "job_title": "VP Marketing"}
MQL_EVENTS = ("pricing_page_viewed", "webinar_attended")


def hand_off(
    email: str,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    config: DispatchConfig,
) -> str:
    submit(email, **FIT)
    events(email, *MQL_EVENTS)
    assert dispatch_pending(database, config).delivered == 1
    [row] = rows(database, "SELECT subject_id FROM scoring_webhooks")
    return str(row.subject_id)


def test_a_withdrawal_then_an_erasure_reach_the_crm(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
    cli_env: Settings,
) -> None:
    lead_id = hand_off("crm@example.com", submit, events, database, dispatch_config)
    seq = withdraw(database, "crm@example.com")
    assert dispatch_pending(database, dispatch_config).delivered == 1
    handoff, withdrawn = webhook_receiver.wait_for(2)
    assert verify(WEBHOOK_SECRET, withdrawn.headers, withdrawn.body, now=time.time())
    body = orjson.loads(withdrawn.body)
    assert body["type"] == "lead.consent_withdrawn"
    assert body["data"] == {
        "lead_id": lead_id,
        "handed_off_stage": orjson.loads(handoff.body)["data"]["stage"],
        "purpose": "profiling",
        "action": "withdrawn",
        "occurred_at": body["data"]["occurred_at"],
        "consent_entry": seq,
    }
    assert b"crm@example.com" not in withdrawn.body

    assert main(["erase", "crm@example.com"]) == 0
    assert dispatch_pending(database, dispatch_config).delivered == 1
    erased = webhook_receiver.wait_for(3)[2]
    assert verify(WEBHOOK_SECRET, erased.headers, erased.body, now=time.time())
    notice = orjson.loads(erased.body)
    assert notice["type"] == "lead.erased"
    assert notice["data"]["lead_id"] == lead_id
    assert notice["data"]["erased"] is True
    [kept] = rows(database, "SELECT event, delivered_at FROM scoring_webhooks")
    assert kept.event == "lead.erased", "erasure removed the rest; the notice names only the id"
    ledger = build_ledger(database)
    with database.write() as session:
        ledger.erase(session, lead_id)  # erasure again (idempotent)
    assert dispatch_pending(database, dispatch_config).delivered == 0, "told once"


def test_an_erasure_straight_after_the_hand_off_reaches_the_crm(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
    cli_env: Settings,
) -> None:
    lead_id = hand_off("gone@example.com", submit, events, database, dispatch_config)
    assert main(["erase", "gone@example.com"]) == 0
    assert dispatch_pending(database, dispatch_config).delivered == 1
    notice = orjson.loads(webhook_receiver.wait_for(2)[1].body)
    assert (notice["type"], notice["data"]["lead_id"]) == ("lead.erased", lead_id)


def test_a_lead_never_handed_off_tells_the_crm_nothing(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
    cli_env: Settings,
) -> None:
    submit("quiet@example.com", **FIT)
    events("quiet@example.com", *MQL_EVENTS)  # its hand-off waits, undelivered
    withdraw(database, "quiet@example.com")
    assert main(["erase", "quiet@example.com"]) == 0
    assert dispatch_pending(database, dispatch_config).delivered == 0
    assert webhook_receiver.received == []
    assert rows(database, "SELECT id FROM scoring_webhooks") == []


def test_an_erasure_during_the_hand_off_post_still_reaches_the_crm(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
    cli_env: Settings,
) -> None:
    """The CRM took the hand-off while erasure deleted its row: it is told all the same."""
    import threading

    submit("flight@example.com", **FIT)
    events("flight@example.com", *MQL_EVENTS)
    webhook_receiver.hold = threading.Event()
    worker = threading.Thread(target=dispatch_pending, args=(database, dispatch_config))
    worker.start()
    try:
        webhook_receiver.wait_for(1)  # the hand-off is on its way, the row leased
        assert main(["erase", "flight@example.com"]) == 0
    finally:
        webhook_receiver.hold.set()
        worker.join()
    webhook_receiver.hold = None
    dispatch_pending(database, dispatch_config)  # if the worker did not send it on already
    received = webhook_receiver.wait_for(2)
    assert len(received) == 2
    notice = orjson.loads(received[1].body)
    assert notice["type"] == "lead.erased"
