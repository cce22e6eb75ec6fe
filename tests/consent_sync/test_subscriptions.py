"""Outgoing subscriptions: endpoints registered with the event types they want, sent the
ledger's changes signed per Standard Webhooks (checked here as a receiver checks them,
on the raw bytes a real HTTP server received), retried with backoff, dead-lettered,
cancelled when removed; bad input refused with nothing stored."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import time
from datetime import timedelta

import orjson
import pytest

from consent_ledger.actions import ConsentAction
from consent_sync import subscriptions
from consent_sync.subscription_models import Subscription, SubscriptionDelivery
from tests.consent_sync.conftest import count
from tests.factories import record
from tests.fixtures.webhooks import Received, WebhookReceiver, webhook_receiver
from zeroparty.cli import main
from zeroparty.db import Database, utcnow
from zeroparty.outbox import BACKOFF_BASE_SECONDS
from zeroparty.settings import Settings
from zeroparty.wiring import build_ledger

__all__ = ["webhook_receiver"]

ANN = "ann@example.com"
ANN_SHA = hashlib.sha256(ANN.encode()).hexdigest()
SECRET_RE = re.compile(r"secret \(shown once; give it to the receiver\): (whsec_\S+)")


def receiver_accepts(secret: str, hook: Received, now: float) -> bool:
    """The Standard Webhooks check as a receiver writes it, without zeroparty's code:
    HMAC-SHA256 keyed with the base64 part of ``whsec_…`` over ``id.timestamp.body``
    (the raw bytes received), base64, ``v1,`` prefix, among the space-separated
    signatures; the timestamp within five minutes of the receiver's clock."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, stamp = hook.headers["webhook-id"], hook.headers["webhook-timestamp"]
    if abs(now - int(stamp)) > 300:
        return False
    digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + hook.body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    return any(hmac.compare_digest(expected, s) for s in hook.headers["webhook-signature"].split())


def add(url: str, events: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["subscription", "add", url, "--events", events]) == 0
    found = SECRET_RE.search(capsys.readouterr().out)
    assert found is not None
    return found.group(1)


def test_changes_reach_a_subscriber_signed_as_the_receiver_checks(
    cli_env: Settings,
    database: Database,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record(database, "before@example.com", "profiling", ConsentAction.GRANTED)  # before: not sent
    secret = add(webhook_receiver.url, "consent.withdrawn,consent.erased", capsys)
    record(database, ANN, "profiling")  # granted: not asked for
    withdrawal = record(database, ANN, "profiling", ConsentAction.WITHDRAWN)

    assert main(["subscription", "dispatch"]) == 0
    assert "1 deliveries made; 1 delivered" in capsys.readouterr().out
    [hook] = webhook_receiver.wait_for(1)
    assert receiver_accepts(secret, hook, time.time())
    assert not receiver_accepts(
        secret, Received(hook.path, hook.headers, hook.body + b" "), time.time()
    )
    assert not receiver_accepts(secret, hook, time.time() + 3600), "a replay an hour on"
    message = orjson.loads(hook.body)
    assert message["type"] == "consent.withdrawn"
    assert hook.headers["webhook-id"] == f"msg_1_{withdrawal.seq}"
    assert message["data"]["seq"] == withdrawal.seq
    assert (message["data"]["email"], message["data"]["email_sha256"]) == (ANN, ANN_SHA)
    assert message["data"]["purpose"] == "profiling"

    ledger = build_ledger(database)
    with database.write() as session:
        subject_id = ledger.find_lead(session, ANN)
        assert subject_id is not None
        ledger.erase(session, subject_id)
    assert main(["subscription", "dispatch"]) == 0
    hooks = webhook_receiver.wait_for(2)
    erased = orjson.loads(hooks[1].body)
    assert receiver_accepts(secret, hooks[1], time.time())
    assert erased["type"] == "consent.erased"
    assert erased["data"]["lead_id"] == subject_id
    assert erased["data"]["email"] is None, "an erased lead is named by its digest only"
    assert erased["data"]["email_sha256"] == ANN_SHA
    assert main(["subscription", "dispatch"]) == 0
    assert "0 deliveries made; 0 delivered" in capsys.readouterr().out.splitlines()[-1]
    assert len(webhook_receiver.received) == 2

    assert main(["subscription", "log"]) == 0
    log = capsys.readouterr().out
    assert log.count("delivered") == 2
    assert "consent.erased" in log


def test_each_subscriber_gets_the_types_it_asked_for(
    cli_env: Settings,
    database: Database,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add(webhook_receiver.url + "?all", "*", capsys)
    add(webhook_receiver.url + "?grants", "consent.granted", capsys)
    record(database, ANN, "profiling")
    record(database, ANN, "profiling", ConsentAction.WITHDRAWN)
    report = subscriptions.dispatch(database, cli_env)
    assert (report.made, report.sent.delivered) == (3, 3)
    by_path = sorted(
        (h.path.rsplit("?", 1)[1], orjson.loads(h.body)["type"]) for h in webhook_receiver.received
    )
    assert by_path == [
        ("all", "consent.granted"),
        ("all", "consent.withdrawn"),
        ("grants", "consent.granted"),
    ]


def test_a_failing_endpoint_is_retried_with_backoff_then_dead_lettered(
    cli_env: Settings,
    database: Database,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = dataclasses.replace(cli_env, webhook_max_attempts=3)
    add(webhook_receiver.url, "consent.withdrawn", capsys)
    record(database, ANN, "profiling")
    record(database, ANN, "profiling", ConsentAction.WITHDRAWN)
    webhook_receiver.answer_with([500, 500, 500])
    now = utcnow() + timedelta(seconds=1)
    assert subscriptions.dispatch(database, settings, now=now).sent.retried == 1
    assert subscriptions.dispatch(database, settings, now=now).sent.retried == 0, "not due"
    with database.read() as session:
        [logged] = subscriptions.delivery_log(session.connection())
        row = session.get(SubscriptionDelivery, logged.id)
        assert row is not None
        assert row.attempts == 1
        assert "500" in (row.last_error or "")
        assert row.next_attempt_at >= now + timedelta(seconds=BACKOFF_BASE_SECONDS)
    later = now + timedelta(seconds=BACKOFF_BASE_SECONDS + 1)
    assert subscriptions.dispatch(database, settings, now=later).sent.retried == 1
    last = later + timedelta(hours=1)
    assert subscriptions.dispatch(database, settings, now=last).sent.dead_lettered == 1
    ids = {h.headers["webhook-id"] for h in webhook_receiver.received}
    assert len(webhook_receiver.received) == 3
    assert len(ids) == 1, "one id on every retry"
    assert subscriptions.dispatch(database, settings, now=last + timedelta(days=1)).sent == (
        subscriptions.DispatchReport()
    )
    assert main(["subscription", "log", "--dead"]) == 0
    assert "dead" in capsys.readouterr().out


def test_a_removed_subscription_gets_nothing_more(
    cli_env: Settings,
    database: Database,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add(webhook_receiver.url, "consent.withdrawn", capsys)
    record(database, ANN, "profiling")
    record(database, ANN, "profiling", ConsentAction.WITHDRAWN)
    with database.write() as session:
        assert subscriptions.fan_out_once(session.connection()) == (1, False)
    assert main(["subscription", "remove", "1"]) == 0
    assert "1 waiting deliveries cancelled" in capsys.readouterr().out
    record(database, "bo@example.com", "profiling")
    record(database, "bo@example.com", "profiling", ConsentAction.WITHDRAWN)
    report = subscriptions.dispatch(database, cli_env)
    assert (report.made, report.sent.delivered) == (0, 0)
    assert webhook_receiver.received == []
    assert main(["subscription", "remove", "1"]) == 2, "removed already"
    assert main(["subscription", "list"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://crm.example/hook", "--events", "consent.withdrawn"], "url:"),
        (["not a url", "--events", "consent.withdrawn"], "url:"),
        (["https://crm.example/hook", "--events", "consent.deleted"], "unknown: consent.deleted"),
        (["https://crm.example/hook", "--events", " , "], "events:"),
    ],
)
def test_bad_subscriptions_are_refused_and_nothing_is_stored(
    cli_env: Settings,
    database: Database,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert main(["subscription", "add", *args]) == 2
    assert message in capsys.readouterr().err
    assert count(database, Subscription) == 0


def test_two_dispatchers_deliver_each_change_once(
    cli_env: Settings,
    database: Database,
    webhook_receiver: WebhookReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import threading

    add(webhook_receiver.url, "*", capsys)
    for n in range(6):
        record(database, f"lead{n}@example.com", "profiling")
    workers = [
        threading.Thread(target=subscriptions.dispatch, args=(database, cli_env)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    subscriptions.dispatch(database, cli_env)
    ids = [h.headers["webhook-id"] for h in webhook_receiver.received]
    assert len(ids) == 6
    assert len(set(ids)) == 6
    assert count(database, SubscriptionDelivery) == 6


def test_serve_delivers_in_the_background(
    settings: Settings,
    database: Database,
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from starlette.testclient import TestClient

    from consent_sync import subscription_jobs
    from zeroparty.app import create_app

    monkeypatch.setattr(subscription_jobs, "DISPATCH_POLL_SECONDS", 0.05)
    with database.write() as session:
        subscriptions.add_subscription(
            session, webhook_receiver.url, "consent.withdrawn", created_by="test"
        )
    record(database, ANN, "profiling")
    record(database, ANN, "profiling", ConsentAction.WITHDRAWN)
    with TestClient(create_app(settings, database, background=True)):
        [hook] = webhook_receiver.wait_for(1)
    assert orjson.loads(hook.body)["type"] == "consent.withdrawn"
