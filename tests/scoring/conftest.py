"""Helpers for scoring's tests: leads made through the real form and API."""

from __future__ import annotations

import base64
import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from consent_ledger.actions import ConsentAction
from consent_ledger.entries import format_timestamp
from scoring.webhooks import DispatchConfig
from tests import factories
from tests.fixtures.webhooks import WebhookReceiver, webhook_receiver
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings
from zeroparty.site import load_site

TOKEN_RE = re.compile(r'name="_rt" value="([^"]+)"')
HELD_LINK_RE = re.compile(r"http://testserver(/confirm/held/\S+)")
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"zeroparty-test-webhook-secret-32b").decode()
SCORING_TABLES = (
    "scoring_leads",
    "scoring_attributes",
    "scoring_events",
    "scoring_points",
    "scoring_stage_changes",
    "scoring_webhooks",
    "scoring_dropped_events",
)
__all__ = ["webhook_receiver"]  # the fixture, for this folder
DEMO_SITE = Path(__file__).resolve().parents[2] / "site.toml"


def ts(moment: datetime) -> str:
    return format_timestamp(moment)


def _held_links(database: Database) -> list[str]:
    with database.read() as session:
        bodies = session.execute(text("SELECT body_text FROM mail_outbox ORDER BY created_at"))
        return [m.group(1) for body in bodies.scalars() if (m := HELD_LINK_RE.search(body))]


@pytest.fixture
def submit(
    app_client: TestClient, settings: Settings, database: Database
) -> Callable[..., dict[str, Any]]:
    """``submit(email, consent=[...], **fields)``: the contact form, sent as JSON by the
    address's owner: when the address is already a lead's, the submission is held until
    the link mailed to it is followed, so the helper follows it (as the owner would)."""
    tokens = CaptureTokens(settings.secret_keys)

    def send(
        email: str,
        consent: tuple[str, ...] = ("profiling",),
        headers: dict[str, str] | None = None,
        **fields: str,
    ) -> Any:
        page = app_client.get("/f/contact")
        match = TOKEN_RE.search(page.text)
        assert match is not None
        token = tokens.read_render(match.group(1))
        aged = tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))
        response = app_client.post(
            "/f/contact",
            json={
                "fields": {"email": email, "message": "hello", **fields},
                "consent": list(consent),
                "render_token": aged,
            },
            headers=headers or {},
        )
        assert response.status_code == 201, response.text
        for link in _held_links(database):
            if link not in links_followed:
                confirmed = app_client.post(link)
                assert confirmed.status_code == 200, confirmed.text
                links_followed.add(link)
        return response.json()

    links_followed: set[str] = set()
    return send


@pytest.fixture
def events(api: TestClient) -> Callable[..., dict[str, Any]]:
    """``events(email, "pricing_page_viewed", ..., at=datetime)``: one batch, accepted."""

    def send(email: str, *types: str, at: datetime | None = None) -> Any:
        moment = at or utcnow()
        batch = [
            {"id": uuid.uuid4().hex, "email": email, "type": t, "occurred_at": ts(moment)}
            for t in types
        ]
        response = api.post("/api/events", json={"events": batch})
        assert response.status_code in (200, 201), response.text
        return response.json()

    return send


def grant(database: Database, email: str, purpose: str = "profiling", **kw: Any) -> int:
    return factories.record(database, email, purpose, **kw).seq


def withdraw(database: Database, email: str, purpose: str = "profiling", **kw: Any) -> int:
    return factories.record(database, email, purpose, ConsentAction.WITHDRAWN, **kw).seq


def counts(database: Database) -> dict[str, int]:
    with database.read() as session:
        return {
            table: int(session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in SCORING_TABLES
        }


def rows(database: Database, sql: str, **params: Any) -> list[Any]:
    with database.read() as session:
        return list(session.execute(text(sql), params))


@pytest.fixture
def dispatch_config(webhook_receiver: WebhookReceiver) -> DispatchConfig:
    return DispatchConfig(webhook_receiver.url, WEBHOOK_SECRET, max_attempts=3, timeout=5.0)


@pytest.fixture
def load_model(database: Database, tmp_path: Path) -> Iterator[Callable[..., list[str]]]:
    """``load_model(old, new)``: load the demo site with ``old`` replaced by ``new``."""
    demo = DEMO_SITE.read_text(encoding="utf-8")

    def load(*replacements: tuple[str, str]) -> list[str]:
        text_ = demo
        for old, new in replacements:
            assert old in text_, old
            text_ = text_.replace(old, new)
        path = tmp_path / "site.toml"
        path.write_text(text_, encoding="utf-8")
        return load_site(database, path).changes

    return load


def days_ago(days: float) -> datetime:
    return utcnow() - timedelta(days=days)
