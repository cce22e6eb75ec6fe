"""Scoring's part of ``site.toml``: the ``[scoring]`` table.

:func:`parse` checks the model against the rest of the same file (the gating purpose
must be declared there and be opt-in; fit rules must name a declared form field, quiz
rules a declared question and answer, or a BANT field ``bant.*``; tag rules a tag some
declared quiz answer carries, quiz-score rules a declared quiz whose answers score; each
quiz's tags and scores are copied into the model; ``lifecycle`` names the stages
(:mod:`scoring.lifecycle_site`), and thresholds, stage events, hand-off, SLA and
next-action rules name stages of it, thresholds ascending in its order;
``accounts.free_mail`` holds domains, ``sla`` durations per stage) and reports every
problem by key path; :func:`apply` stores a changed model as a new immutable version,
first moving the leads at stages a changed lifecycle drops. A file without
``[scoring]`` leaves the model in force as it is.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scoring import actions, lifecycle_site, preview
from scoring.lifecycle import Lifecycle
from scoring.models import ScoringModelVersion
from scoring.qualification import BANT_RULE_FIELDS
from scoring.rules import (
    BehaviourRule,
    FitRule,
    LeadType,
    QuizAnswerIntent,
    QuizIntent,
    QuizRule,
    QuizScoreRule,
    ScoringModel,
    TagRule,
    model_from_json,
)
from scoring.sla import parse_duration
from zeroparty.config_errors import ConfigProblems

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
EVENT_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MAX_POINTS = 1000.0
MODEL_KEYS = {
    "purpose",
    "thresholds",
    "handoff",
    "half_life_days",
    "event_types",
    "fit",
    "behaviour",
    "quiz",
    "accounts",
    "sla",
    "tag",
    "quiz_score",
    "rescore_every",
    "demote_after_days",
    "lead_type",
    "temperature",
    "next_action",
    "stage_events",
    "lifecycle",
}
LEAD_TYPE_KEYS = {"name", "min_score", "rules", "by_hand"}
LEAD_TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
TAG_KEYS = {"name", "tag", "points", "quiz"}
QUIZ_SCORE_KEYS = {"name", "quiz", "points", "range", "scale", "cap"}
ACCOUNTS_KEYS = {"free_mail"}
DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9-]+(\.[a-z0-9-]+)+$")
FIT_KEYS = {"name", "field", "points", "equals", "in", "range", "pattern"}
BEHAVIOUR_KEYS = {
    "name",
    "event",
    "points",
    "min_count",
    "max_count",
    "window_days",
    "half_life_days",
}
QUIZ_KEYS = {"name", "question", "answer", "points"}


@dataclasses.dataclass(frozen=True, slots=True)
class SiteModel:
    """What ``[scoring]`` declares: the model, and where leads at stages its lifecycle
    drops move to (``[scoring.lifecycle.moves]``, applied when the model is stored)."""

    model: ScoringModel
    moves: tuple[tuple[str, str], ...] = ()


def _declared_fields(raw: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for section in ("forms", "quizzes"):
        table = raw.get(section)
        for item in table.values() if isinstance(table, dict) else ():
            fields = item.get("fields", []) if isinstance(item, dict) else []
            for spec in fields if isinstance(fields, list) else ():
                if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                    names.add(spec["name"])
    return names


def _declared_answers(raw: Mapping[str, Any]) -> dict[str, set[str]]:
    answers: dict[str, set[str]] = {}
    table = raw.get("quizzes")
    for quiz in table.values() if isinstance(table, dict) else ():
        steps = quiz.get("steps", []) if isinstance(quiz, dict) else []
        for step in steps if isinstance(steps, list) else ():
            questions = step.get("questions", []) if isinstance(step, dict) else []
            for question in questions if isinstance(questions, list) else ():
                if not isinstance(question, dict) or not isinstance(question.get("key"), str):
                    continue
                values = answers.setdefault(question["key"], set())
                for answer in question.get("answers", []) or []:
                    if isinstance(answer, dict) and isinstance(answer.get("value"), str):
                        values.add(answer["value"])
    return answers


def _declared_quizzes(raw: Mapping[str, Any]) -> dict[str, QuizIntent]:
    """Per quiz slug, its answers that carry tags or a score (capture checks their
    shape; what is not well formed here is left to its report)."""
    found: dict[str, QuizIntent] = {}
    table = raw.get("quizzes")
    for slug, quiz in sorted(table.items()) if isinstance(table, dict) else ():
        answers: list[QuizAnswerIntent] = []
        steps = quiz.get("steps", []) if isinstance(quiz, dict) else []
        for step in steps if isinstance(steps, list) else ():
            questions = step.get("questions", []) if isinstance(step, dict) else []
            for question in questions if isinstance(questions, list) else ():
                if not isinstance(question, dict) or not isinstance(question.get("key"), str):
                    continue
                for answer in question.get("answers", []) or []:
                    if not isinstance(answer, dict) or not isinstance(answer.get("value"), str):
                        continue
                    tags = answer.get("tags", [])
                    tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
                    score = answer.get("score", 0)
                    if isinstance(score, bool) or not isinstance(score, int | float):
                        score = 0
                    if tags or score:
                        answers.append(
                            QuizAnswerIntent(
                                question["key"], answer["value"], tuple(tags), float(score)
                            )
                        )
        found[str(slug)] = QuizIntent(str(slug), tuple(answers))
    return found


class _Rules:
    """Reads one rule table, problems located by key path."""

    def __init__(self, raw: Mapping[str, Any], where: str, problems: ConfigProblems) -> None:
        self.raw, self.where, self.problems = raw, where, problems

    def add(self, key: str, what: str) -> None:
        self.problems.add(f"{self.where}.{key}", what)

    def unknown(self, known: set[str]) -> None:
        for key in sorted(set(self.raw) - known):
            self.add(key, f"unknown key (known: {', '.join(sorted(known))})")

    def name(self, key: str, pattern: re.Pattern[str] = NAME_RE) -> str:
        value = self.raw.get(key)
        if not isinstance(value, str) or not pattern.match(value):
            self.add(key, "is required: lower-case letters, digits, '_' or '-' (at most 64)")
            return ""
        return value

    def number(self, key: str, *, low: float, high: float, default: float | None = None) -> float:
        value = self.raw.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (low <= value <= high)
        ):
            self.add(key, f"must be a number from {low:g} to {high:g}")
            return default or 0.0
        return float(value)

    def whole(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.add(key, f"must be a whole number from {low} to {high}")
            return default
        return value

    def optional_days(self, key: str, default: float | None = None) -> float | None:
        if key not in self.raw:
            return default
        return self.number(key, low=0.001, high=36_500)


def _gating_purpose(
    scoring: Mapping[str, Any], raw: Mapping[str, Any], problems: ConfigProblems
) -> str:
    purposes = raw.get("purposes", {})
    declared = (
        {k: v for k, v in purposes.items() if isinstance(v, dict)}
        if isinstance(purposes, dict)
        else {}
    )
    key = scoring.get("purpose")
    if key is None:
        profiling = sorted(k for k, v in declared.items() if v.get("category") == "profiling")
        if not profiling:
            problems.add(
                "scoring.purpose",
                "name the purpose that gates scoring (none is of category profiling)",
            )
            return ""
        return str(profiling[0])
    if not isinstance(key, str) or key not in declared:
        problems.add("scoring.purpose", f"no purpose {key!r} in this file")
        return ""
    if declared[key].get("mechanism", "opt-in") != "opt-in":
        problems.add("scoring.purpose", "must be an opt-in purpose: scoring needs a live grant")
    return key


def _thresholds(
    scoring: Mapping[str, Any], lifecycle: Lifecycle, problems: ConfigProblems
) -> tuple[tuple[str, float], ...]:
    raw = scoring.get("thresholds")
    if not isinstance(raw, dict) or not raw:
        problems.add("scoring.thresholds", "is required: a table such as { MQL = 60, SQL = 80 }")
        return ()
    found: list[tuple[str, float]] = []
    for key, value in raw.items():
        stage = lifecycle.parse(key)
        if stage not in lifecycle.threshold_stages:
            names = ", ".join(lifecycle.threshold_stages)
            problems.add(f"scoring.thresholds.{key}", f"not a threshold stage (one of {names})")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            problems.add(f"scoring.thresholds.{key}", "must be a number above 0")
            continue
        assert stage is not None
        found.append((stage, float(value)))
    found.sort(key=lambda item: lifecycle.rank(item[0]))
    for (low_stage, low), (high_stage, high) in itertools.pairwise(found):
        if high <= low:
            problems.add(
                f"scoring.thresholds.{high_stage}",
                f"thresholds out of order: {high_stage} ({high:g}) must be above "
                f"{low_stage} ({low:g}), as it comes later in the lifecycle",
            )
    return tuple(found)


def _handoff(
    scoring: Mapping[str, Any], lifecycle: Lifecycle, problems: ConfigProblems
) -> tuple[str, ...]:
    """Stages whose reaching sends the hand-off webhook (default: the marketing stage
    and the sales hand-off stage)."""
    default = [s for s in (lifecycle.marketing, lifecycle.sales) if s is not None]
    raw = scoring.get("handoff", default)
    stages = [lifecycle.parse(item) for item in raw] if isinstance(raw, list) else [None]
    if any(stage not in lifecycle.beyond_start for stage in stages):
        names = ", ".join(lifecycle.beyond_start)
        problems.add("scoring.handoff", f"must be a list of stages among {names}")
        return ()
    return tuple(sorted({s for s in stages if s is not None}, key=lifecycle.rank))


def _tables(
    scoring: Mapping[str, Any], key: str, problems: ConfigProblems
) -> list[Mapping[str, Any]]:
    value = scoring.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        problems.add(f"scoring.{key}", "must be a list of tables ([[scoring." + key + "]])")
        return []
    return value


def _fit(raw: Mapping[str, Any], where: str, fields: set[str], problems: ConfigProblems) -> FitRule:
    check = _Rules(raw, where, problems)
    check.unknown(FIT_KEYS)
    name = check.name("name")
    field = raw.get("field")
    if not isinstance(field, str) or (field not in fields and field not in BANT_RULE_FIELDS):
        check.add(
            "field",
            f"no form or quiz field {field!r} in this file "
            f"(or one of {', '.join(BANT_RULE_FIELDS)})",
        )
    points = check.number("points", low=-MAX_POINTS, high=MAX_POINTS)
    tests = [key for key in ("equals", "in", "range", "pattern") if key in raw]
    if len(tests) != 1:
        check.add("name", "give exactly one of equals, in, range, pattern")
        return FitRule(name, str(field), points)
    test = tests[0]
    value = raw[test]
    if test == "equals" and isinstance(value, str):
        return FitRule(name, str(field), points, equals=value)
    if (
        test == "in"
        and isinstance(value, list)
        and value
        and all(isinstance(v, str) for v in value)
    ):
        return FitRule(name, str(field), points, one_of=tuple(value))
    if test == "pattern" and isinstance(value, str):
        try:
            re.compile(value)
        except re.error as exc:
            check.add("pattern", f"not a valid regular expression: {exc}")
        return FitRule(name, str(field), points, pattern=value)
    if (
        test == "range"
        and isinstance(value, list)
        and len(value) == 2
        and all(not isinstance(v, bool) and isinstance(v, int | float) for v in value)
        and value[0] <= value[1]
    ):
        return FitRule(name, str(field), points, low=float(value[0]), high=float(value[1]))
    expected = {
        "equals": "a string",
        "in": "a non-empty list of strings",
        "pattern": "a regular expression string",
        "range": "[low, high] numbers with low <= high",
    }
    check.add(test, f"must be {expected[test]}")
    return FitRule(name, str(field), points)


def _behaviour(
    raw: Mapping[str, Any], where: str, half_life: float | None, problems: ConfigProblems
) -> BehaviourRule:
    check = _Rules(raw, where, problems)
    check.unknown(BEHAVIOUR_KEYS)
    return BehaviourRule(
        name=check.name("name"),
        event=check.name("event", EVENT_RE),
        points=check.number("points", low=-MAX_POINTS, high=MAX_POINTS),
        min_count=check.whole("min_count", 1, 1, 10_000),
        max_count=check.whole("max_count", 1, 1, 10_000),
        window_days=check.optional_days("window_days"),
        half_life_days=check.optional_days("half_life_days", half_life),
    )


def _quiz(
    raw: Mapping[str, Any], where: str, answers: dict[str, set[str]], problems: ConfigProblems
) -> QuizRule:
    check = _Rules(raw, where, problems)
    check.unknown(QUIZ_KEYS)
    question, answer = raw.get("question"), raw.get("answer")
    if not isinstance(question, str) or question not in answers:
        check.add("question", f"no quiz question {question!r} in this file")
    elif not isinstance(answer, str) or answer not in answers[question]:
        check.add("answer", f"question {question!r} has no answer {answer!r}")
    return QuizRule(
        check.name("name"),
        str(question),
        str(answer),
        check.number("points", low=-MAX_POINTS, high=MAX_POINTS),
    )


def _quiz_name(check: _Rules, quizzes: Mapping[str, QuizIntent], *, required: bool) -> str | None:
    quiz = check.raw.get("quiz")
    if quiz is None and not required:
        return None
    if not isinstance(quiz, str) or quiz not in quizzes:
        known = ", ".join(sorted(quizzes)) or "none"
        check.add("quiz", f"no quiz {quiz!r} in this file (quizzes: {known})")
        return None
    return quiz


def _tag(
    raw: Mapping[str, Any], where: str, quizzes: Mapping[str, QuizIntent], problems: ConfigProblems
) -> TagRule:
    """``[[scoring.tag]]``: points for an intent tag a kept quiz answer carries."""
    check = _Rules(raw, where, problems)
    check.unknown(TAG_KEYS)
    name = check.name("name")
    quiz = _quiz_name(check, quizzes, required=False)
    tag = raw.get("tag")
    pool = quizzes[quiz].tags if quiz else {t for q in quizzes.values() for t in q.tags}
    if not isinstance(tag, str) or tag not in pool:
        where_from = f"quiz {quiz!r}" if quiz else "this file"
        check.add("tag", f"no answer in {where_from} carries tag {tag!r}")
    points = check.number("points", low=-MAX_POINTS, high=MAX_POINTS)
    return TagRule(name, str(tag), points, quiz)


def _quiz_score(
    raw: Mapping[str, Any], where: str, quizzes: Mapping[str, QuizIntent], problems: ConfigProblems
) -> QuizScoreRule:
    """``[[scoring.quiz_score]]``: points from a quiz's score; either ``points`` for a
    score in ``range = [low, high]``, or the score itself (times ``scale``, at most
    ``cap``)."""
    check = _Rules(raw, where, problems)
    check.unknown(QUIZ_SCORE_KEYS)
    name = check.name("name")
    quiz = _quiz_name(check, quizzes, required=True) or ""
    if quiz and not any(a.score for a in quizzes[quiz].answers):
        check.add("quiz", f"no answer of quiz {quiz!r} has a score: the rule can never score")
    if "points" in raw or "range" in raw:
        for key in ("scale", "cap"):
            if key in raw:
                check.add(key, "give either points with range, or scale/cap, not both")
        points = check.number("points", low=-MAX_POINTS, high=MAX_POINTS)
        bounds = raw.get("range")
        if not (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(not isinstance(v, bool) and isinstance(v, int | float) for v in bounds)
            and bounds[0] <= bounds[1]
        ):
            check.add("range", "must be [low, high] numbers with low <= high")
            return QuizScoreRule(name, quiz, points=points)
        return QuizScoreRule(name, quiz, points=points, low=float(bounds[0]), high=float(bounds[1]))
    scale = check.number("scale", low=-100, high=100, default=1.0)
    cap = check.number("cap", low=-MAX_POINTS, high=MAX_POINTS) if "cap" in raw else None
    return QuizScoreRule(name, quiz, scale=scale, cap=cap)


def _lead_types(
    scoring: Mapping[str, Any], rule_names: set[str], problems: ConfigProblems
) -> tuple[LeadType, ...]:
    """``[[scoring.lead_type]]``: labels a lead holds beside its stage, earned by score
    and rules, or given by hand (``by_hand = true``, then no condition)."""
    found: list[LeadType] = []
    seen: set[str] = set()
    for index, raw in enumerate(_tables(scoring, "lead_type", problems)):
        where = f"scoring.lead_type[{index}]"
        check = _Rules(raw, where, problems)
        check.unknown(LEAD_TYPE_KEYS)
        name = raw.get("name")
        if not isinstance(name, str) or not LEAD_TYPE_RE.match(name):
            check.add("name", "is required: a letter, then letters, digits, '_' or '-' (<= 32)")
            name = ""
        elif name.casefold() in seen:
            check.add("name", f"lead type {name!r} is declared more than once")
        seen.add(str(name).casefold())
        min_score = (
            check.number("min_score", low=-MAX_POINTS * 100, high=MAX_POINTS * 100)
            if "min_score" in raw
            else None
        )
        rules = raw.get("rules", [])
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            check.add("rules", "must be a list of rule names")
            rules = []
        for rule in rules:
            if rule not in rule_names:
                check.add("rules", f"no rule {rule!r} in this model")
        by_hand = raw.get("by_hand", False)
        if not isinstance(by_hand, bool):
            check.add("by_hand", "must be true or false")
        elif by_hand and (min_score is not None or rules):
            check.add("by_hand", "a type given by hand has no min_score or rules")
        elif not by_hand and min_score is None and not rules:
            check.add("name", "give min_score and/or rules, or by_hand = true")
        found.append(LeadType(str(name), min_score, tuple(rules)))
    return tuple(found)


def _temperature(
    scoring: Mapping[str, Any], problems: ConfigProblems
) -> tuple[tuple[str, float], ...]:
    """``[scoring.temperature] cold = 0, warm = 40, hot = 70``: each band's lowest score."""
    table = scoring.get("temperature", {})
    if not isinstance(table, dict):
        problems.add("scoring.temperature", "must be a table such as { cold = 0, warm = 40 }")
        return ()
    found: list[tuple[str, float]] = []
    for name, value in table.items():
        if not NAME_RE.match(name):
            problems.add(f"scoring.temperature.{name}", "a band name is lower-case letters")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            problems.add(f"scoring.temperature.{name}", "must be the band's lowest score")
        else:
            found.append((name, float(value)))
    for (low_name, low), (high_name, high) in itertools.pairwise(found):
        if high <= low:
            problems.add(
                f"scoring.temperature.{high_name}",
                f"bands out of order: {high_name} ({high:g}) must be above {low_name} ({low:g})",
            )
    return tuple(found)


def _stage_events(
    scoring: Mapping[str, Any], lifecycle: Lifecycle, problems: ConfigProblems
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``[scoring.stage_events] SQL = ["demo_requested"]``: events that move a lead to
    a stage at once, whatever its score (forward only)."""
    table = scoring.get("stage_events", {})
    if not isinstance(table, dict):
        problems.add("scoring.stage_events", 'must be a table such as { SQL = ["demo_requested"] }')
        return ()
    found: list[tuple[str, tuple[str, ...]]] = []
    owner: dict[str, str] = {}
    for key, events in table.items():
        where = f"scoring.stage_events.{key}"
        stage = lifecycle.parse(key)
        if stage not in lifecycle.event_stages:
            names = ", ".join(lifecycle.event_stages)
            problems.add(where, f"not a stage an event can reach (one of {names})")
            continue
        assert stage is not None
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) and EVENT_RE.match(e) for e in events)
        ):
            problems.add(where, "must be a non-empty list of event type names")
            continue
        for event in events:
            if event in owner:
                problems.add(where, f"event {event!r} already moves leads to {owner[event]}")
            owner[event] = stage
        found.append((stage, tuple(events)))
    return tuple(sorted(found, key=lambda item: lifecycle.rank(item[0])))


def _rescore_every(scoring: Mapping[str, Any], problems: ConfigProblems) -> float | None:
    """``rescore_every = "6h"``: how stale the scheduled pass lets a decaying score get."""
    if "rescore_every" not in scoring:
        return None
    seconds = parse_duration(scoring["rescore_every"])
    if seconds is None:
        problems.add(
            "scoring.rescore_every",
            'must be a duration such as "30m", "6h" or "1d" (at most 365 days)',
        )
    return seconds


def _free_mail(scoring: Mapping[str, Any], problems: ConfigProblems) -> tuple[str, ...]:
    """``[scoring.accounts] free_mail = [...]``: domains added to the built-in list."""
    table = scoring.get("accounts", {})
    if not isinstance(table, dict):
        problems.add("scoring.accounts", "must be a table")
        return ()
    for key in sorted(set(table) - ACCOUNTS_KEYS):
        problems.add(f"scoring.accounts.{key}", "unknown key (known: free_mail)")
    raw = table.get("free_mail", [])
    if not isinstance(raw, list):
        problems.add("scoring.accounts.free_mail", "must be a list of domains")
        return ()
    found: list[str] = []
    for index, item in enumerate(raw):
        domain = item.strip().lower() if isinstance(item, str) else ""
        if not DOMAIN_RE.match(domain):
            problems.add(f"scoring.accounts.free_mail[{index}]", f"not a domain: {item!r}")
            continue
        found.append(domain)
    return tuple(sorted(set(found)))


def _sla(
    scoring: Mapping[str, Any], lifecycle: Lifecycle, problems: ConfigProblems
) -> tuple[tuple[str, float], ...]:
    """``[scoring.sla] SQL = "24h"``: the response time per hand-off stage."""
    table = scoring.get("sla", {})
    if not isinstance(table, dict):
        problems.add("scoring.sla", 'must be a table such as { SQL = "24h" }')
        return ()
    found: list[tuple[str, float]] = []
    for key, value in table.items():
        stage = lifecycle.parse(key)
        if stage not in lifecycle.beyond_start:
            names = ", ".join(lifecycle.beyond_start)
            problems.add(f"scoring.sla.{key}", f"not a hand-off stage (one of {names})")
            continue
        seconds = parse_duration(value)
        if seconds is None:
            problems.add(
                f"scoring.sla.{key}",
                'must be a duration such as "30m", "24h" or "3d" (at most 365 days)',
            )
            continue
        assert stage is not None
        found.append((stage, seconds))
    return tuple(sorted(found, key=lambda item: lifecycle.rank(item[0])))


def parse(
    raw: Mapping[str, object], locales: tuple[str, ...], problems: ConfigProblems
) -> SiteModel | None:
    """Check ``[scoring]``, adding every problem to ``problems``; ``None`` if absent."""
    scoring = raw.get("scoring")
    if scoring is None:
        return None
    if not isinstance(scoring, dict):
        problems.add("scoring", "must be a table")
        return None
    for key in sorted(set(scoring) - MODEL_KEYS):
        problems.add(f"scoring.{key}", f"unknown key (known: {', '.join(sorted(MODEL_KEYS))})")
    file: Mapping[str, Any] = raw
    purpose = _gating_purpose(scoring, file, problems)
    top = _Rules(scoring, "scoring", problems)
    half_life = top.optional_days("half_life_days")
    extra = scoring.get("event_types", [])
    if not isinstance(extra, list) or not all(
        isinstance(v, str) and EVENT_RE.match(v) for v in extra
    ):
        problems.add("scoring.event_types", "must be a list of event type names")
        extra = []
    fields, answers = _declared_fields(file), _declared_answers(file)
    quizzes = _declared_quizzes(file)
    lifecycle, moves = lifecycle_site.parse(scoring, problems)
    model = ScoringModel(
        purpose=purpose,
        thresholds=_thresholds(scoring, lifecycle, problems),
        handoff=_handoff(scoring, lifecycle, problems),
        fit=tuple(
            _fit(r, f"scoring.fit[{i}]", fields, problems)
            for i, r in enumerate(_tables(scoring, "fit", problems))
        ),
        behaviour=tuple(
            _behaviour(r, f"scoring.behaviour[{i}]", half_life, problems)
            for i, r in enumerate(_tables(scoring, "behaviour", problems))
        ),
        quiz=tuple(
            _quiz(r, f"scoring.quiz[{i}]", answers, problems)
            for i, r in enumerate(_tables(scoring, "quiz", problems))
        ),
        extra_event_types=tuple(extra),
        free_mail=_free_mail(scoring, problems),
        sla=_sla(scoring, lifecycle, problems),
        tags=tuple(
            _tag(r, f"scoring.tag[{i}]", quizzes, problems)
            for i, r in enumerate(_tables(scoring, "tag", problems))
        ),
        quiz_scores=tuple(
            _quiz_score(r, f"scoring.quiz_score[{i}]", quizzes, problems)
            for i, r in enumerate(_tables(scoring, "quiz_score", problems))
        ),
        quizzes=tuple(q for q in quizzes.values() if q.answers),
        rescore_every=_rescore_every(scoring, problems),
        demote_after_days=top.optional_days("demote_after_days"),
        temperature=_temperature(scoring, problems),
        lifecycle=lifecycle,
    )
    names = [r.name for r in model.fit if r.name] + [r.name for r in model.behaviour if r.name]
    names += [r.name for r in model.quiz if r.name]
    names += [r.name for r in model.tags if r.name]
    names += [r.name for r in model.quiz_scores if r.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add("scoring", f"rule name {name!r} is used more than once")
    lead_types = _lead_types(scoring, set(names), problems)
    next_actions = actions.parse(
        _tables(scoring, "next_action", problems),
        lead_types={t.name for t in lead_types},
        tags={tag for quiz in quizzes.values() for tag in quiz.tags},
        bands={name for name, _ in model.temperature},
        max_score=_max_score(model),
        stages=lifecycle.stages,
        problems=problems,
    )
    stage_events = _stage_events(scoring, lifecycle, problems)
    if lead_types or next_actions or stage_events:
        model = dataclasses.replace(
            model, lead_types=lead_types, next_actions=next_actions, stage_events=stage_events
        )
    return SiteModel(model, moves)


def _max_score(model: ScoringModel) -> float:
    """An upper bound of any lead's score under ``model`` (every rule at its most)."""
    most = 0.0
    for points in [r.points for r in model.fit] + [r.points for r in model.quiz]:
        most += max(points, 0.0)
    most += sum(max(r.points, 0.0) for r in model.tags)
    most += sum(max(r.points, 0.0) * r.max_count for r in model.behaviour)
    for rule in model.quiz_scores:
        intent = model.quiz_intent(rule.quiz)
        top = sum(max(a.score, 0.0) for a in intent.answers) if intent else 0.0
        if rule.points is not None:
            most += max(rule.points, 0.0)
        else:
            value = max(top * rule.scale, 0.0)
            most += min(value, rule.cap) if rule.cap is not None else value
    return float(most)


def apply(session: Session, declared: SiteModel | None) -> list[str]:
    """Store the declared model as a new version if it differs from the one in force;
    a changed lifecycle first moves the leads at stages it drops
    (:func:`scoring.lifecycle_site.migrate`, which may refuse the load)."""
    if declared is None:
        return []
    model = declared.model
    digest = model.sha256
    latest = session.execute(
        select(ScoringModelVersion.sha256, ScoringModelVersion.definition)
        .order_by(ScoringModelVersion.id.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.sha256 == digest:
        return []
    before = model_from_json(latest.definition) if latest is not None else None
    moved = lifecycle_site.migrate(
        session, before.lifecycle if before else None, model.lifecycle, declared.moves
    )
    row = ScoringModelVersion(sha256=digest, definition=model.canonical.decode())
    session.add(row)
    session.flush()
    changes = [
        f"scoring model: version {row.id} (sha256 {digest[:12]}…); "
        "run `zeroparty score` to rescore every permissioned lead",
        *moved,
    ]
    if before is not None:
        # What it does to the leads scored so far (`site load --check` shows it first).
        moves = preview.stage_moves(session.connection(), model)
        changes.append(preview.describe(moves, model, _rules_changed(before, model)))
    return changes


def _rules_changed(before: ScoringModel, after: ScoringModel) -> bool:
    def rules(model: ScoringModel) -> tuple[object, ...]:
        return (model.fit, model.behaviour, model.quiz, model.tags, model.quiz_scores)

    return rules(before) != rules(after)
