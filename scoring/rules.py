"""The scoring model: fit rules, behaviour rules, quiz rules, thresholds, hand-off.

A model is declared in ``site.toml`` (``[scoring]``, parsed by :mod:`scoring.site`),
stored as an immutable version (its canonical JSON and SHA-256) and read back with
:func:`model_from_json`. Everything here is plain data and pure functions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from scoring.actions import NextActionRule
from scoring.lifecycle import DEFAULT as DEFAULT_LIFECYCLE
from scoring.lifecycle import Lifecycle

_LEADING_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")


def leading_number(value: str) -> float | None:
    """The number a value starts with: ``"51-200"`` → 51, ``"1001+"`` → 1001."""
    match = _LEADING_NUMBER.match(value)
    return float(match.group(1)) if match else None


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class FitRule:
    """Points for who the lead is: a field's value equals, is in, lies in a range
    (``low <= number <= high``, the value's leading number) or matches a pattern."""

    name: str
    field: str
    points: float
    equals: str | None = None
    one_of: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    pattern: str | None = None

    def matches(self, value: str) -> bool:
        if self.equals is not None:
            return value.casefold() == self.equals.casefold()
        if self.one_of:
            return value.casefold() in {item.casefold() for item in self.one_of}
        if self.pattern is not None:
            return re.search(self.pattern, value, re.IGNORECASE) is not None
        number = leading_number(value)
        if number is None:
            return False
        return (self.low is None or number >= self.low) and (
            self.high is None or number <= self.high
        )


@dataclass(frozen=True, slots=True)
class BehaviourRule:
    """Points for what the lead did: each event of type ``event`` scores ``points``
    once the lead has ``min_count`` of them, at most ``max_count`` times, counting
    only events of the last ``window_days`` (if set); ``half_life_days`` halves an
    event's points every that many days of its age."""

    name: str
    event: str
    points: float
    min_count: int = 1
    max_count: int = 1
    window_days: float | None = None
    half_life_days: float | None = None


@dataclass(frozen=True, slots=True)
class QuizRule:
    """Points for a quiz answer: question ``question`` answered ``answer``."""

    name: str
    question: str
    answer: str
    points: float


@dataclass(frozen=True, slots=True)
class QuizAnswerIntent:
    """What one quiz answer says about intent, as the quiz declares it in site.toml
    (``tags`` and ``score`` of ``quizzes.SLUG.steps.questions.answers``)."""

    question: str
    answer: str
    tags: tuple[str, ...] = ()
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class QuizIntent:
    """A quiz's answers that carry tags or points, copied into the model when it is
    loaded: scoring reads a kept answer's meaning from here, never from capture."""

    quiz: str
    answers: tuple[QuizAnswerIntent, ...]

    def of(self, question: str, answer: str) -> QuizAnswerIntent | None:
        for item in self.answers:
            if item.question == question and item.answer == answer:
                return item
        return None

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(tag for item in self.answers for tag in item.tags)


@dataclass(frozen=True, slots=True)
class TagRule:
    """Points once the lead holds intent tag ``tag`` from a kept quiz answer (of quiz
    ``quiz`` only, if set)."""

    name: str
    tag: str
    points: float
    quiz: str | None = None


@dataclass(frozen=True, slots=True)
class QuizScoreRule:
    """Points from quiz ``quiz``'s score (the sum of the scores of the lead's kept
    answers to it). With ``points``: that many, once the score lies in
    ``[low, high]``; without: the score itself times ``scale``, at most ``cap``."""

    name: str
    quiz: str
    points: float | None = None
    low: float | None = None
    high: float | None = None
    scale: float = 1.0
    cap: float | None = None

    def points_for(self, score: float) -> float | None:
        """The points for a quiz score, ``None`` when the rule gives none."""
        if self.points is not None:
            inside = (self.low is None or score >= self.low) and (
                self.high is None or score <= self.high
            )
            return self.points if inside else None
        value = score * self.scale
        if self.cap is not None:
            value = min(value, self.cap)
        return value if value else None


@dataclass(frozen=True, slots=True)
class LeadType:
    """A label a lead can hold beside its stage (IQL, MQL, PQL, SQL-from-service, …).
    Earned, and kept, once the score reaches ``min_score`` (if set) and every rule named
    in ``rules`` gave points (if any); a type with neither is given by hand only."""

    name: str
    min_score: float | None = None
    rules: tuple[str, ...] = ()

    @property
    def by_hand(self) -> bool:
        return self.min_score is None and not self.rules

    def earned(self, score: float, scored_rules: set[str]) -> bool:
        if self.by_hand:
            return False
        return (self.min_score is None or score >= self.min_score) and scored_rules.issuperset(
            self.rules
        )


@dataclass(frozen=True, slots=True)
class ScoringModel:
    """A whole model. ``thresholds`` ascend in the order of ``lifecycle``'s stages;
    ``handoff`` names the stages whose reaching sends a webhook to the CRM."""

    purpose: str
    thresholds: tuple[tuple[str, float], ...]
    handoff: tuple[str, ...] = ("MQL", "SQL")
    fit: tuple[FitRule, ...] = ()
    behaviour: tuple[BehaviourRule, ...] = ()
    quiz: tuple[QuizRule, ...] = ()
    extra_event_types: tuple[str, ...] = ()
    # Accounts: free-mail domains added to the built-in list (scoring.accounts).
    free_mail: tuple[str, ...] = ()
    # Hand-off SLA: response time in seconds per stage (scoring.sla).
    sla: tuple[tuple[str, float], ...] = ()
    # Quiz intent: rules on tags and quiz scores, and the quizzes' answers they read.
    tags: tuple[TagRule, ...] = ()
    quiz_scores: tuple[QuizScoreRule, ...] = ()
    quizzes: tuple[QuizIntent, ...] = ()
    # Upkeep (scoring.upkeep): how stale a decaying score may get, in seconds
    # (scoring.rescore_every), and after how many days without activity a lead at a
    # threshold stage is recycled to the lifecycle's first stage (scoring.demote_after_days;
    # None: never).
    rescore_every: float | None = None
    demote_after_days: float | None = None
    # Lead types held beside the stage, and temperature bands (name, lowest score),
    # ascending (scoring.lead_type, scoring.temperature).
    lead_types: tuple[LeadType, ...] = ()
    temperature: tuple[tuple[str, float], ...] = ()
    # Next best action rules, first match wins (scoring.actions).
    next_actions: tuple[NextActionRule, ...] = ()
    # Stages reached by an event, whatever the score (scoring.stage_events).
    stage_events: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The stages, their order and roles (scoring.lifecycle; the fixed chain without it).
    lifecycle: Lifecycle = DEFAULT_LIFECYCLE
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def event_types(self) -> frozenset[str]:
        """Every event type ``POST /api/events`` accepts."""
        cached = self._cache.get("event_types")
        if cached is None:
            cached = frozenset(
                {rule.event for rule in self.behaviour}
                | set(self.extra_event_types)
                | {event for _, events in self.stage_events for event in events}
            )
            self._cache["event_types"] = cached
        return cached

    def quiz_intent(self, quiz: str) -> QuizIntent | None:
        """The intent quiz ``quiz`` (its slug) declares, if any of its answers has one."""
        by_slug = self._cache.get("quizzes")
        if by_slug is None:
            by_slug = self._cache["quizzes"] = {q.quiz: q for q in self.quizzes}
        return cast(QuizIntent | None, by_slug.get(quiz))

    def stage_for_event(self, event_type: str) -> str | None:
        """The stage an event of ``event_type`` moves a lead to, if any."""
        return next((stage for stage, events in self.stage_events if event_type in events), None)

    def temperature_for(self, score: float | None) -> str | None:
        """The band ``score`` lies in (``None`` below the lowest, or without bands)."""
        if score is None:
            return None
        band = None
        for name, lowest in self.temperature:
            if score >= lowest:
                band = name
        return band

    def lead_type(self, name: str) -> LeadType | None:
        return next((t for t in self.lead_types if t.name == name), None)

    def stage_for(self, score: float) -> str:
        """The highest threshold stage ``score`` reaches (the lifecycle's first stage
        below every threshold)."""
        reached = self.lifecycle.start
        for stage, minimum in self.thresholds:
            if score >= minimum:
                reached = stage
        return reached

    def as_json(self) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        # Only when set: a model without them keeps the hash it had before they existed.
        if self.free_mail:
            extras["free_mail"] = list(self.free_mail)
        if self.sla:
            extras["sla"] = {str(stage): float(seconds) for stage, seconds in self.sla}
        if self.rescore_every is not None:
            extras["rescore_every"] = float(self.rescore_every)
        if self.demote_after_days is not None:
            extras["demote_after_days"] = float(self.demote_after_days)
        if self.lead_types:
            extras["lead_types"] = [
                {"name": t.name, "min_score": _number(t.min_score), "rules": list(t.rules)}
                for t in self.lead_types
            ]
        if self.temperature:
            extras["temperature"] = [[name, float(low)] for name, low in self.temperature]
        if self.stage_events:
            extras["stage_events"] = {str(stage): list(ev) for stage, ev in self.stage_events}
        if not self.lifecycle.is_default:
            extras["lifecycle"] = self.lifecycle.as_json()
        if self.next_actions:
            extras["next_actions"] = [rule.as_json() for rule in self.next_actions]
        if self.tags:
            extras["tags"] = [
                {"name": r.name, "tag": r.tag, "points": float(r.points), "quiz": r.quiz}
                for r in self.tags
            ]
        if self.quiz_scores:
            extras["quiz_scores"] = [
                {
                    "name": r.name,
                    "quiz": r.quiz,
                    "points": _number(r.points),
                    "low": _number(r.low),
                    "high": _number(r.high),
                    "scale": float(r.scale),
                    "cap": _number(r.cap),
                }
                for r in self.quiz_scores
            ]
        if self.quizzes:
            extras["quizzes"] = {
                q.quiz: [
                    {
                        "question": a.question,
                        "answer": a.answer,
                        "tags": list(a.tags),
                        "score": float(a.score),
                    }
                    for a in q.answers
                ]
                for q in self.quizzes
            }
        return {
            **extras,
            "purpose": self.purpose,
            "thresholds": {str(stage): float(points) for stage, points in self.thresholds},
            "handoff": [str(stage) for stage in self.handoff],
            "fit": [
                {
                    "name": r.name,
                    "field": r.field,
                    "points": float(r.points),
                    "equals": r.equals,
                    "in": list(r.one_of),
                    "low": _number(r.low),
                    "high": _number(r.high),
                    "pattern": r.pattern,
                }
                for r in self.fit
            ],
            "behaviour": [
                {
                    "name": r.name,
                    "event": r.event,
                    "points": float(r.points),
                    "min_count": r.min_count,
                    "max_count": r.max_count,
                    "window_days": _number(r.window_days),
                    "half_life_days": _number(r.half_life_days),
                }
                for r in self.behaviour
            ],
            "quiz": [
                {
                    "name": r.name,
                    "question": r.question,
                    "answer": r.answer,
                    "points": float(r.points),
                }
                for r in self.quiz
            ],
            "event_types": list(self.extra_event_types),
        }

    @property
    def canonical(self) -> bytes:
        return orjson.dumps(self.as_json(), option=orjson.OPT_SORT_KEYS)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical).hexdigest()


def model_from_json(raw: str | bytes) -> ScoringModel:
    data = orjson.loads(raw)
    return ScoringModel(
        purpose=data["purpose"],
        thresholds=tuple((str(k), float(v)) for k, v in data["thresholds"].items()),
        handoff=tuple(str(s) for s in data["handoff"]),
        fit=tuple(
            FitRule(
                name=r["name"],
                field=r["field"],
                points=float(r["points"]),
                equals=r["equals"],
                one_of=tuple(r["in"]),
                low=r["low"],
                high=r["high"],
                pattern=r["pattern"],
            )
            for r in data["fit"]
        ),
        behaviour=tuple(
            BehaviourRule(
                name=r["name"],
                event=r["event"],
                points=float(r["points"]),
                min_count=int(r["min_count"]),
                max_count=int(r["max_count"]),
                window_days=r["window_days"],
                half_life_days=r["half_life_days"],
            )
            for r in data["behaviour"]
        ),
        quiz=tuple(
            QuizRule(r["name"], r["question"], r["answer"], float(r["points"]))
            for r in data["quiz"]
        ),
        extra_event_types=tuple(data["event_types"]),
        free_mail=tuple(data.get("free_mail", ())),
        sla=tuple((str(k), float(v)) for k, v in data.get("sla", {}).items()),
        rescore_every=data.get("rescore_every"),
        demote_after_days=data.get("demote_after_days"),
        lead_types=tuple(
            LeadType(t["name"], t["min_score"], tuple(t["rules"]))
            for t in data.get("lead_types", ())
        ),
        temperature=tuple((str(n), float(low)) for n, low in data.get("temperature", ())),
        next_actions=tuple(NextActionRule.from_json(r) for r in data.get("next_actions", ())),
        stage_events=tuple((str(k), tuple(v)) for k, v in data.get("stage_events", {}).items()),
        lifecycle=(
            Lifecycle.from_json(data["lifecycle"]) if "lifecycle" in data else DEFAULT_LIFECYCLE
        ),
        tags=tuple(
            TagRule(r["name"], r["tag"], float(r["points"]), r["quiz"])
            for r in data.get("tags", ())
        ),
        quiz_scores=tuple(
            QuizScoreRule(
                r["name"],
                r["quiz"],
                points=r["points"],
                low=r["low"],
                high=r["high"],
                scale=float(r["scale"]),
                cap=r["cap"],
            )
            for r in data.get("quiz_scores", ())
        ),
        quizzes=tuple(
            QuizIntent(
                slug,
                tuple(
                    QuizAnswerIntent(
                        a["question"], a["answer"], tuple(a["tags"]), float(a["score"])
                    )
                    for a in answers
                ),
            )
            for slug, answers in data.get("quizzes", {}).items()
        ),
    )
