"""Downloading all my data (GDPR Art. 15/20) and my consent receipts."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from consent_ledger.proofs.checkpoints import parse_verifier_key
from consent_ledger.proofs.receipts import verify_receipt
from tests.factories import notice_hash
from tests.preference_center.conftest import EMAIL, issue, open_session
from zeroparty import personal_data
from zeroparty.db import Database
from zeroparty.settings import Settings


def test_export_holds_everything(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    def answers(_session: Session, subject_id: str) -> dict[str, Any]:
        seen.append(subject_id)
        return {"company": "Northwind Fan Club", "role": "analyst"}

    # The export asks the providers the app's ledger was built with (not a global registry).
    ledger = app_client.app.state.ledger  # type: ignore[attr-defined]
    capture = personal_data.PersonalData("capture", answers, lambda _s, _i: None)
    providers = tuple(capture if p.name == "capture" else p for p in ledger._personal_data)
    monkeypatch.setattr(ledger, "_personal_data", providers)
    csrf = open_session(app_client, issue(settings, database, lead))
    app_client.post(
        "/p/",
        data={"csrf": csrf, "action": "unsubscribe_all"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    response = app_client.get("/p/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == 'attachment; filename="my-data.json"'
    data = response.json()
    assert data["format"] == "zeroparty.subject-export/1"
    assert data["subject"]["id"] == lead
    assert data["profile"]["email"] == EMAIL
    assert data["answers"] == {"company": "Northwind Fan Club", "role": "analyst"}
    assert seen == [lead]
    assert data["scores"] is None
    ledger = data["ledger"]
    assert [(e["purpose"], e["action"]) for e in ledger] == [
        ("newsletter", "granted"),
        ("profiling", "granted"),
        ("newsletter", "withdrawn"),
        ("profiling", "withdrawn"),
    ]
    grant = ledger[0]
    assert grant["notice_sha256"] == notice_hash(database, "newsletter")
    assert grant["notice"]["text"].startswith("Yes, send me the Northwind newsletter")
    assert grant["evidence"] == {"ip": "198.51.100.0/24", "user_agent": "pytest"}
    assert grant["hash"]
    assert {s["purpose"]: s["permitted"] for s in data["consent"]} == {
        "newsletter": False,
        "profiling": False,
    }
    assert {s["topic"]: s["subscribed"] for s in data["subscriptions"]} == {
        "monthly_digest": False,
        "webinars": False,
    }
    assert len(data["subscription_history"]) == 2


def test_receipts_are_signed_and_verify_offline(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    open_session(app_client, issue(settings, database, lead))
    response = app_client.get("/p/receipts")
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["piiPrincipalId"] == lead
    key = app_client.get("/ledger/key").text.splitlines()[0]
    check = verify_receipt(receipt, [parse_verifier_key(key)])
    assert check.subject_id == lead
    assert set(check.purposes) == {"newsletter", "profiling"}
    for record in receipt["proof"]["records"]:
        assert "evidence" not in record["entry"]


@pytest.mark.parametrize("path", ["/p/export", "/p/receipts"])
def test_downloads_need_a_session(app_client: TestClient, path: str) -> None:
    response = app_client.get(path)
    assert response.status_code == 401
    assert "Your session has ended" in response.text
