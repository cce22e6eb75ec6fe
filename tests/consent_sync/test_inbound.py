"""POST /api/inbound/{provider}: a sending tool's unsubscribe, complaint or hard bounce
becomes a withdrawal naming the provider's event; bad signatures, stale timestamps and
bad input change nothing and are logged; unknown providers 404; replays are harmless.
Mailgun and SendGrid payloads are the shapes their docs publish; SendGrid's published
test vector checks the ECDSA verification itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod
from consent_sync import inbound
from tests.factories import record
from zeroparty.cli import main
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.webhooks import generate_secret, sign

ANN = "ann@example.com"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"  # a signing key's shape (made up)

# SendGrid's own published test vector (sendgrid-nodejs eventwebhook tests).
SG_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo"
    "7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA=="
)
SG_SIGNATURE = (
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlx"
    "FDWYNH2j/0="
)
SG_TIMESTAMP = "1588788367"
SG_PAYLOAD = b'{"category":"example_payload","event":"test_event","message_id":"message_id"}'


def subscribe(database: Database, email: str = ANN) -> None:
    """A live newsletter subscription (granted, then confirmed) and product updates."""
    record(database, email, "newsletter")
    record(
        database, email, "newsletter", ConsentAction.CONFIRMED, method=ConsentMethod.DOUBLE_OPT_IN
    )
    record(database, email, "product_updates")
    record(database, email, "product_updates", ConsentAction.CONFIRMED,
           method=ConsentMethod.DOUBLE_OPT_IN)  # fmt: skip


def entries(database: Database) -> list[Any]:
    with database.read() as session:
        return list(
            session.execute(
                text(
                    "SELECT e.seq, e.purpose_key, e.action, e.source, e.source_ref, v.body "
                    "FROM consent_events e LEFT JOIN consent_evidence v ON v.seq = e.seq "
                    "ORDER BY e.seq"
                )
            )
        )


def set_up(database: Database, provider: str, key: str | None = None) -> str:
    with database.write() as session:
        return inbound.set_source(session, provider, key)


def generic_post(client: TestClient, secret: str, document: Any, *, msg_id: str = "msg_1",
                 at: float | None = None) -> Any:  # fmt: skip
    body = orjson.dumps(document)
    stamp = int(time.time() if at is None else at)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, msg_id, stamp, body),
    }
    return client.post("/api/inbound/generic", content=body, headers=headers)


def test_generic_unsubscribe_withdraws_naming_the_event_and_a_replay_changes_nothing(
    app_client: TestClient, database: Database
) -> None:
    secret = set_up(database, "generic")
    subscribe(database)
    document = {"events": [{"id": "evt_42", "type": "unsubscribe", "email": "Ann@Example.com",
                            "purpose": "newsletter"}]}  # fmt: skip
    answer = generic_post(app_client, secret, document)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"withdrawn": 1, "unchanged": 0, "unknown_leads": 0, "ignored": 0}
    last = entries(database)[-1]
    assert (last.purpose_key, last.action, last.source, last.source_ref) == (
        "newsletter", "withdrawn", "api", "inbound:generic"
    )  # fmt: skip
    evidence = orjson.loads(last.body)
    assert (evidence["provider"], evidence["event"], evidence["event_id"]) == (
        "generic", "unsubscribe", "evt_42"
    )  # fmt: skip
    before = len(entries(database))
    again = generic_post(app_client, secret, document, msg_id="msg_2")
    assert again.json()["unchanged"] == 1
    assert len(entries(database)) == before, "a replay changes nothing"


def test_a_complaint_without_a_purpose_withdraws_every_communication_purpose(
    app_client: TestClient, database: Database
) -> None:
    secret = set_up(database, "generic")
    subscribe(database)
    record(database, ANN, "profiling")
    document = {
        "events": [
            {"id": "c1", "type": "complaint", "email": ANN},
            {"id": "c2", "type": "hard_bounce", "email": "nobody@example.com"},
        ]
    }
    answer = generic_post(app_client, secret, document)
    assert answer.json() == {"withdrawn": 1, "unchanged": 0, "unknown_leads": 1, "ignored": 0}
    withdrawn = [(e.purpose_key, e.action) for e in entries(database)[-2:]]
    assert sorted(withdrawn) == [("newsletter", "withdrawn"), ("product_updates", "withdrawn")]


def test_an_event_older_than_a_regrant_changes_nothing(
    app_client: TestClient, database: Database
) -> None:
    secret = set_up(database, "generic")
    subscribe(database)
    old = {"id": "old", "type": "unsubscribe", "email": ANN, "purpose": "newsletter"}
    document = {"events": [{**old, "occurred_at": "2020-01-01T00:00:00Z"}]}
    answer = generic_post(app_client, secret, document)
    assert answer.json()["unchanged"] == 1


@pytest.mark.parametrize(
    "tamper",
    ["body", "secret", "stale", "missing"],
)
def test_a_bad_signature_changes_nothing_and_is_logged(
    app_client: TestClient, database: Database, caplog: pytest.LogCaptureFixture, tamper: str
) -> None:
    secret = set_up(database, "generic")
    subscribe(database)
    before = entries(database)
    document = {"events": [{"id": "e", "type": "unsubscribe", "email": ANN}]}
    body = orjson.dumps(document)
    stamp = int(time.time()) - (3600 if tamper == "stale" else 0)
    key = generate_secret() if tamper == "secret" else secret
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(key, "msg_1", stamp, body),
    }
    if tamper == "missing":
        del headers["webhook-signature"]
    sent = body + b" " if tamper == "body" else body
    with caplog.at_level(logging.WARNING, logger="zeroparty.inbound"):
        answer = app_client.post("/api/inbound/generic", content=sent, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "bad_signature"
    assert entries(database) == before
    assert "inbound generic from" in caplog.text
    assert "refused" in caplog.text


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"events": []}, "events"),
        ({"events": [{"id": "e", "type": "opened", "email": ANN}]}, "events[0].type"),
        ({"events": [{"id": "e", "type": "unsubscribe"}]}, "events[0].email"),
        ({"events": [{"type": "unsubscribe", "email": ANN}]}, "events[0].id"),
        ({"events": [{"id": "e", "type": "unsubscribe", "email": ANN, "purpose": "nope"}]},
         "purpose"),
        ({"events": [{"id": "e", "type": "unsubscribe", "email": ANN, "occurred_at": "soon"}]},
         "events[0].occurred_at"),
        ([1, 2], "events"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_changes_nothing(
    app_client: TestClient, database: Database, document: Any, field: str
) -> None:
    secret = set_up(database, "generic")
    subscribe(database)
    before = entries(database)
    answer = generic_post(app_client, secret, document)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]["fields"]
    assert entries(database) == before


def test_unknown_or_unconfigured_providers_are_404_json(
    app_client: TestClient, database: Database
) -> None:
    for provider in ("postmark-ish", "mailgun"):
        answer = app_client.post(f"/api/inbound/{provider}", content=b"{}")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


# -- Mailgun ----------------------------------------------------------------------------


def mailgun_body(event_data: dict[str, Any], *, key: str = MAILGUN_KEY, age: int = 0) -> bytes:
    """A webhook as Mailgun's docs show it: ``signature`` beside ``event-data``."""
    timestamp = str(int(time.time()) - age)
    token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    digest = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return orjson.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": digest},
            "event-data": event_data,
        }
    )


def mailgun_event(event: str, **more: Any) -> dict[str, Any]:
    return {
        "event": event,
        "id": "-Agny091SquKnsrW2NEKUA",
        "timestamp": time.time(),
        "recipient": ANN,
        "recipient-domain": "example.com",
        "tags": ["newsletter-2026-12"],
        "user-variables": {"purpose": "newsletter"},
        "message": {"headers": {"message-id": "20261204.1@mg.example.com"}},
        **more,
    }


def test_mailgun_unsubscribe_and_permanent_failure_are_withdrawals(
    app_client: TestClient, database: Database
) -> None:
    set_up(database, "mailgun", MAILGUN_KEY)
    subscribe(database)
    temporary = mailgun_event("failed", severity="temporary", reason="generic")
    answer = app_client.post("/api/inbound/mailgun", content=mailgun_body(temporary))
    assert answer.json() == {"withdrawn": 0, "unchanged": 0, "unknown_leads": 0, "ignored": 0}
    answer = app_client.post(
        "/api/inbound/mailgun", content=mailgun_body(mailgun_event("unsubscribed"))
    )
    assert answer.json()["withdrawn"] == 1
    last = entries(database)[-1]
    assert (last.purpose_key, last.source_ref) == ("newsletter", "inbound:mailgun")
    assert orjson.loads(last.body)["event"] == "unsubscribed"
    bounce = mailgun_event("failed", severity="permanent", **{"user-variables": {}})
    answer = app_client.post("/api/inbound/mailgun", content=mailgun_body(bounce))
    assert answer.json()["withdrawn"] == 1
    last = entries(database)[-1]
    assert (last.purpose_key, orjson.loads(last.body)["event"]) == (
        "product_updates", "failed:permanent"
    )  # fmt: skip


@pytest.mark.parametrize("bad", ["key", "stale"])
def test_mailgun_bad_signatures_change_nothing(
    app_client: TestClient, database: Database, bad: str
) -> None:
    set_up(database, "mailgun", MAILGUN_KEY)
    subscribe(database)
    before = entries(database)
    body = mailgun_body(
        mailgun_event("unsubscribed"),
        key="key-other" if bad == "key" else MAILGUN_KEY,
        age=3600 if bad == "stale" else 0,
    )
    answer = app_client.post("/api/inbound/mailgun", content=body)
    assert answer.status_code == 401
    assert entries(database) == before


# -- SendGrid ---------------------------------------------------------------------------


def test_sendgrid_published_test_vector_verifies() -> None:
    headers = {
        "x-twilio-email-event-webhook-signature": SG_SIGNATURE,
        "x-twilio-email-event-webhook-timestamp": SG_TIMESTAMP,
    }
    at = float(SG_TIMESTAMP)
    assert inbound.sendgrid_signed(SG_PUBLIC_KEY, headers, SG_PAYLOAD, at)
    assert not inbound.sendgrid_signed(SG_PUBLIC_KEY, headers, SG_PAYLOAD + b"\r\n", at)
    assert not inbound.sendgrid_signed(SG_PUBLIC_KEY, headers, SG_PAYLOAD, at + 3600)


def test_sendgrid_events_signed_with_ecdsa_become_withdrawals(
    app_client: TestClient, database: Database
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    set_up(database, "sendgrid", base64.b64encode(public).decode())
    subscribe(database)
    subscribe(database, "bo@example.com")
    now = int(time.time())
    events = [
        {"email": ANN, "timestamp": now, "event": "unsubscribe", "sg_event_id": "sg1",
         "sg_message_id": "m1", "purpose": "newsletter"},
        {"email": "bo@example.com", "timestamp": now, "event": "spamreport", "sg_event_id": "sg2"},
        {"email": ANN, "timestamp": now, "event": "bounce", "type": "blocked",
         "sg_event_id": "sg3"},
        {"email": ANN, "timestamp": now, "event": "delivered", "sg_event_id": "sg4"},
    ]  # fmt: skip
    body = orjson.dumps(events)
    stamp = str(now)
    signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }
    answer = app_client.post("/api/inbound/sendgrid", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"withdrawn": 2, "unchanged": 0, "unknown_leads": 0, "ignored": 0}
    tail = [
        (e.purpose_key, e.source_ref, orjson.loads(e.body)["event"]) for e in entries(database)[-3:]
    ]
    assert sorted(tail) == [
        ("newsletter", "inbound:sendgrid", "spamreport"),
        ("newsletter", "inbound:sendgrid", "unsubscribe"),
        ("product_updates", "inbound:sendgrid", "spamreport"),
    ]
    before = entries(database)
    tampered = app_client.post("/api/inbound/sendgrid", content=body.replace(b"sg1", b"sg9"),
                               headers=headers)  # fmt: skip
    assert tampered.status_code == 401
    assert entries(database) == before


@pytest.mark.parametrize(
    ("provider", "key", "message"),
    [
        ("postmark", "x", "provider:"),
        ("generic", "not-a-secret", "key:"),
        ("sendgrid", "bm90IGEga2V5", "key:"),
        ("mailgun", None, "key:"),
    ],
)
def test_inbound_set_refuses_what_cannot_check_a_signature(
    cli_env: Settings,
    database: Database,
    capsys: pytest.CaptureFixture[str],
    provider: str,
    key: str | None,
    message: str,
) -> None:
    args = ["inbound", "set", provider] + (["--key", key] if key else [])
    assert main(args) == 2
    assert message in capsys.readouterr().err
    with database.read() as session:
        assert (
            session.execute(text("SELECT count(*) FROM consent_sync_inbound_sources")).scalar() == 0
        )


def test_inbound_set_generic_prints_its_secret_once(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inbound", "set", "generic"]) == 0
    out = capsys.readouterr().out
    assert "/api/inbound/generic is set up" in out
    assert "whsec_" in out
