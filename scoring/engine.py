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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scoring.rules import ScoringModel
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


def total(points: Iterable[Point]) -> float:
    return float(round(sum(p.points for p in points), 2))


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
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    for rule in model.behaviour:
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
            value = decayed(rule.points, now - event.occurred_at, rule.half_life_days)
            points.append(
                Point(
                    rule.name,
                    "behaviour",
                    round(value, 2),
                    f"event:{event.event_id}",
                    event.occurred_at,
                    event.consent_seq,
                )
            )
    return points
