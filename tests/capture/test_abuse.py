"""Retries and abuse: idempotent submissions, rate limits held in the database."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx2
from sqlalchemy import select
from starlette.testclient import TestClient

from capture import ratelimit
from capture.jobs import background_jobs
from capture.models import RateCounter
from tests.fixtures.browser import LiveServer
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.mail import Mail, OutboxMail, queue_mail
from zeroparty.settings import Settings

RATE_LIMITED_FORM = """
[forms.limited]
title = "Limited"
rate_limit = { count = 2, window_seconds = 3600 }
[[forms.limited.fields]]
name = "email"
type = "email"
"""


def test_double_submit_creates_one_lead_and_one_set_of_entries(
    app_client: TestClient, render: Callable[..., str], counts: Callable[[], dict[str, int]]
) -> None:
    data = {"email": "vic@example.com", "message": "hi", "consent": ["profiling", "newsletter"],
            "_rt": render("contact")}  # fmt: skip
    first = app_client.post("/f/contact", data=data, follow_redirects=False)
    after_first = counts()
    second = app_client.post("/f/contact", data=data, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert app_client.get(second.headers["location"]).status_code == 200
    assert counts() == after_first
    assert after_first["subjects"] == 1
    assert after_first["consent_events"] == 2
    assert after_first["mail_outbox"] == 1


def test_json_retry_is_answered_as_before(
    app_client: TestClient, render: Callable[..., str], counts: Callable[[], dict[str, int]]
) -> None:
    body = {"fields": {"email": "wes@example.com"}, "consent": ["newsletter"],
            "render_token": render("newsletter")}  # fmt: skip
    first = app_client.post("/f/newsletter", json=body)
    after_first = counts()
    retry = app_client.post("/f/newsletter", json=body)
    assert first.status_code == 201
    assert retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["submission"] == first.json()["submission"]
    assert counts() == after_first


def test_idempotency_key_header_with_a_different_body_is_refused(
    app_client: TestClient, render: Callable[..., str], counts: Callable[[], dict[str, int]]
) -> None:
    headers = {"idempotency-key": "order-42"}
    body = {"fields": {"email": "xia@example.com"}, "render_token": render("newsletter")}
    assert app_client.post("/f/newsletter", json=body, headers=headers).status_code == 201
    before = counts()
    other = {"fields": {"email": "yan@example.com"}, "render_token": render("newsletter")}
    response = app_client.post("/f/newsletter", json=other, headers=headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert counts() == before
    # A fresh key is a fresh submission.
    fresh = app_client.post("/f/newsletter", json=other, headers={"idempotency-key": "order-43"})
    assert fresh.status_code == 201


def test_same_token_with_a_changed_form_is_refused_in_html(
    app_client: TestClient, render: Callable[..., str], counts: Callable[[], dict[str, int]]
) -> None:
    token = render("newsletter")
    app_client.post("/f/newsletter", data={"email": "zed@example.com", "_rt": token})
    before = counts()
    response = app_client.post("/f/newsletter", data={"email": "zoe@example.com", "_rt": token})
    assert response.status_code == 409
    assert "already sent with different answers" in response.text
    assert counts() == before


def test_concurrent_retries_store_once(
    settings: Settings,
    database: Database,
    serve: Callable[..., LiveServer],
    render: Callable[..., str],
    counts: Callable[[], dict[str, int]],
) -> None:
    server = serve(create_app(settings, database))
    body = {"fields": {"email": "amy@example.com"}, "consent": ["newsletter"],
            "render_token": render("newsletter")}  # fmt: skip

    def post(_: int) -> int:
        return httpx2.post(f"{server.url}/f/newsletter", json=body, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(post, range(6)))
    assert statuses.count(201) == 1
    assert statuses.count(200) == 5
    after = counts()
    assert after["capture_submissions"] == 1
    assert after["consent_events"] == 1
    assert after["mail_outbox"] == 1


def test_rate_limit_holds_across_app_instances(
    settings: Settings,
    database_url: str,
    render: Callable[..., str],
    load_toml: Callable[..., list[str]],
    counts: Callable[[], dict[str, int]],
) -> None:
    load_toml(RATE_LIMITED_FORM)
    # Two apps with their own engines: what two worker processes would be.
    first = Database.from_url(database_url)
    second = Database.from_url(database_url)
    try:
        with (
            TestClient(create_app(settings, first)) as a,
            TestClient(create_app(settings, second)) as b,
        ):
            for client, email in ((a, "r1@example.com"), (b, "r2@example.com")):
                response = client.post(
                    "/f/limited",
                    json={"fields": {"email": email}, "render_token": render("limited")},
                )
                assert response.status_code == 201
            before = counts()
            refused = a.post(
                "/f/limited",
                json={"fields": {"email": "r3@example.com"}, "render_token": render("limited")},
            )
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "rate_limited"
            html = b.post("/f/limited", data={"email": "r4@example.com", "_rt": render("limited")})
            assert html.status_code == 429
            assert "too many submissions" in html.text
            assert counts() == before
    finally:
        first.dispose()
        second.dispose()


def test_old_rate_windows_are_forgotten_and_mail_goes_out_in_the_background(
    settings: Settings, database: Database
) -> None:
    with database.write() as session:
        ratelimit.hit(session, "a" * 64, 60, now=time.time() - 10 * 86_400)
        ratelimit.hit(session, "b" * 64, 60)
        # Queued, say, by a request whose own delivery failed: the job sends it.
        queue_mail(session, Mail(to="bg@example.com", subject="Hello", text="Hi"))
    for job in background_jobs(settings, database):
        job._run()  # what the job's thread runs every period
    with database.read() as session:
        buckets = session.execute(select(RateCounter.bucket)).scalars().all()
        unsent = session.execute(select(OutboxMail).where(OutboxMail.sent_at.is_(None))).all()
    assert "a" * 64 not in buckets
    assert "b" * 64 in buckets
    assert unsent == []
    assert len(list(settings.outbox_dir.glob("*.eml"))) == 1
