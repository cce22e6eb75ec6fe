"""Global Privacy Control: ``Sec-GPC: 1`` is recorded as an opt-out of sale/sharing,
wins over a box ticked in the same submission, and the visitor is told."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent
from tests.capture.conftest import find_all
from zeroparty.db import Database

PARTNER_FORM = """
[forms.partners]
title = "Partner offers"
consent = ["newsletter", "sale_sharing"]
[[forms.partners.fields]]
name = "email"
type = "email"
"""
GPC = {"sec-gpc": "1"}


def _entries(database: Database) -> list[tuple[str, str, str]]:
    with database.read() as session:
        rows = session.execute(select(ConsentEvent).order_by(ConsentEvent.seq)).scalars()
        return [(e.purpose_key, e.action, e.method) for e in rows]


def test_gpc_is_recorded_and_shown(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    page = app_client.get("/f/contact", headers=GPC)
    assert "Global Privacy Control signal" in page.text
    response = app_client.post(
        "/f/contact",
        data={"email": "gus@example.com", "message": "x", "_rt": render("contact")},
        headers=GPC,
    )
    assert response.status_code == 200
    assert "Global Privacy Control signal: it counts as your opt-out" in response.text
    assert "Sharing with partners" in response.text
    assert _entries(database) == [("sale_sharing", "gpc-opt-out", "gpc-signal")]


def test_gpc_wins_over_a_ticked_sharing_box(
    app_client: TestClient,
    render: Callable[..., str],
    database: Database,
    load_toml: Callable[..., list[str]],
) -> None:
    load_toml(PARTNER_FORM)
    without = app_client.get("/f/partners")
    assert [b["value"] for b in find_all(without.text, "input", name="consent")] == [
        "newsletter",
        "sale_sharing",
    ]
    page = app_client.get("/f/partners", headers=GPC)
    assert [b["value"] for b in find_all(page.text, "input", name="consent")] == ["newsletter"]
    response = app_client.post(
        "/f/partners",
        json={"fields": {"email": "hal@example.com"}, "consent": ["sale_sharing"],
              "render_token": render("partners")},
        headers=GPC,
    )  # fmt: skip
    assert response.status_code == 201
    assert response.json()["consent"] == []
    assert response.json()["gpc_opt_out"] == ["sale_sharing"]
    assert _entries(database) == [("sale_sharing", "gpc-opt-out", "gpc-signal")]


def test_gpc_is_not_recorded_twice(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    for _ in range(2):
        app_client.post(
            "/f/newsletter",
            data={"email": "ida@example.com", "_rt": render("newsletter")},
            headers=GPC,
        )
    assert _entries(database) == [("sale_sharing", "gpc-opt-out", "gpc-signal")]


def test_without_gpc_nothing_is_recorded_for_sharing(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    page = app_client.get("/f/contact")
    assert "Global Privacy Control" not in page.text
    app_client.post("/f/newsletter", data={"email": "jo@example.com", "_rt": render("newsletter")})
    assert _entries(database) == []
