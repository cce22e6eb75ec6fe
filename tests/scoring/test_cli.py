"""``zeroparty score [--explain EMAIL]`` and ``zeroparty dispatch``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.webhooks import WebhookReceiver
from tests.scoring.conftest import WEBHOOK_SECRET, counts, grant, rows
from zeroparty.cli import main
from zeroparty.db import Database

FIT = {"company_size": "1001+", "job_title": "Founder"}


def test_explain_prints_every_point_with_its_ledger_entry(
    cli_env: object,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    submit("ex@example.com", **FIT)
    events("ex@example.com", "pricing_page_viewed", "webinar_attended")
    capsys.readouterr()
    assert main(["score", "--explain", "EX@example.com"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ex@example.com: 70 points, stage MQL")
    for rule in ("company-size", "decision-maker", "pricing-page", "webinar"):
        assert rule in out
    assert out.count("under ledger entry") == 4
    assert "stage Lead → MQL by system:threshold" in out


def test_explain_a_lead_without_consent_and_an_unknown_one(
    cli_env: object, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    grant(database, "nl@example.com", "newsletter")
    assert main(["score", "--explain", "nl@example.com"]) == 0
    assert "no consent for profiling recorded" in capsys.readouterr().out
    assert main(["score", "--explain", "who@example.com"]) == 2


def test_score_rescores_after_a_model_change_with_progress(
    cli_env: object,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    load_model: Callable[..., list[str]],
    database: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(3):
        submit(f"r{n}@example.com", **FIT)
    events("r0@example.com", "webinar_attended")
    grant(database, "bare@example.com")
    load_model(("points = 15\nwindow_days = 180", "points = 40\nwindow_days = 180"))
    capsys.readouterr()
    assert main(["score"]) == 0
    captured = capsys.readouterr()
    assert "rescored 4/4 leads" in captured.err
    assert "model version 2: 4 permissioned leads rescored" in captured.out
    assert "1 moved forward" in captured.out
    scores = {r.score for r in rows(database, "SELECT score FROM scoring_leads")}
    assert scores == {35, 75, 0}
    assert counts(database)["scoring_webhooks"] == 1


def test_dispatch_delivers_and_lists_dead_letters(
    cli_env: object,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    webhook_receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    submit("d@example.com", **FIT)
    events("d@example.com", "pricing_page_viewed", "webinar_attended")
    assert main(["dispatch"]) == 2, "no URL configured: nothing sent, said so"
    monkeypatch.setenv("ZEROPARTY_CRM_WEBHOOK_URL", webhook_receiver.url)
    monkeypatch.setenv("ZEROPARTY_CRM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("ZEROPARTY_WEBHOOK_MAX_ATTEMPTS", "1")
    webhook_receiver.answer_with([500])
    capsys.readouterr()
    assert main(["dispatch"]) == 0
    assert "dead-lettered 1" in capsys.readouterr().out
    assert main(["dispatch", "--dead-letters"]) == 0
    captured = capsys.readouterr()
    assert "stage MQL: 1 attempts" in captured.out
    assert "1 dead-lettered webhook(s)" in captured.err
