"""Hand-off webhooks: signed in the Standard Webhooks style, retried with backoff,
dead-lettered, delivered once across dispatchers, through a real HTTP receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from scoring import webhooks
from scoring.webhooks import DispatchConfig, dispatch_pending
from tests.fixtures.webhooks import WebhookReceiver
from tests.scoring.conftest import WEBHOOK_SECRET, rows, withdraw
from zeroparty.db import Database, utcnow

FIT = {"company_size": "201-1000", "job_title": "Chief Data Officer"}


@pytest.fixture
def mql(submit: Callable[..., Any], events: Callable[..., Any]) -> str:
    submit("hand@example.com", **FIT)
    events("hand@example.com", "pricing_page_viewed", "webinar_attended")
    return "hand@example.com"


def test_the_receiver_can_verify_the_signature(
    mql: str,
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    assert dispatch_pending(database, dispatch_config).delivered == 1
    [hook] = webhook_receiver.received
    # What any Standard Webhooks receiver does, by hand: HMAC-SHA256 over id.timestamp.body.
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    signed = f"{hook.headers['webhook-id']}.{hook.headers['webhook-timestamp']}.".encode()
    expected = base64.b64encode(hmac.new(key, signed + hook.body, hashlib.sha256).digest())
    assert hook.headers["webhook-signature"] == "v1," + expected.decode()
    assert webhooks.verify(WEBHOOK_SECRET, hook.headers, hook.body, now=utcnow().timestamp())
    assert not webhooks.verify(WEBHOOK_SECRET, hook.headers, hook.body + b" ")
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    assert not webhooks.verify(other, hook.headers, hook.body)
    late = utcnow().timestamp() + 3600
    assert not webhooks.verify(WEBHOOK_SECRET, hook.headers, hook.body, now=late)
    body = orjson.loads(hook.body)
    assert body["type"] == "lead.stage_reached"
    assert body["data"]["email"] == mql
    assert (body["data"]["stage"], body["data"]["score"]) == ("MQL", 70)
    assert sum(p["points"] for p in body["data"]["points"]) == 70


def test_failures_are_retried_with_backoff_then_dead_lettered(
    mql: str,
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.answer_with([500, 503, 500])
    now = utcnow()
    assert dispatch_pending(database, dispatch_config, now=now).retried == 1
    assert dispatch_pending(database, dispatch_config, now=now).retried == 0, "not due yet"
    hook = rows(database, "SELECT attempts, next_attempt_at, last_error FROM scoring_webhooks")[0]
    assert hook.attempts == 1
    assert "500" in hook.last_error
    later = now + timedelta(seconds=31)
    assert dispatch_pending(database, dispatch_config, now=later).retried == 1
    last = later + timedelta(seconds=61)
    assert dispatch_pending(database, dispatch_config, now=last).dead_lettered == 1
    ids = {r.headers["webhook-id"] for r in webhook_receiver.received}
    assert len(webhook_receiver.received) == 3
    assert len(ids) == 1, "one id on every retry"
    with database.read() as session:
        [dead] = webhooks.dead_letters(session.connection())
    assert dead.attempts == 3
    assert dead.failed_at is not None
    assert dispatch_pending(database, dispatch_config, now=last + timedelta(days=1)).delivered == 0


def test_a_dead_receiver_is_an_error_not_a_crash(mql: str, database: Database) -> None:
    config = DispatchConfig("http://127.0.0.1:9/nowhere", WEBHOOK_SECRET, 2, 1.0)
    report = dispatch_pending(database, config)
    assert report.retried == 1
    assert "Error" in rows(database, "SELECT last_error FROM scoring_webhooks")[0].last_error


def test_a_recovered_receiver_gets_it_on_retry(
    mql: str,
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    webhook_receiver.answer_with([502])
    now = utcnow()
    dispatch_pending(database, dispatch_config, now=now)
    report = dispatch_pending(database, dispatch_config, now=now + timedelta(minutes=1))
    assert report.delivered == 1
    assert rows(database, "SELECT delivered_at FROM scoring_webhooks")[0].delivered_at


def test_two_dispatchers_deliver_each_webhook_once(
    submit: Callable[..., Any],
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    for n in range(4):
        submit(f"many{n}@example.com", **FIT)
        events(f"many{n}@example.com", "pricing_page_viewed", "webinar_attended")
    workers = [
        threading.Thread(target=dispatch_pending, args=(database, dispatch_config))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ids = [r.headers["webhook-id"] for r in webhook_receiver.received]
    assert len(ids) == 4
    assert len(set(ids)) == 4


def test_an_sql_after_an_mql_is_a_second_hand_off(
    mql: str,
    events: Callable[..., Any],
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    events(mql, "case_study_downloaded")
    assert dispatch_pending(database, dispatch_config).delivered == 2
    stages = [orjson.loads(r.body)["data"]["stage"] for r in webhook_receiver.received]
    assert stages == ["MQL", "SQL"]


def test_serve_runs_the_dispatcher_as_a_background_job(
    mql: str,
    settings: Any,
    database: Database,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    from scoring import jobs
    from zeroparty.app import create_app

    monkeypatch.setattr(jobs, "DISPATCH_POLL_SECONDS", 0.05)
    configured = dataclasses.replace(
        settings, crm_webhook_url=webhook_receiver.url, crm_webhook_secret=WEBHOOK_SECRET
    )
    with TestClient(create_app(configured, database, background=True)):
        webhook_receiver.wait_for(1)


def end_states(database: Database) -> list[tuple[bool, bool, bool]]:
    """(delivered, dead-lettered, cancelled) of each webhook row."""
    return [
        (r.delivered_at is not None, r.failed_at is not None, r.cancelled_at is not None)
        for r in rows(
            database, "SELECT delivered_at, failed_at, cancelled_at FROM scoring_webhooks"
        )
    ]


def dispatch_while_withdrawing(
    database: Database, config: DispatchConfig, receiver: WebhookReceiver, email: str
) -> webhooks.DispatchReport:
    """Dispatch in a thread; while its post is held open at the receiver, commit a
    withdrawal of ``email``'s profiling consent; then let the receiver answer."""
    receiver.hold = threading.Event()
    reports: list[webhooks.DispatchReport] = []
    worker = threading.Thread(target=lambda: reports.append(dispatch_pending(database, config)))
    worker.start()
    try:
        receiver.wait_for(1)
        withdraw(database, email)
        # The withdrawal found the row pending and cancelled it, mid-flight.
        assert end_states(database) == [(False, False, True)]
    finally:
        receiver.hold.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    [report] = reports
    return report


def test_a_withdrawal_during_a_delivered_post_leaves_it_delivered_only(
    mql: str,
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    report = dispatch_while_withdrawing(database, dispatch_config, webhook_receiver, mql)
    assert (report.delivered, report.cancelled) == (1, 0)
    # The CRM has it: delivered, and only delivered.
    assert end_states(database) == [(True, False, False)]
    [hook] = rows(database, "SELECT attempts, cancel_reason FROM scoring_webhooks")
    assert (hook.attempts, hook.cancel_reason) == (1, None)
    # Nothing is left to send, then or later.
    later = utcnow() + timedelta(days=1)
    assert dispatch_pending(database, dispatch_config, now=later) == webhooks.DispatchReport()
    assert len(webhook_receiver.received) == 1


@pytest.mark.parametrize("max_attempts", [1, 3], ids=["last-attempt", "retry-left"])
def test_a_withdrawal_during_a_failed_post_leaves_it_cancelled_only(
    mql: str,
    database: Database,
    webhook_receiver: WebhookReceiver,
    max_attempts: int,
) -> None:
    config = DispatchConfig(webhook_receiver.url, WEBHOOK_SECRET, max_attempts, 5.0)
    webhook_receiver.answer_with([500])
    report = dispatch_while_withdrawing(database, config, webhook_receiver, mql)
    assert (report.cancelled, report.retried, report.dead_lettered) == (1, 0, 0)
    # Neither retried nor dead-lettered: cancelled, with the failed attempt noted.
    assert end_states(database) == [(False, False, True)]
    [hook] = rows(database, "SELECT attempts, last_error, cancel_reason FROM scoring_webhooks")
    assert (hook.attempts, hook.cancel_reason) == (1, "consent")
    assert "500" in hook.last_error
    later = utcnow() + timedelta(days=1)
    assert dispatch_pending(database, config, now=later) == webhooks.DispatchReport()
    assert len(webhook_receiver.received) == 1


def test_a_late_failure_never_overwrites_a_delivery(
    mql: str, database: Database, webhook_receiver: WebhookReceiver
) -> None:
    """The first dispatcher's lease runs out while its post hangs; a second one claims
    the row and delivers it; the first post then fails on its last attempt. The row is
    delivered, not also dead-lettered."""
    config = DispatchConfig(webhook_receiver.url, WEBHOOK_SECRET, max_attempts=1, timeout=5.0)
    webhook_receiver.answer_with([500])  # the first post's answer; then 204
    held = webhook_receiver.hold = threading.Event()
    first: list[webhooks.DispatchReport] = []
    worker = threading.Thread(target=lambda: first.append(dispatch_pending(database, config)))
    worker.start()
    try:
        webhook_receiver.wait_for(1)
        webhook_receiver.hold = None
        lapsed = utcnow() + timedelta(seconds=config.timeout) + webhooks.LEASE_MARGIN
        second = dispatch_pending(database, config, now=lapsed + timedelta(seconds=1))
    finally:
        held.set()
        worker.join(timeout=30)
    assert second.delivered == 1
    assert first == [webhooks.DispatchReport()]
    assert end_states(database) == [(True, False, False)]
    assert len({r.headers["webhook-id"] for r in webhook_receiver.received}) == 1


@pytest.mark.parametrize(
    "secret", ["plain", "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode()]
)
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(webhooks.WebhookSecretError):
        webhooks.sign(secret, "msg_1", 1, b"{}")
