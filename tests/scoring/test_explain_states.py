"""``zeroparty score --explain EMAIL`` and ``GET /api/leads/score`` in every state a lead
can be in (issue 19: a lead who had consented but was never scored crashed the CLI)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction
from tests.scoring.conftest import grant, withdraw
from zeroparty.cli import main
from zeroparty.db import Database

FIT = {"company_size": "1001+", "job_title": "Founder"}


def explain(email: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["score", "--explain", email])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def score_of(api: TestClient, email: str) -> dict[str, Any]:
    response = api.get("/api/leads/score", params={"email": email})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_unknown_address_is_bad_input(
    cli_env: object, api: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = explain("who@example.com", capsys)
    assert (code, out) == (2, "")
    assert "no lead with email who@example.com" in err
    response = api.get("/api/leads/score", params={"email": "who@example.com"})
    assert response.status_code == 404
    assert response.json()["error"]["fields"] == {"email": "unknown lead"}


def test_a_lead_without_profiling_consent(
    cli_env: object, api: TestClient, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    grant(database, "nl@example.com", "newsletter")
    code, out, _ = explain("nl@example.com", capsys)
    assert code == 0
    assert out == (
        "nl@example.com: not scored, stage Lead: no consent for profiling recorded: "
        "not scored, never staged beyond Lead, never handed off\n"
    )
    body = score_of(api, "nl@example.com")
    assert (body["status"], body["permitted"], body["score"], body["stage"]) == (
        "no_consent",
        False,
        None,
        "Lead",
    )
    assert body["points"] == []
    assert body["outcome"] is None


def test_a_lead_who_consented_but_was_never_scored(
    cli_env: object, api: TestClient, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = grant(database, "new@example.com")
    code, out, _ = explain("NEW@example.com", capsys)
    assert code == 0, "it crashed with a TypeError before the fix"
    assert out == (
        f"new@example.com: not scored, stage Lead: consent for profiling is live "
        f"(ledger entry {seq}) but the lead has not been scored yet: its next event or "
        "answer scores it, or zeroparty score\n"
    )
    body = score_of(api, "new@example.com")
    assert (body["status"], body["permitted"], body["score"], body["model_version"]) == (
        "not_scored",
        True,
        None,
        None,
    )
    assert body["scored_at"] is None
    assert body["points"] == []
    assert f"ledger entry {seq}" in body["reason"]
    # Scored by `zeroparty score`, it explains as scored (0 points, nothing to list).
    assert main(["score", "--quiet"]) == 0
    code, out, _ = explain("new@example.com", capsys)
    assert out == "new@example.com: 0 points, stage Lead (model version 1)\n"
    assert score_of(api, "new@example.com")["status"] == "scored"


def test_a_scored_lead_with_points(
    cli_env: object,
    api: TestClient,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    submit("ex@example.com", **FIT)
    events("ex@example.com", "pricing_page_viewed", "webinar_attended")
    code, out, _ = explain("ex@example.com", capsys)
    assert code == 0
    assert out.startswith("ex@example.com: 70 points, stage MQL (model version 1)\n")
    assert out.count("under ledger entry") == 4
    body = score_of(api, "ex@example.com")
    assert (body["status"], body["score"], len(body["points"])) == ("scored", 70, 4)
    assert body["reason"].startswith("scored under consent for profiling (ledger entry ")


def test_after_a_withdrawal_no_points_are_shown_and_it_says_why(
    cli_env: object,
    api: TestClient,
    database: Database,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    submit("wd@example.com", **FIT)
    events("wd@example.com", "pricing_page_viewed", "webinar_attended")
    seq = withdraw(database, "wd@example.com")
    code, out, _ = explain("wd@example.com", capsys)
    assert code == 0
    first, *rest = out.splitlines()
    assert first.startswith("wd@example.com: not scored, stage Lead: consent for profiling ")
    assert "withdrawn at " in first
    assert f"(ledger entry {seq})" in first
    assert "its score, points, events, answers and outcome were deleted" in first
    assert "under ledger entry" not in out, "no point is shown"
    assert rest[-1] == (
        f"  stage MQL → Lead by system:consent: consent withdrawn for profiling "
        f"(ledger entry {seq})"
    )
    body = score_of(api, "wd@example.com")
    assert (body["status"], body["permitted"], body["score"], body["points"]) == (
        "consent_ended",
        False,
        None,
        [],
    )
    assert "withdrawn at " in body["reason"]


def test_a_refusal_by_gpc_reads_as_such(
    cli_env: object, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    grant(database, "gpc@example.com")
    seq = grant(database, "gpc@example.com", action=ConsentAction.GPC_OPT_OUT)
    _, out, _ = explain("gpc@example.com", capsys)
    assert "opted out of by a Global Privacy Control signal" in out
    assert f"(ledger entry {seq})" in out


def test_an_erased_lead_is_no_longer_found(
    cli_env: object,
    api: TestClient,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    submit("er@example.com", **FIT)
    events("er@example.com", "pricing_page_viewed")
    assert main(["erase", "er@example.com"]) == 0
    code, out, err = explain("er@example.com", capsys)
    assert (code, out) == (2, ""), "the address is gone with the lead's personal data"
    assert "no lead with email er@example.com" in err
    assert api.get("/api/leads/score", params={"email": "er@example.com"}).status_code == 404


def test_a_lead_whose_consent_awaits_double_opt_in(
    cli_env: object,
    api: TestClient,
    database: Database,
    load_model: Callable[..., list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    load_model(("double_opt_in = false", "double_opt_in = true"))
    seq = grant(database, "doi@example.com")
    code, out, _ = explain("doi@example.com", capsys)
    assert code == 0
    assert out == (
        f"doi@example.com: not scored, stage Lead: consent for profiling awaits its double "
        f"opt-in confirmation (ledger entry {seq}): not scored until it is confirmed\n"
    )
    body = score_of(api, "doi@example.com")
    assert (body["status"], body["permitted"], body["score"]) == ("pending", False, None)


def test_a_lead_with_an_outcome_recorded(
    cli_env: object,
    api: TestClient,
    database: Database,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    submit("won@example.com", **FIT)
    events("won@example.com", "pricing_page_viewed", "webinar_attended")
    grant(database, "bare@example.com")  # consented, never scored
    for email, outcome in (("won@example.com", "won"), ("bare@example.com", "lost")):
        recorded = api.post(
            "/api/leads/outcome",
            json={"email": email, "outcome": outcome, "decided_at": "2026-01-05T10:00:00Z"},
        )
        assert recorded.status_code == 201, recorded.text
    code, out, _ = explain("won@example.com", capsys)
    assert code == 0
    assert out.startswith("won@example.com: 70 points, stage MQL")
    assert re.search(
        r"\n  outcome won, decided at 2026-01-05T10:00:00.000000Z, recorded by api:test-\w+\n$", out
    )
    code, out, _ = explain("bare@example.com", capsys)
    assert code == 0
    assert out.startswith("bare@example.com: not scored, stage Lead: consent for profiling")
    assert re.search(
        r"\n  outcome lost, decided at 2026-01-05T10:00:00.000000Z, recorded by api:test-\w+\n$",
        out,
    )
    body = score_of(api, "bare@example.com")
    assert body["status"] == "not_scored"
    assert body["outcome"]["outcome"] == "lost"
    assert body["outcome"]["decided_at"] == "2026-01-05T10:00:00.000000Z"
    assert body["outcome"]["recorded_by"].startswith("api:test-")
