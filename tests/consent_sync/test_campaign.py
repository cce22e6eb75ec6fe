"""A whole campaign, as a marketing operations engineer wires zeroparty to a sending tool
and a CRM: a form grant and its confirmation, the lead handed to the CRM, the audience
export with working per-recipient links, a one-click unsubscribe from the exported
header, the change reaching a subscribed receiver (signature checked as the receiver
checks it), an inbound unsubscribe from the sending tool, and the erasure reaching the
CRM and the subscriber. Every hop over real HTTP where the product speaks HTTP."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from consent_sync import subscriptions
from scoring.webhooks import DispatchConfig, dispatch_pending
from scoring.webhooks import verify as crm_verify
from tests.consent_sync.test_subscriptions import SECRET_RE, receiver_accepts
from tests.fixtures.webhooks import WebhookReceiver
from zeroparty.cli import main
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings
from zeroparty.webhooks import sign

EMAIL = "nora@example.com"
CRM_SECRET = "whsec_" + "Y2FtcGFpZ24tY3JtLXNlY3JldC1vZi0zMi1ieXRlcyE="
TOKEN_RE = re.compile(r'name="_rt" value="([^"]+)"')
CONFIRM_RE = re.compile(r"http://testserver(/confirm/\S+)")


def _mail_links(database: Database) -> list[str]:
    with database.read() as session:
        bodies = session.execute(text("SELECT body_text FROM mail_outbox ORDER BY created_at"))
        return [m.group(1) for body in bodies.scalars() if (m := CONFIRM_RE.search(body))]


def _submit_form(client: TestClient, settings: Settings) -> None:
    tokens = CaptureTokens(settings.secret_keys)
    page = client.get("/f/contact")
    found = TOKEN_RE.search(page.text)
    assert found is not None
    token = tokens.read_render(found.group(1))
    aged = tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))
    fields = {"email": EMAIL, "message": "hello", "company_size": "201-1000",
              "job_title": "VP Marketing"}  # fmt: skip
    answer = client.post(
        "/f/contact",
        json={"fields": fields, "consent": ["newsletter", "product_updates", "profiling"],
              "render_token": aged},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text


def _consent(api: TestClient, purpose: str) -> Any:
    return api.get("/api/consent", params={"email": EMAIL, "purpose": purpose}).json()


def _types(receiver: WebhookReceiver) -> list[str]:
    return [orjson.loads(h.body)["type"] for h in receiver.received]


def test_a_whole_campaign(
    cli_env: Settings,
    app_client: TestClient,
    api: TestClient,
    database: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = cli_env
    sending_tool, crm = WebhookReceiver(), WebhookReceiver()
    try:
        # Staff register the sending tool's endpoint for every consent change.
        assert main(["subscription", "add", sending_tool.url, "--events", "*"]) == 0
        found = SECRET_RE.search(capsys.readouterr().out)
        assert found is not None
        subscriber_secret = found.group(1)
        crm_config = DispatchConfig(crm.url, CRM_SECRET, max_attempts=3, timeout=5.0)

        # 1. A visitor fills the contact form; the newsletter waits for its confirmation.
        _submit_form(app_client, settings)
        assert _consent(api, "newsletter")["permitted"] is False
        [link] = _mail_links(database)
        assert app_client.post(link).status_code == 200
        assert _consent(api, "newsletter")["permitted"] is True

        # Behaviour makes the lead an MQL: the CRM takes the hand-off.
        events = [{"id": uuid.uuid4().hex, "email": EMAIL, "type": t,
                   "occurred_at": utcnow().isoformat()} for t in
                  ("pricing_page_viewed", "webinar_attended")]  # fmt: skip
        assert api.post("/api/events", json={"events": events}).json()["accepted"] == 2
        assert dispatch_pending(database, crm_config).delivered == 1
        handoff = orjson.loads(crm.wait_for(1)[0].body)
        lead_id = handoff["data"]["lead_id"]

        # 2. The marketer exports the newsletter audience; its links work.
        page = api.get("/api/audiences/newsletter").json()
        [member] = page["members"]
        assert member["email"] == EMAIL
        assert app_client.get(urlsplit(member["preference_url"]).path).status_code == 200

        # 3. The mail client follows the exported List-Unsubscribe header (RFC 8058).
        mail_client = TestClient(app_client.app)
        one_click = mail_client.post(
            urlsplit(member["headers"]["List-Unsubscribe"].strip("<>")).path,
            content=member["headers"]["List-Unsubscribe-Post"].encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200, one_click.text
        assert _consent(api, "newsletter")["permitted"] is False
        assert api.get("/api/audiences/newsletter").json()["members"] == []

        # 4. The change reaches the subscribed receiver, signed.
        report = subscriptions.dispatch(database, settings)
        assert report.sent.delivered == report.made
        for hook in sending_tool.received:
            assert receiver_accepts(subscriber_secret, hook, time.time())
        assert "consent.withdrawn" in _types(sending_tool)
        withdrawn = [orjson.loads(h.body)["data"] for h in sending_tool.received
                     if orjson.loads(h.body)["type"] == "consent.withdrawn"]  # fmt: skip
        assert {(w["purpose"], w["email"]) for w in withdrawn} == {("newsletter", EMAIL)}

        # 5. The sending tool reports a spam complaint: product updates end too.
        inbound_secret = "whsec_" + "aW5ib3VuZC1zZWNyZXQtb2YtdGhpcnR5LXR3byBieXRlcw=="
        assert main(["inbound", "set", "generic", "--key", inbound_secret]) == 0
        body = orjson.dumps({"events": [{"id": "c-1", "type": "complaint", "email": EMAIL}]})
        stamp = int(time.time())
        inbound = app_client.post("/api/inbound/generic", content=body, headers={
            "webhook-id": "msg_c1", "webhook-timestamp": str(stamp),
            "webhook-signature": sign(inbound_secret, "msg_c1", stamp, body)})  # fmt: skip
        assert inbound.json()["withdrawn"] == 1
        assert _consent(api, "product_updates")["permitted"] is False
        subscriptions.dispatch(database, settings)
        assert _types(sending_tool).count("consent.withdrawn") == 2

        # 6. The lead is erased: the CRM and the subscriber are told, without the address.
        assert main(["erase", EMAIL]) == 0
        later = utcnow() + timedelta(seconds=1)
        assert dispatch_pending(database, crm_config, now=later).delivered == 1
        erased_notice = crm.wait_for(2)[1]
        assert crm_verify(CRM_SECRET, erased_notice.headers, erased_notice.body, now=time.time())
        assert orjson.loads(erased_notice.body)["data"] == {
            "lead_id": lead_id,
            "handed_off_stage": handoff["data"]["stage"],
            "erased": True,
        }
        subscriptions.dispatch(database, settings)
        erased = [orjson.loads(h.body)["data"] for h in sending_tool.received
                  if orjson.loads(h.body)["type"] == "consent.erased"]  # fmt: skip
        assert erased
        assert {e["email_sha256"] for e in erased} == {hashlib.sha256(EMAIL.encode()).hexdigest()}
        assert all(e["email"] is None for e in erased)
        ids = [h.headers["webhook-id"] for h in sending_tool.received]
        assert len(ids) == len(set(ids)), "each change delivered once"
    finally:
        sending_tool.close()
        crm.close()
