"""The pure engine: caps, windows, decay, quiz answers, and its invariants (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.engine import AttributeFact, EventFact, score_lead, total
from scoring.rules import BehaviourRule, FitRule, QuizRule, ScoringModel, model_from_json
from scoring.stages import Stage

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def model(*behaviour: BehaviourRule, fit: tuple[FitRule, ...] = ()) -> ScoringModel:
    return ScoringModel(
        "profiling", ((Stage.MQL, 60.0), (Stage.SQL, 80.0)), fit=fit, behaviour=behaviour
    )


def event(n: int, kind: str = "webinar_attended", age_days: float = 0) -> EventFact:
    return EventFact(f"e{n}", kind, NOW - timedelta(days=age_days), 7)


def test_a_cap_limits_how_often_a_rule_scores() -> None:
    rule = BehaviourRule("webinar", "webinar_attended", 15, max_count=2)
    points = score_lead(model(rule), [], [event(i) for i in range(5)], NOW)
    assert [p.points for p in points] == [15, 15]


def test_a_minimum_count_scores_from_the_nth_event() -> None:
    rule = BehaviourRule("opens", "email_opened", 5, min_count=3)
    assert score_lead(model(rule), [], [event(i, "email_opened") for i in range(2)], NOW) == []
    points = score_lead(model(rule), [], [event(i, "email_opened") for i in range(4)], NOW)
    assert [(p.points, p.source) for p in points] == [(5, "event:e2")]


def test_a_window_ignores_older_events() -> None:
    rule = BehaviourRule("pricing", "pricing_page_viewed", 20, window_days=30)
    old = [event(1, "pricing_page_viewed", age_days=31)]
    assert score_lead(model(rule), [], old, NOW) == []
    recent = [event(2, "pricing_page_viewed", age_days=29)]
    assert total(score_lead(model(rule), [], recent, NOW)) == 20


@pytest.mark.parametrize(("age_days", "expected"), [(0, 20), (30, 10), (60, 5), (90, 2.5)])
def test_decay_halves_points_every_half_life(age_days: float, expected: float) -> None:
    rule = BehaviourRule("pricing", "pricing_page_viewed", 20, half_life_days=30)
    points = score_lead(model(rule), [], [event(1, "pricing_page_viewed", age_days)], NOW)
    assert total(points) == expected


@pytest.mark.parametrize(
    ("rule", "value", "matches"),
    [
        (FitRule("r", "company_size", 1, one_of=("51-200",)), "51-200", True),
        (FitRule("r", "company_size", 1, low=50, high=1000), "201-1000", True),
        (FitRule("r", "company_size", 1, low=50, high=1000), "1001+", False),
        (FitRule("r", "company_size", 1, low=50, high=1000), "n/a", False),
        (FitRule("r", "country", 1, equals="DE"), "de", True),
        (FitRule("r", "job_title", 1, pattern=r"\bvp\b"), "VP Sales", True),
        (FitRule("r", "job_title", 1, pattern=r"\bvp\b"), "MVP builder", False),
    ],
)
def test_fit_rules(rule: FitRule, value: str, matches: bool) -> None:
    assert rule.matches(value) is matches


def test_quiz_answers_score_by_question_and_answer() -> None:
    scoring = ScoringModel(
        "profiling", ((Stage.MQL, 60.0),), quiz=(QuizRule("big", "volume", "large", 10),)
    )
    answer = AttributeFact("quiz-answer", "volume", "large", "analytics-fit@v1", NOW, 3)
    field = AttributeFact("field", "volume", "large", "contact@v1", NOW, 3)
    assert [p.source for p in score_lead(scoring, [answer], [], NOW)] == ["quiz:volume=large"]
    assert score_lead(scoring, [field], [], NOW) == []


def test_a_model_survives_its_json_form() -> None:
    scoring = model(
        BehaviourRule("w", "webinar_attended", 15, 2, 3, 30.0, 45.0),
        fit=(FitRule("s", "company_size", 20, low=50, high=1000),),
    )
    assert model_from_json(scoring.canonical) == scoring
    assert model_from_json(scoring.canonical).sha256 == scoring.sha256


def test_stage_for_a_score() -> None:
    assert [model().stage_for(s) for s in (0, 59.9, 60, 79, 80, 500)] == [
        Stage.LEAD,
        Stage.LEAD,
        Stage.MQL,
        Stage.MQL,
        Stage.SQL,
        Stage.SQL,
    ]


rules = st.builds(
    BehaviourRule,
    name=st.sampled_from(["a", "b", "c"]),
    event=st.sampled_from(["x", "y"]),
    points=st.floats(min_value=0, max_value=100, allow_nan=False),
    min_count=st.integers(1, 4),
    max_count=st.integers(1, 4),
    window_days=st.none() | st.floats(min_value=1, max_value=60),
    half_life_days=st.none() | st.floats(min_value=1, max_value=60),
)
facts = st.lists(
    st.builds(
        EventFact,
        event_id=st.text("abcdef0123", min_size=1, max_size=8),
        type=st.sampled_from(["x", "y", "z"]),
        occurred_at=st.floats(min_value=0, max_value=120).map(lambda d: NOW - timedelta(days=d)),
        consent_seq=st.integers(1, 1000),
    ),
    max_size=30,
    unique_by=lambda e: e.event_id,
)


@given(st.lists(rules, min_size=1, max_size=3, unique_by=lambda r: r.name), facts)
def test_caps_are_never_exceeded_and_the_score_is_the_sum_of_its_points(
    behaviour: list[BehaviourRule], events: list[EventFact]
) -> None:
    points = score_lead(model(*behaviour), [], events, NOW)
    for rule in behaviour:
        mine = [p for p in points if p.rule == rule.name]
        assert len(mine) <= rule.max_count
        # Each point is rounded to cents, never beyond the rule's own rounded points.
        assert sum(p.points for p in mine) <= round(rule.points, 2) * rule.max_count + 1e-9
    assert total(points) == round(sum(p.points for p in points), 2)
    by_id = {e.event_id: e for e in events}
    for p in points:
        source = by_id[p.source.removeprefix("event:")]
        assert p.consent_seq == source.consent_seq, "a point cites its input's consent entry"
