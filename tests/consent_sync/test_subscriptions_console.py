"""The console's subscriptions page: admins see every endpoint (never its secret) and the
delivery log (one endpoint's, dead letters only); other roles are refused, people
without a session are sent to log in, a bad filter is refused."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction
from consent_sync import subscriptions
from tests.console.conftest import log_in, make_staff
from tests.factories import record
from tests.fixtures.webhooks import WebhookReceiver, webhook_receiver
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings

__all__ = ["webhook_receiver"]
DELIVERY = re.compile(r'<tr data-id="(msg_[\d_]+)">.*?<td class="state">([^<]*)</td>', re.S)


@pytest.fixture
def client(settings: Settings, database: Database) -> TestClient:
    return TestClient(create_app(settings, database))


def _deliveries(database: Database, settings: Settings, receiver: WebhookReceiver) -> str:
    with database.write() as session:
        made = subscriptions.add_subscription(
            session, receiver.url, "consent.withdrawn", created_by="admin@staff.example"
        )
        subscriptions.add_subscription(
            session, "http://127.0.0.1:9/hook", "*", created_by="cli:ops", description="CRM"
        )
    record(database, "ann@example.com", "profiling")
    record(database, "ann@example.com", "profiling", ConsentAction.WITHDRAWN)
    record(database, "bo@example.com", "profiling")
    record(database, "bo@example.com", "profiling", ConsentAction.WITHDRAWN)
    receiver.answer_with([500])
    subscriptions.dispatch(database, settings, now=utcnow() + timedelta(seconds=1))
    return made.secret


def test_an_admin_sees_the_subscriptions_and_the_delivery_log(
    client: TestClient, database: Database, settings: Settings, webhook_receiver: WebhookReceiver
) -> None:
    secret = _deliveries(database, settings, webhook_receiver)
    make_staff(database, "admin@staff.example", "admin")
    with client:
        log_in(client, "admin@staff.example")
        page = client.get("/console/subscriptions")
        assert page.status_code == 200, page.text
        assert secret not in page.text
        subscribed = re.findall(r'<tr data-id="(\d+)">', page.text)
        assert subscribed == ["1", "2"]
        assert webhook_receiver.url in page.text
        states = dict(DELIVERY.findall(page.text))
        mine = sorted(s.split()[0] for i, s in states.items() if i.startswith("msg_1_"))
        assert mine == ["delivered", "waiting,"], states
        one = client.get("/console/subscriptions?subscription=1").text
        assert {i for i, _ in DELIVERY.findall(one)} == {
            i for i in states if i.startswith("msg_1_")
        }
        dead = client.get("/console/subscriptions?dead=1").text
        assert "No deliveries." in dead
        refused = client.get("/console/subscriptions?subscription=x1")
        assert refused.status_code == 422


def test_other_roles_are_refused_and_strangers_sent_to_log_in(
    client: TestClient, database: Database
) -> None:
    make_staff(database, "mk@staff.example", "marketer")
    with client:
        anonymous = client.get("/console/subscriptions", follow_redirects=False)
        assert anonymous.status_code == 303
        assert anonymous.headers["location"].startswith("/console/login")
        log_in(client, "mk@staff.example")
        assert client.get("/console/subscriptions").status_code == 403
