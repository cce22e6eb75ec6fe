"""Quizzes: step by step without JavaScript, branching, outcomes, tags and scores, and
results shown whether or not anything is stored."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from capture.definitions import from_json
from capture.models import Answer, DefinitionVersion, Submission
from capture.quiz import walk
from capture.tokens import QUIZ_STEP_MAX_AGE, CaptureTokens
from consent_ledger.models import ConsentEvent
from tests.capture.conftest import find_all, one, token_in
from zeroparty.access_log import redact
from zeroparty.db import Database

QUIZ = "/f/analytics-fit"


def _step(client: TestClient, token: str, at: str, **answers: str | list[str]) -> str:
    response = client.post(QUIZ, data={"_rt": token, "_action": "next", "_at": at, **answers})
    assert response.status_code == 200, response.text[:400]
    return response.text


def test_first_step_is_a_fieldset_of_radio_buttons(app_client: TestClient) -> None:
    html = app_client.get(QUIZ).text
    assert one(html, "legend")["text"].startswith("What do you most want")
    radios = find_all(html, "input", name="goal")
    assert [r["type"] for r in radios] == ["radio"] * 3
    assert one(html, "input", name="_at")["value"] == "goal"


@pytest.mark.parametrize(
    ("path", "outcome"),
    [
        ([("goal", {"goal": "browsing"})], "The explorer"),
        ([("goal", {"goal": "reporting"}), ("tools", {"tools": ["bi", "spreadsheets"]})],
         "The reporter"),
        ([("goal", {"goal": "prediction"}), ("volume", {"volume": "small"})], "The builder"),
        ([("goal", {"goal": "prediction"}), ("volume", {"volume": "large"})], "The scaler"),
    ],
)  # fmt: skip
def test_branches_lead_to_their_outcome(
    app_client: TestClient,
    render: Callable[..., str],
    path: list[tuple[str, dict[str, str | list[str]]]],
    outcome: str,
) -> None:
    token = render("analytics-fit")
    given: dict[str, str | list[str]] = {}
    html = ""
    for at, answers in path:
        given.update(answers)
        html = _step(app_client, token, at, **given)
    assert one(html, "h2", id="outcome-title")["text"] == outcome
    # The result is shown before any email is asked for: consent is not its price.
    assert one(html, "input", id="f-email")
    assert "checked" not in one(html, "input", id="c-newsletter")


def test_branch_shows_the_step_it_leads_to(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    html = _step(app_client, render("analytics-fit"), "goal", goal="prediction")
    assert one(html, "input", name="_at")["value"] == "volume"
    assert one(html, "input", type="hidden", name="goal")["value"] == "prediction"
    assert not find_all(html, "input", name="tools")


def test_a_step_without_an_answer_says_so(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    response = app_client.post(
        QUIZ, data={"_rt": render("analytics-fit"), "_action": "next", "_at": "goal"}
    )
    assert response.status_code == 422
    assert one(response.text, "p", id="f-goal-error")["text"].strip() == "Error: Choose an answer"
    assert one(response.text, "input", id="f-goal-0")["aria-describedby"] == "f-goal-error"


def test_answers_outcome_tags_and_score_are_kept_with_profiling_consent(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    response = app_client.post(
        QUIZ,
        data={
            "_rt": render("analytics-fit"),
            "_action": "submit",
            "goal": "reporting",
            "tools": ["spreadsheets", "bi"],
            "email": "quinn@example.com",
            "consent": "profiling",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    with database.read() as session:
        submission = session.execute(select(Submission)).scalar_one()
        kept = [(a.field, a.value) for a in session.execute(select(Answer)).scalars()]
        entries = session.execute(select(ConsentEvent)).scalars().all()
    assert submission.outcome == "reporter"
    assert orjson.loads(submission.tags or "[]") == ["reporting", "spreadsheets", "bi"]
    assert submission.score == 20
    assert ("goal", "reporting") in kept
    assert ("tools", "bi") in kept
    assert [(e.purpose_key, e.source) for e in entries] == [("profiling", "quiz")]
    thanks = app_client.get(response.headers["location"])
    assert one(thanks.text, "h1")["text"] == "Your result: The reporter"


def test_without_profiling_consent_answers_and_result_are_not_kept(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    response = app_client.post(
        QUIZ,
        json={
            "render_token": render("analytics-fit"),
            "fields": {"goal": "prediction", "volume": "large", "email": "ray@example.com"},
            "consent": ["newsletter"],
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["outcome"] == "scaler"
    assert body["result"]["title"] == "The scaler"
    assert body["consent"] == ["newsletter"]
    with database.read() as session:
        submission = session.execute(select(Submission)).scalar_one()
        kept = [a.field for a in session.execute(select(Answer)).scalars()]
    assert kept == ["email"]
    assert (submission.outcome, submission.tags, submission.score) == (None, None, None)


def test_result_without_email_stores_nothing(
    app_client: TestClient, render: Callable[..., str], counts: Callable[[], dict[str, int]]
) -> None:
    before = counts()
    response = app_client.post(
        QUIZ,
        data={"_rt": render("analytics-fit"), "_action": "submit", "goal": "browsing"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    thanks = app_client.get(response.headers["location"])
    assert one(thanks.text, "h1")["text"] == "Your result: The explorer"
    assert "We have not stored anything about you." in thanks.text
    assert counts() == before


def test_answers_off_the_path_are_dropped(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    response = app_client.post(
        QUIZ,
        json={
            "render_token": render("analytics-fit"),
            "fields": {"goal": "browsing", "volume": "large", "email": "sam@example.com"},
            "consent": ["profiling"],
        },
    )
    assert response.status_code == 201
    assert response.json()["outcome"] == "explorer"
    with database.read() as session:
        kept = sorted(a.field for a in session.execute(select(Answer)).scalars())
    assert kept == ["email", "goal"]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"goal": "nonsense"}, "goal"),
        ({"goal": "reporting", "tools": ["hammer"]}, "tools"),
        ({"goal": ["reporting", "prediction"]}, "goal"),
        ({}, "goal"),
    ],
)
def test_bad_quiz_answers_are_refused(
    app_client: TestClient,
    render: Callable[..., str],
    counts: Callable[[], dict[str, int]],
    fields: dict[str, object],
    problem: str,
) -> None:
    before = counts()
    response = app_client.post(
        QUIZ,
        json={
            "render_token": render("analytics-fit"),
            "fields": {**fields, "email": "tim@example.com"},
            "consent": ["profiling"],
        },
    )
    assert response.status_code == 422
    assert problem in response.json()["error"]["fields"]
    assert counts() == before


def test_walk_stops_at_the_step_after_the_one_answered(database: Database) -> None:
    with database.read() as session:
        stored = session.execute(
            select(DefinitionVersion.definition).where(DefinitionVersion.slug == "analytics-fit")
        ).scalar_one()
    quiz = from_json(stored)
    path = walk(quiz, {"goal": ("reporting",)}, until="goal")
    assert path.current is not None
    assert path.current.key == "tools"
    assert path.outcome is None
    done = walk(quiz, {"goal": ("reporting",), "tools": ("none",)})
    assert done.outcome is not None
    assert done.outcome.key == "reporter"
    assert done.score == 5
    assert done.tags == ("reporting",)


def test_back_returns_to_the_previous_step_with_its_answer(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    token = render("analytics-fit")
    html = _step(app_client, token, "goal", goal="prediction")
    assert one(html, "p", class_="progress")["text"] == "Step 2: Your data"
    assert one(html, "button", value="back")
    response = app_client.post(
        QUIZ,
        data={"_rt": token, "_action": "back", "_at": "volume", "goal": "prediction"},
    )
    assert response.status_code == 200
    back = response.text
    assert one(back, "input", name="_at")["value"] == "goal"
    assert "checked" in one(back, "input", id="f-goal-1")
    assert not find_all(back, "button", value="back"), "no Back on the first step"


def test_next_without_a_button_value_still_steps(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    response = app_client.post(
        QUIZ, data={"_rt": render("analytics-fit"), "_at": "goal", "goal": "reporting"}
    )
    assert one(response.text, "input", name="_at")["value"] == "tools"


def test_a_step_is_answered_with_a_redirect_to_a_page_of_its_own(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    """POST-redirect-GET: the browser's history holds GET pages only, so Back and
    Forward never ask to send a step again; the address carries a signed token only."""
    response = app_client.post(
        QUIZ + "?embed=1",
        data={"_rt": render("analytics-fit"), "_action": "next", "_at": "goal",
              "goal": "prediction"},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(QUIZ + "?q=")
    assert location.endswith("&embed=1")
    assert "prediction" not in location, "answers travel inside the signed token only"
    page = app_client.get(location)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert one(page.text, "input", name="_at")["value"] == "volume"
    assert one(page.text, "input", type="hidden", name="goal")["value"] == "prediction"
    # The same page again (Forward, a reload) is the same step, with nothing stored.
    assert one(app_client.get(location).text, "input", name="_at")["value"] == "volume"


def test_back_keeps_the_answers_of_later_steps_for_the_way_forward(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    token = render("analytics-fit")
    response = app_client.post(
        QUIZ,
        data={"_rt": token, "_action": "back", "_at": "volume", "goal": "prediction",
              "volume": "large"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "checked" in one(response.text, "input", id="f-goal-1")
    assert one(response.text, "input", type="hidden", name="volume")["value"] == "large"
    forward = app_client.post(
        QUIZ, data={"_rt": token_in(response.text), "_action": "next", "_at": "goal",
                    "goal": "prediction", "volume": "large"},
    )  # fmt: skip
    assert "checked" in one(forward.text, "input", name="volume", value="large")


def test_the_result_page_keeps_the_render_token_of_the_first_step(
    app_client: TestClient, render: Callable[..., str], tokens: CaptureTokens
) -> None:
    """The final submit names the submission id the quiz started with, so sending it
    again after Back is the same submission (replayed), never a second one."""
    token = render("analytics-fit")
    html = _step(app_client, token, "goal", goal="browsing")
    assert one(html, "h2", id="outcome-title")["text"] == "The explorer"
    first = tokens.read_render(token)
    shown = tokens.read_render(token_in(html))
    assert (shown.submission_id, shown.rendered_at) == (first.submission_id, first.rendered_at)


@pytest.mark.parametrize(
    "query",
    [
        "q=not-a-token",
        "q=",
        "r=x&q=" + "a" * 3000,
    ],
)
def test_a_bad_step_token_starts_the_quiz_again(
    app_client: TestClient, counts: Callable[[], dict[str, int]], query: str
) -> None:
    before = counts()
    response = app_client.get(f"{QUIZ}?{query}")
    assert response.status_code == 400
    assert one(response.text, "input", name="_at")["value"] == "goal"
    assert "expired or was not valid" in response.text
    assert counts() == before


def test_a_step_token_opens_only_its_own_quiz(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    response = app_client.post(
        QUIZ, data={"_rt": render("analytics-fit"), "_action": "next", "_at": "goal",
                    "goal": "prediction"}, follow_redirects=False,
    )  # fmt: skip
    query = response.headers["location"].split("?", 1)[1]
    elsewhere = app_client.get(f"/f/contact?{query}")
    assert elsewhere.status_code == 400
    assert one(elsewhere.text, "input", id="f-email")
    assert not find_all(elsewhere.text, "input", name="_at")


def test_an_expired_step_token_says_so(
    app_client: TestClient,
    render: Callable[..., str],
    tokens: CaptureTokens,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    location = app_client.post(
        QUIZ, data={"_rt": render("analytics-fit"), "_action": "next", "_at": "goal",
                    "goal": "prediction"}, follow_redirects=False,
    ).headers["location"]  # fmt: skip
    step = tokens.read_quiz_step(location.split("q=", 1)[1])
    real_time = time.time
    # itsdangerous stamps tokens with time.time(): sign one as if the visitor had left
    # the page open longer than a step lives.
    monkeypatch.setattr(time, "time", lambda: real_time() - QUIZ_STEP_MAX_AGE - 60)
    old = tokens.issue_quiz_step(step)
    monkeypatch.setattr(time, "time", real_time)
    response = app_client.get(f"{QUIZ}?q={old}")
    assert response.status_code == 410
    assert one(response.text, "input", name="_at")["value"] == "goal"


def test_the_step_token_is_redacted_from_access_logs() -> None:
    assert redact("/f/analytics-fit?q=eJyrVkrOz0vOLynKTFWyUtI_&embed=1") == (
        "/f/analytics-fit?q=[redacted]&embed=1"
    )
