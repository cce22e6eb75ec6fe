"""The scoring engine: a pure function from a lead's facts to explained points.

Invariants (property-tested in ``tests/scoring/test_properties.py``):
- a score is exactly the sum of its points, each naming its rule, the event or answer
  it came from and the ledger entry that permitted that input;
- a behaviour rule never scores more than ``max_count`` times, nor more than
  ``points * max_count`` (decay only lowers points);
- only facts handed in are scored: the caller hands in only facts whose consent was
  live when they happened (:mod:`scoring.consent`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from scoring.rules import BehaviourRule, ScoringModel
from zeroparty.lead_signals import InputKind

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class AttributeFact:
    """A kept answer: a form field value or a quiz answer."""

    kind: str
    name: str
    value: str
    source_ref: str
    occurred_at: datetime
    consent_seq: int


@dataclass(frozen=True, slots=True)
class EventFact:
    event_id: str
    type: str
    occurred_at: datetime
    consent_seq: int


@dataclass(frozen=True, slots=True)
class Point:
    """Points one rule gave for one input. ``source`` is ``event:ID`` or
    ``field:NAME=VALUE`` / ``quiz:QUESTION=ANSWER``; ``consent_seq`` the ledger entry
    under which the input was collected."""

    rule: str
    kind: str
    points: float
    source: str
    occurred_at: datetime
    consent_seq: int


@dataclass(frozen=True, slots=True)
class Intent:
    """What a lead's kept quiz answers say: the tags they carry (per quiz, with the
    earliest answer that gave each) and each quiz's score (the sum of its answers' scores,
    with the latest answer counted). Derived only from the answers handed in, so it
    follows the answers' consent."""

    tags: dict[tuple[str, str], AttributeFact]
    quiz_scores: dict[str, tuple[float, AttributeFact]]

    def tag_names(self) -> list[str]:
        """Every tag held, each once, in the order first given."""
        return list(dict.fromkeys(tag for _, tag in self.tags))

    def fact_for_tag(self, tag: str, quiz: str | None = None) -> AttributeFact | None:
        found = [f for (q, t), f in self.tags.items() if t == tag and quiz in (None, q)]
        return min(found, key=lambda f: f.occurred_at) if found else None

    def scores(self) -> dict[str, float]:
        return {quiz: score for quiz, (score, _) in sorted(self.quiz_scores.items())}

    def as_json(self) -> dict[str, object]:
        """As the lead API and the hand-off webhook show it."""
        return {"tags": self.tag_names(), "quiz_scores": self.scores()}


NO_INTENT = Intent({}, {})


def quiz_slug(source_ref: str) -> str:
    """The quiz an answer was given in: ``analytics-fit@v3`` → ``analytics-fit``."""
    return source_ref.partition("@")[0]


def intent_of(model: ScoringModel, attributes: Iterable[AttributeFact]) -> Intent:
    """The tags and quiz scores of the lead's kept quiz answers, as the model's copy of
    each quiz declares them (an answer of a quiz the model does not know counts nothing)."""
    tags: dict[tuple[str, str], AttributeFact] = {}
    scores: dict[str, tuple[float, AttributeFact]] = {}
    for fact in attributes:
        if fact.kind != InputKind.QUIZ_ANSWER:
            continue
        quiz = quiz_slug(fact.source_ref)
        declared = model.quiz_intent(quiz)
        meaning = declared.of(fact.name, fact.value) if declared is not None else None
        if meaning is None:
            continue
        for tag in meaning.tags:
            given = tags.get((quiz, tag))
            if given is None or fact.occurred_at < given.occurred_at:
                tags[(quiz, tag)] = fact
        before = scores.get(quiz)
        if before is None:
            scores[quiz] = (meaning.score, fact)
        else:
            latest = fact if fact.occurred_at >= before[1].occurred_at else before[1]
            scores[quiz] = (before[0] + meaning.score, latest)
    return Intent(tags, scores)


def total(points: Iterable[Point]) -> float:
    return total_of(p.points for p in points)


def total_of(values: Iterable[float]) -> float:
    """:func:`total` of the points' values, in the points' order."""
    return float(round(sum(values), 2))


def decayed(points: float, age: timedelta, half_life_days: float | None) -> float:
    if not half_life_days or age.total_seconds() <= 0:
        return points
    factor: float = 0.5 ** (age.total_seconds() / SECONDS_PER_DAY / half_life_days)
    return points * factor


def score_lead(
    model: ScoringModel,
    attributes: Sequence[AttributeFact],
    events: Sequence[EventFact],
    now: datetime,
) -> list[Point]:
    """Every point ``model`` gives a lead with these facts at ``now``."""
    if not attributes and not events:
        return []  # no input, no point (a full rescore: most leads have no answers)
    points: list[Point] = []
    fields = [a for a in attributes if a.kind == InputKind.FIELD]
    answers = [a for a in attributes if a.kind == InputKind.QUIZ_ANSWER]
    for fit in model.fit:
        match = next((a for a in fields if a.name == fit.field and fit.matches(a.value)), None)
        if match is not None:
            points.append(
                Point(
                    fit.name,
                    "fit",
                    round(fit.points, 2),
                    f"field:{match.name}={match.value}",
                    match.occurred_at,
                    match.consent_seq,
                )
            )
    for quiz in model.quiz:
        match = next(
            (a for a in answers if a.name == quiz.question and a.value == quiz.answer), None
        )
        if match is not None:
            points.append(
                Point(
                    quiz.name,
                    "quiz",
                    round(quiz.points, 2),
                    f"quiz:{match.name}={match.value}",
                    match.occurred_at,
                    match.consent_seq,
                )
            )
    if model.tags or model.quiz_scores:
        points += _intent_points(model, intent_of(model, answers))
    ordered = sorted(events, key=_event_order)
    for rule in model.behaviour:
        points += _behaviour_points(rule, ordered, now)
    return points


def _intent_points(model: ScoringModel, intent: Intent) -> list[Point]:
    """Points of the rules on tags and quiz scores (before behaviour points, like every
    answer's points: :func:`continued_points` keeps them as stored)."""
    points: list[Point] = []
    for rule in model.tags:
        fact = intent.fact_for_tag(rule.tag, rule.quiz)
        if fact is not None:
            points.append(
                Point(
                    rule.name,
                    "tag",
                    round(rule.points, 2),
                    f"tag:{rule.tag}",
                    fact.occurred_at,
                    fact.consent_seq,
                )
            )
    for score_rule in model.quiz_scores:
        found = intent.quiz_scores.get(score_rule.quiz)
        if found is None:
            continue
        score, fact = found
        value = score_rule.points_for(score)
        if value is not None:
            points.append(
                Point(
                    score_rule.name,
                    "quiz-score",
                    round(value, 2),
                    f"quiz-score:{score_rule.quiz}={score:g}",
                    fact.occurred_at,
                    fact.consent_seq,
                )
            )
    return points


def _event_order(event: EventFact) -> tuple[datetime, str]:
    return event.occurred_at, event.event_id


# --- incremental rescoring ---------------------------------------------------------------
#
# A lead's stored points are the model's points at ``scored_at``. New events (or a later
# ``now``) change only behaviour points. A behaviour rule's points can be carried on from
# its stored points exactly when the events they came from, with the new ones, are every
# event the rule could count now:
#
# - ``min_count == 1`` (with a higher minimum, the events counted before the first scored
#   one are not among the points: their number and times must be read);
# - ``scored_at <= now`` (a window only moves forward);
# - the rule scored fewer than ``max_count`` events (then it scored every event in its
#   window at ``scored_at``, and the window now is a subset of that one plus new events),
#   or it scored ``max_count`` and the earliest of them is still inside the window (the
#   unscored events all sort after the last scored one, so none can move up).
#
# Decay needs nothing more: a point's value is computed again from its event's time.
# Otherwise the rule's events are read (only the rule's type, only inside its window).


def behaviour_points(
    rule: BehaviourRule, events: Iterable[EventFact], now: datetime
) -> list[Point]:
    """The points ``rule`` gives for ``events`` (any types: others are skipped) at ``now``."""
    return _behaviour_points(rule, sorted(events, key=_event_order), now)


def _behaviour_points(
    rule: BehaviourRule, ordered: Sequence[EventFact], now: datetime
) -> list[Point]:
    """:func:`behaviour_points` of events in (time, id) order."""
    points: list[Point] = []
    since = now - timedelta(days=rule.window_days) if rule.window_days else None
    count = 0
    for event in ordered:
        if event.type != rule.event or (since is not None and event.occurred_at < since):
            continue
        count += 1
        if count < rule.min_count:
            continue
        if count - rule.min_count >= rule.max_count:
            break
        points.append(behaviour_point(rule, event, now))
    return points


def behaviour_point(rule: BehaviourRule, event: EventFact, now: datetime) -> Point:
    """The point ``rule`` gives for ``event``, one it counts (decayed to ``now``)."""
    return Point(
        rule.name,
        "behaviour",
        behaviour_value(rule, event.occurred_at, now),
        f"event:{event.event_id}",
        event.occurred_at,
        event.consent_seq,
    )


def behaviour_value(rule: BehaviourRule, occurred_at: datetime, now: datetime) -> float:
    """The value of a point of ``rule`` for an event at ``occurred_at`` (without
    ``half_life_days``, ``rule.points`` rounded whatever the time)."""
    return round(decayed(rule.points, now - occurred_at, rule.half_life_days), 2)


def counted_points(
    model: ScoringModel, counted: Iterable[tuple[int, EventFact]], now: datetime
) -> list[Point]:
    """The behaviour points of a lead whose counted events are known already: each
    ``(i, event)`` an event that ``model.behaviour[i]`` counts, in rule order, then in
    (time, id) order (:mod:`scoring.counted_events` selects them in SQL). The same
    points as :func:`score_lead` gives for all the lead's events."""
    rules = model.behaviour
    return [behaviour_point(rules[i], event, now) for i, event in counted]


def _stored_events(rule: BehaviourRule, stored: Sequence[Point]) -> list[EventFact]:
    return [
        EventFact(p.source.removeprefix("event:"), rule.event, p.occurred_at, p.consent_seq)
        for p in stored
        if p.kind == "behaviour" and p.rule == rule.name
    ]


def carries_on(
    model: ScoringModel,
    rule: BehaviourRule,
    stored: Sequence[Point],
    scored_at: datetime,
    now: datetime,
) -> bool:
    """Whether ``rule``'s points at ``now`` follow from its stored points (scored at
    ``scored_at``) and the new events alone, without reading its older events."""
    if rule.min_count != 1 or scored_at > now or rule.name in _shared_names(model):
        return False
    mine = [p for p in stored if p.kind == "behaviour" and p.rule == rule.name]
    if len(mine) < rule.max_count or not rule.window_days:
        return True
    earliest = min(p.occurred_at for p in mine)
    return earliest >= now - timedelta(days=rule.window_days)


def _shared_names(model: ScoringModel) -> frozenset[str]:
    """Behaviour rule names used by more than one rule (their points cannot be told apart)."""
    shared = model._cache.get("shared_behaviour_names")
    if shared is None:
        names = [rule.name for rule in model.behaviour]
        shared = model._cache["shared_behaviour_names"] = frozenset(
            name for name in names if names.count(name) > 1
        )
    return cast(frozenset[str], shared)


def types_to_read(
    model: ScoringModel, stored: Sequence[Point], scored_at: datetime, now: datetime
) -> dict[str, datetime | None]:
    """The event types whose stored events :func:`continued_points` needs, each with
    the earliest time that can count (``None``: every event of the type)."""
    read: dict[str, datetime | None] = {}
    for rule in model.behaviour:
        if carries_on(model, rule, stored, scored_at, now):
            continue
        since = now - timedelta(days=rule.window_days) if rule.window_days else None
        if rule.event not in read:
            read[rule.event] = since
        else:
            earlier = read[rule.event]
            read[rule.event] = None if since is None or earlier is None else min(since, earlier)
    return read


def continued_points(
    model: ScoringModel,
    stored: Sequence[Point],
    new_events: Sequence[EventFact],
    scored_at: datetime,
    now: datetime,
    read: Mapping[str, Sequence[EventFact]],
) -> list[Point]:
    """The lead's points at ``now``, the same as :func:`score_lead` over all its facts,
    from its points stored at ``scored_at`` (answers unchanged since), its new events and
    ``read``: every stored event (new ones included) of each type of
    :func:`types_to_read`, inside the window of that type's rules at least."""
    points = [p for p in stored if p.kind != "behaviour"]
    for rule in model.behaviour:
        if rule.event in read and not carries_on(model, rule, stored, scored_at, now):
            events: Iterable[EventFact] = read[rule.event]
        else:
            events = [*_stored_events(rule, stored), *new_events]
        points += behaviour_points(rule, events, now)
    return points
