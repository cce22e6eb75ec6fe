"""Incremental rescoring (``scoring.engine.continued_points``) gives exactly the points of
a full recompute (``score_lead`` over every fact), over random models and event
sequences arriving in batches at moving moments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.engine import (
    AttributeFact,
    EventFact,
    continued_points,
    score_lead,
    total,
    types_to_read,
)
from scoring.rules import BehaviourRule, FitRule, ScoringModel
from scoring.stages import Stage

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FIT = (FitRule("size", "company_size", 10, low=50),)
ANSWERS = [AttributeFact("field", "company_size", "51-200", "form:f", START, 3)]

rules = st.builds(
    BehaviourRule,
    name=st.sampled_from(["a", "b", "c", "d"]),
    event=st.sampled_from(["x", "y"]),
    points=st.floats(min_value=0, max_value=100, allow_nan=False),
    min_count=st.integers(1, 3),
    max_count=st.integers(1, 4),
    window_days=st.none() | st.floats(min_value=1, max_value=60),
    half_life_days=st.none() | st.floats(min_value=1, max_value=60),
)
# A batch: how far the clock moves (a little backwards at times), then its events, each
# some days before that moment (or a little after it).
batches = st.lists(
    st.tuples(
        st.floats(min_value=-1, max_value=40),
        st.lists(
            st.tuples(
                st.sampled_from(["x", "y", "z"]),
                st.floats(min_value=-2, max_value=90),
                st.integers(0, 3),
            ),
            max_size=8,
        ),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(rules, min_size=1, max_size=4), batches)
def test_incremental_points_equal_a_full_recompute(
    behaviour: list[BehaviourRule], steps: list[tuple[float, list[tuple[str, float, int]]]]
) -> None:
    model = ScoringModel("profiling", ((Stage.MQL, 50.0),), fit=FIT, behaviour=tuple(behaviour))
    events: list[EventFact] = []
    scored_at = START
    stored = score_lead(model, ANSWERS, events, scored_at)
    for n, (advance, new) in enumerate(steps):
        now = scored_at + timedelta(days=advance)
        # Ids need not follow time: ties on occurred_at are broken by id.
        fresh = [
            EventFact(f"{n}-{i}-{tie}", kind, now - timedelta(days=age), 1 + n)
            for i, (kind, age, tie) in enumerate(new)
        ]
        events += fresh
        needed = types_to_read(model, stored, scored_at, now)
        read = {
            kind: [
                e for e in events if e.type == kind and (since is None or e.occurred_at >= since)
            ]
            for kind, since in needed.items()
        }
        points = continued_points(model, stored, fresh, scored_at, now, read)
        full = score_lead(model, ANSWERS, events, now)
        assert points == full
        assert total(points) == total(full)
        stored, scored_at = points, now


def test_a_saturated_rule_whose_points_stay_in_its_window_reads_nothing() -> None:
    rule = BehaviourRule("pricing", "x", 20, window_days=90)
    model = ScoringModel("profiling", ((Stage.MQL, 50.0),), behaviour=(rule,))
    first = [EventFact("e1", "x", START, 1)]
    stored = score_lead(model, [], first, START)
    later = START + timedelta(days=10)
    assert types_to_read(model, stored, START, later) == {}
    new = [EventFact("e2", "x", later, 2)]
    assert continued_points(model, stored, new, START, later, {}) == score_lead(
        model, [], first + new, later
    )
    # Once the scored event leaves the window, the rule's events inside it are read.
    gone = START + timedelta(days=91)
    assert types_to_read(model, stored, START, gone) == {"x": gone - timedelta(days=90)}
