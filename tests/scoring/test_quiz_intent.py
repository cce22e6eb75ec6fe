"""Quiz intent counts: a quiz's points and tags feed scoring rules (``[[scoring.tag]]``,
``[[scoring.quiz_score]]``), and appear in the lead API and the hand-off webhook under
the consent rule of the answers they come from. Rules on an unknown tag or quiz are
refused by ``site load`` with the key path, and nothing of the file is applied."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from consent_ledger.actions import ConsentMethod
from scoring import console_adapters, services
from scoring.engine import AttributeFact, intent_of, score_lead
from scoring.rules import (
    QuizAnswerIntent,
    QuizIntent,
    QuizScoreRule,
    ScoringModel,
    TagRule,
    model_from_json,
)
from scoring.stages import Stage
from scoring.webhooks import DispatchConfig, dispatch_pending
from tests.fixtures.webhooks import WebhookReceiver
from tests.scoring.conftest import grant, rows, withdraw
from zeroparty import lead_signals
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings
from zeroparty.wiring import build_ledger

TOKEN_RE = re.compile(r'name="_rt" value="([^"]+)"')
ANCHOR = '[[scoring.quiz]]\nname = "terabytes"'
INTENT_RULES = (
    '[[scoring.quiz_score]]\nname = "quiz-points"\nquiz = "analytics-fit"\n\n'
    '[[scoring.tag]]\nname = "forecasting-intent"\ntag = "forecasting"\npoints = 5\n\n' + ANCHOR
)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def intent_model(load_model: Callable[..., list[str]]) -> None:
    changes = load_model((ANCHOR, INTENT_RULES))
    assert any("scoring model: version 2" in c for c in changes), changes


@pytest.fixture
def take_quiz(app_client: TestClient, settings: Settings) -> Callable[..., None]:
    """``take_quiz(email, goal=..., volume=...)``: the hosted quiz, submitted as a
    person's browser does (urlencoded, JavaScript off), with profiling consent."""
    tokens = CaptureTokens(settings.secret_keys)

    def take(email: str, **answers: str) -> None:
        page = app_client.get("/f/analytics-fit")
        match = TOKEN_RE.search(page.text)
        assert match is not None
        token = tokens.read_render(match.group(1))
        aged = tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))
        response = app_client.post(
            "/f/analytics-fit",
            data={
                "_rt": aged,
                "_action": "submit",
                **answers,
                "email": email,
                "consent": "profiling",
            },
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text[:400]

    return take


def _score(api: TestClient, email: str) -> dict[str, Any]:
    response = api.get("/api/leads/score", params={"email": email})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_quiz_points_and_a_tag_count_in_the_score(
    intent_model: None, take_quiz: Callable[..., None], api: TestClient
) -> None:
    take_quiz("quinn@example.com", goal="prediction", volume="large")
    body = _score(api, "quinn@example.com")
    points = {p["rule"]: (p["kind"], p["points"], p["source"]) for p in body["points"]}
    assert points == {
        "terabytes": ("quiz", 10, "quiz:volume=large"),
        # prediction (10) + large (30): the quiz's own 40 points, not 10
        "quiz-points": ("quiz-score", 40, "quiz-score:analytics-fit=40"),
        "forecasting-intent": ("tag", 5, "tag:forecasting"),
    }
    assert body["score"] == 55
    assert body["intent"] == {
        "tags": ["forecasting", "enterprise"],
        "quiz_scores": {"analytics-fit": 40},
    }


def test_the_demo_model_shows_intent_but_scores_as_before(
    take_quiz: Callable[..., None], api: TestClient
) -> None:
    take_quiz("demo@example.com", goal="reporting", tools=["spreadsheets", "bi"])
    body = _score(api, "demo@example.com")
    assert body["score"] == 0
    assert body["intent"] == {
        "tags": ["reporting", "spreadsheets", "bi"],
        "quiz_scores": {"analytics-fit": 20},
    }


def test_intent_reaches_the_lead_list_and_the_hand_off(
    intent_model: None,
    take_quiz: Callable[..., None],
    events: Callable[..., Any],
    api: TestClient,
    database: Database,
    dispatch_config: DispatchConfig,
    webhook_receiver: WebhookReceiver,
) -> None:
    take_quiz("hand@example.com", goal="prediction", volume="large")
    events("hand@example.com", "pricing_page_viewed")  # 55 + 20 = 75: MQL
    listed = api.get("/api/leads", params={"stage": "MQL"})
    assert listed.status_code == 200, listed.text
    [lead] = listed.json()["leads"]
    assert (lead["email"], lead["score"]) == ("hand@example.com", 75)
    assert lead["intent"] == {
        "tags": ["forecasting", "enterprise"],
        "quiz_scores": {"analytics-fit": 40},
    }
    assert dispatch_pending(database, dispatch_config).delivered == 1
    [hook] = webhook_receiver.received
    from scoring import webhooks

    assert webhooks.verify(
        dispatch_config.secret, hook.headers, hook.body, now=utcnow().timestamp()
    )
    data = orjson.loads(hook.body)["data"]
    assert data["stage"] == "MQL"
    assert data["intent"] == {
        "tags": ["forecasting", "enterprise"],
        "quiz_scores": {"analytics-fit": 40},
    }
    assert {p["kind"] for p in data["points"]} >= {"tag", "quiz-score"}
    with database.read() as session:
        subject_id = (
            services.list_leads(session.connection(), Stage.MQL, 10, "").leads[0].subject_id
        )
        shown = console_adapters.lead_intent(session, subject_id)
    assert shown == console_adapters.LeadIntent(
        ["forecasting", "enterprise"], {"analytics-fit": 40}
    )


def _answer_for(database: Database, email: str, purposes: tuple[str, ...]) -> str:
    subject_id = str(
        rows(
            database,
            "SELECT subject_id FROM subject_profiles WHERE email = :email",
            email=email,
        )[0].subject_id
    )
    signal = lead_signals.LeadSignal(
        subject_id,
        utcnow(),
        "analytics-fit@v1",
        (
            lead_signals.LeadInput(
                lead_signals.InputKind.QUIZ_ANSWER, "goal", ("prediction",), purposes
            ),
            lead_signals.LeadInput(
                lead_signals.InputKind.QUIZ_ANSWER, "volume", ("large",), purposes
            ),
        ),
    )
    with database.write() as session:
        build_ledger(database).publish_signals(session, [signal])
    return subject_id


def _intent(database: Database, subject_id: str) -> dict[str, object]:
    with database.read() as session:
        explanation = services.explain(session.connection(), subject_id)
    return {"score": explanation.score, **explanation.intent.as_json()}


def test_intent_follows_the_purpose_its_answers_were_collected_for(
    intent_model: None, database: Database
) -> None:
    email = "split@example.com"
    grant(database, email)
    grant(database, email, "product_updates", method=ConsentMethod.DOUBLE_OPT_IN)
    subject_id = _answer_for(database, email, ("product_updates",))
    assert _intent(database, subject_id) == {
        "score": 55,
        "tags": ["forecasting", "enterprise"],
        "quiz_scores": {"analytics-fit": 40},
    }
    # The answers were collected only for product updates: withdrawn, they are
    # forgotten, and their tags, quiz score and points with them.
    withdraw(database, email, "product_updates")
    assert _intent(database, subject_id) == {"score": 0, "tags": [], "quiz_scores": {}}


def test_no_intent_is_shown_once_the_gating_consent_ends(
    intent_model: None, database: Database, api: TestClient
) -> None:
    email = "gone@example.com"
    grant(database, email)
    _answer_for(database, email, ("profiling",))
    assert _score(api, email)["intent"]["tags"] == ["forecasting", "enterprise"]
    withdraw(database, email)
    body = _score(api, email)
    assert body["permitted"] is False
    assert body["intent"] == {"tags": [], "quiz_scores": {}}
    assert rows(database, "SELECT count(*) AS n FROM scoring_attributes")[0].n == 0


def _versions(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(text("SELECT count(*) FROM scoring_models")).scalar_one())


BAD_RULES = [
    (
        '[[scoring.tag]]\nname = "t"\ntag = "astrology"\npoints = 5',
        "scoring.tag[0].tag",
        "carries tag 'astrology'",
    ),
    (
        '[[scoring.tag]]\nname = "t"\ntag = "forecasting"\nquiz = "horoscope"\npoints = 5',
        "scoring.tag[0].quiz",
        "no quiz 'horoscope'",
    ),
    (
        '[[scoring.quiz_score]]\nname = "q"\nquiz = "horoscope"',
        "scoring.quiz_score[0].quiz",
        "no quiz 'horoscope'",
    ),
    ('[[scoring.quiz_score]]\nname = "q"', "scoring.quiz_score[0].quiz", "no quiz None"),
    (
        '[[scoring.quiz_score]]\nname = "q"\nquiz = "analytics-fit"\npoints = 10\nrange = [50, 10]',
        "scoring.quiz_score[0].range",
        "low <= high",
    ),
    (
        '[[scoring.quiz_score]]\nname = "q"\nquiz = "analytics-fit"\npoints = 10\n'
        "range = [10, 50]\nscale = 2",
        "scoring.quiz_score[0].scale",
        "not both",
    ),
    (
        '[[scoring.quiz_score]]\nname = "q"\nquiz = "analytics-fit"\nweight = 2',
        "scoring.quiz_score[0].weight",
        "unknown key",
    ),
    (
        '[[scoring.tag]]\nname = "terabytes"\ntag = "forecasting"\npoints = 5',
        "scoring",
        "more than once",
    ),
    ('[scoring.tag]\nname = "t"', "scoring.tag", "list of tables"),
]


@pytest.mark.parametrize(("rule", "where", "why"), BAD_RULES)
def test_rules_on_an_unknown_tag_or_quiz_are_refused(
    load_model: Callable[..., list[str]],
    database: Database,
    rule: str,
    where: str,
    why: str,
) -> None:
    before = _versions(database)
    with pytest.raises(SiteConfigError) as raised:
        load_model(
            (ANCHOR, rule + "\n\n" + ANCHOR),
            ('title = { en = "Talk to Northwind"', 'title = { en = "Changed too"'),
        )
    problems = dict(raised.value.problems)
    key = f"site.toml: {where}"
    assert key in problems, problems
    assert why in problems[key]
    assert _versions(database) == before
    with database.read() as session:
        changed = session.execute(
            text("SELECT count(*) FROM capture_definitions WHERE definition LIKE '%Changed too%'")
        ).scalar_one()
    assert changed == 0, "nothing of the file was applied"


def _answer(question: str, value: str, at: datetime = NOW, seq: int = 3) -> AttributeFact:
    return AttributeFact("quiz-answer", question, value, "q@v2", at, seq)


QUIZ = QuizIntent(
    "q",
    (
        QuizAnswerIntent("goal", "prediction", ("forecasting",), 10),
        QuizAnswerIntent("volume", "large", ("enterprise",), 30),
        QuizAnswerIntent("tools", "bi", ("bi", "forecasting"), 5),
    ),
)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (QuizScoreRule("s", "q"), [45.0]),
        (QuizScoreRule("s", "q", scale=0.5, cap=20), [20.0]),
        (QuizScoreRule("s", "q", points=15, low=40, high=1000), [15.0]),
        (QuizScoreRule("s", "q", points=15, low=50, high=1000), []),
        (QuizScoreRule("s", "other"), []),
    ],
)
def test_quiz_score_rules(rule: QuizScoreRule, expected: list[float]) -> None:
    model = ScoringModel("profiling", ((Stage.MQL, 60.0),), quiz_scores=(rule,), quizzes=(QUIZ,))
    answers = [_answer("goal", "prediction"), _answer("volume", "large"), _answer("tools", "bi")]
    assert [p.points for p in score_lead(model, answers, [], NOW)] == expected


def test_tags_count_once_and_only_from_quiz_answers_of_known_quizzes() -> None:
    later = datetime(2026, 6, 2, tzinfo=UTC)
    model = ScoringModel(
        "profiling",
        ((Stage.MQL, 60.0),),
        tags=(TagRule("f", "forecasting", 7), TagRule("other-quiz", "forecasting", 9, "x")),
        quizzes=(QUIZ,),
    )
    facts = [
        _answer("tools", "bi", later, 8),
        _answer("goal", "prediction", NOW, 4),
        AttributeFact("field", "goal", "prediction", "contact@v1", NOW, 4),
        AttributeFact("quiz-answer", "goal", "prediction", "unknown@v1", NOW, 4),
    ]
    [point] = score_lead(model, facts, [], later)
    assert (point.rule, point.points, point.consent_seq) == ("f", 7, 4), "the earliest answer"
    assert intent_of(model, facts).tag_names() == ["bi", "forecasting"]
    assert intent_of(model, facts).scores() == {"q": 15}


def test_a_model_with_intent_rules_survives_its_json_form() -> None:
    model = ScoringModel(
        "profiling",
        ((Stage.MQL, 60.0),),
        tags=(TagRule("f", "forecasting", 7, "q"),),
        quiz_scores=(QuizScoreRule("s", "q", points=15, low=40, high=100),),
        quizzes=(QUIZ,),
    )
    assert model_from_json(model.canonical) == model
    assert model_from_json(model.canonical).sha256 == model.sha256
