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


TOKEN_RE = re.compile(r'name="token" value="([^"]+)"')
SECRET_SHOWN = re.compile(r'<code id="secret">(whsec_[^<]+)</code>')


def _token(client: TestClient) -> str:
    found = TOKEN_RE.search(client.get("/console/subscriptions").text)
    assert found is not None
    return found.group(1)


def _count(database: Database) -> int:
    with database.read() as session:
        return len(subscriptions.subscriptions(session.connection(), include_removed=True))


def test_an_admin_adds_and_removes_an_endpoint_in_the_console(
    client: TestClient, database: Database
) -> None:
    make_staff(database, "admin@staff.example", "admin")
    with client:
        log_in(client, "admin@staff.example")
        form = {
            "token": _token(client),
            "url": "https://esp.example/hooks",
            "events": ["consent.withdrawn", "consent.erased"],
            "description": "ESP",
        }
        added = client.post(
            "/console/subscriptions", data=form, headers={"Origin": "http://testserver"}
        )
        assert added.status_code == 201, added.text
        secret = SECRET_SHOWN.search(added.text)
        assert secret is not None
        page = client.get("/console/subscriptions").text
        assert secret.group(1) not in page, "the secret is shown once"
        assert "consent.withdrawn consent.erased" in page
        removed = client.post(
            "/console/subscriptions/1/remove",
            data={"token": form["token"]},
            follow_redirects=False,
        )
        assert removed.status_code == 303
        assert "removed" in client.get("/console/subscriptions").text
        log = client.get("/console/audit").text
        assert "subscription.add" in log
        assert "subscription.remove" in log


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"url": "ftp://esp.example/x"}, 422),
        ({"events": []}, 422),
        ({"events": ["consent.nope"]}, 422),
        ({"token": "forged"}, 403),
        ({"origin": "https://evil.example"}, 403),
    ],
)
def test_bad_or_foreign_posts_change_nothing(
    client: TestClient, database: Database, change: dict[str, object], status: int
) -> None:
    make_staff(database, "admin@staff.example", "admin")
    with client:
        log_in(client, "admin@staff.example")
        form: dict[str, object] = {
            "token": _token(client),
            "url": "https://esp.example/hooks",
            "events": ["consent.withdrawn"],
        }
        origin = str(change.pop("origin", "http://testserver"))
        form.update(change)
        answer = client.post("/console/subscriptions", data=form, headers={"Origin": origin})
        assert answer.status_code == status, answer.text
    assert _count(database) == 0


def test_a_marketer_cannot_add_an_endpoint(client: TestClient, database: Database) -> None:
    make_staff(database, "mk@staff.example", "marketer")
    with client:
        log_in(client, "mk@staff.example")
        answer = client.post(
            "/console/subscriptions",
            data={"url": "https://esp.example/hooks", "events": "consent.withdrawn"},
        )
        assert answer.status_code == 403
    assert _count(database) == 0
