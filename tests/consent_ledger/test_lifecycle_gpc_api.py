"""``POST /api/consent`` takes a Global Privacy Control signal from the site's backend
(issue 16): ``{"email", "purpose", "action": "gpc-opt-out", "source"}`` for a
sale-or-sharing purpose, recorded once; anything else about it refused, nothing
appended."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent
from tests.factories import record
from zeroparty.db import Database

EMAIL = "cal@example.com"
SIGNAL = {
    "email": EMAIL,
    "purpose": "sale_sharing",
    "action": "gpc-opt-out",
    "source": "site-backend",
    "evidence": {"user_agent": "Firefox", "ip": "203.0.113.9"},
}


def size(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one())


def sharing(api: TestClient) -> Any:
    return api.get("/api/consent", params={"email": EMAIL, "purpose": "sale_sharing"}).json()


def test_a_gpc_signal_of_a_california_lead_is_recorded_once(
    api: TestClient, database: Database
) -> None:
    record(database, EMAIL, "profiling", jurisdiction="US-CA")
    assert sharing(api)["permitted"] is True
    response = api.post("/api/consent", json=SIGNAL)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["action"], body["method"], body["source"]) == ("gpc-opt-out", "gpc-signal", "api")
    assert body["consent"]["permitted"] is False
    assert sharing(api)["status"] == "gpc-opt-out"
    before = size(database)
    again = api.post("/api/consent", json=SIGNAL)
    assert again.status_code == 200
    assert again.json()["recorded"] is False
    assert again.json()["consent"]["status"] == "gpc-opt-out"
    assert size(database) == before


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"purpose": "newsletter"}, 422, "purpose"),
        ({"purpose": "no_such_purpose"}, 404, "purpose"),
        ({"method": "checkbox"}, 422, "method"),
        ({"action": "gpc"}, 422, "action"),
        ({"email": "not-an-address"}, 422, "email"),
        ({"source": None}, 422, "source"),
    ],
)
def test_bad_gpc_signals_are_refused_and_change_nothing(
    api: TestClient, database: Database, change: dict[str, Any], status: int, field: str
) -> None:
    record(database, EMAIL, "profiling", jurisdiction="US-CA")
    before = size(database)
    body = {k: v for k, v in {**SIGNAL, **change}.items() if v is not None}
    response = api.post("/api/consent", json=body)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]["fields"]
    assert size(database) == before
    assert sharing(api)["permitted"] is True


def test_the_schema_documents_the_signal(app_client: TestClient) -> None:
    schema = app_client.get("/openapi.json").json()
    post = schema["components"]["schemas"]["ConsentPost"]["properties"]
    assert "gpc-opt-out" in post["action"]["enum"]
    assert "gpc-signal" in post["method"]["enum"]
    assert "200" in schema["paths"]["/api/consent"]["post"]["responses"]
