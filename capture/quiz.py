"""Walking a quiz: from the first step along the branches the answers choose.

Branches only lead forward (checked when the site file is loaded), so a walk always
ends: at a step still to be answered, or at an outcome. The same walk serves the
step-by-step pages (no JavaScript needed) and the final submission, so what is kept
is exactly what the visitor saw and answered; answers to questions off the path are
dropped, never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from capture.definitions import Definition, OutcomeSpec, QuestionSpec, StepSpec
from zeroparty.i18n import N_


@dataclass(frozen=True, slots=True)
class QuizPath:
    """Where a walk ended. ``current`` is the step to show (``None`` once an outcome is
    reached); ``errors`` name questions on the path that were answered wrongly."""

    visited: tuple[StepSpec, ...]
    current: StepSpec | None
    outcome: OutcomeSpec | None
    answers: Mapping[str, tuple[str, ...]]
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def tags(self) -> tuple[str, ...]:
        tags: dict[str, None] = {}
        for question, values in self._chosen():
            for value in values:
                answer = question.answer(value)
                if answer is not None:
                    tags.update(dict.fromkeys(answer.tags))
        return tuple(tags)

    @property
    def score(self) -> int:
        total = 0
        for question, values in self._chosen():
            for value in values:
                answer = question.answer(value)
                total += answer.score if answer is not None else 0
        return total

    def _chosen(self) -> list[tuple[QuestionSpec, tuple[str, ...]]]:
        return [
            (q, self.answers[q.key])
            for step in self.visited
            for q in step.questions
            if q.key in self.answers
        ]


def _check(question: QuestionSpec, values: tuple[str, ...]) -> str | None:
    if not values:
        return N_("Choose an answer") if question.required else None
    if len(values) > 1 and not question.multiple:
        return N_("Choose one answer")
    if any(question.answer(v) is None for v in values):
        return N_("Choose one of the answers shown")
    return None


def _transition(
    definition: Definition, index: int, step: StepSpec, answers: Mapping[str, tuple[str, ...]]
) -> tuple[StepSpec | None, OutcomeSpec | None]:
    """Where ``step`` leads: the first chosen answer with a branch, else the step's own
    ``next``/``outcome``, else the following step, else the default outcome."""
    for question in step.questions:
        for value in answers.get(question.key, ()):
            answer = question.answer(value)
            if answer is None:
                continue
            if answer.outcome is not None:
                return None, definition.outcome_named(answer.outcome)
            if answer.next is not None:
                return definition.step_named(answer.next), None
    if step.outcome is not None:
        return None, definition.outcome_named(step.outcome)
    if step.next is not None:
        return definition.step_named(step.next), None
    if index + 1 < len(definition.steps):
        return definition.steps[index + 1], None
    assert definition.default_outcome is not None  # checked when the file was loaded
    return None, definition.outcome_named(definition.default_outcome)


def walk(
    definition: Definition, answers: Mapping[str, tuple[str, ...]], until: str | None = None
) -> QuizPath:
    """Follow the answers from the first step.

    ``until`` is the step the visitor has just answered: the walk stops at the step
    after it (to be shown next). ``None`` walks as far as the answers go (a final
    submission must reach an outcome).
    """
    visited: list[StepSpec] = []
    kept: dict[str, tuple[str, ...]] = {}
    step: StepSpec | None = definition.steps[0]
    passed_until = False
    while step is not None:
        if passed_until:
            return QuizPath(tuple(visited), step, None, kept)
        errors = {}
        for question in step.questions:
            values = answers.get(question.key, ())
            problem = _check(question, values)
            if problem is not None:
                errors[question.key] = problem
            elif values:
                kept[question.key] = values
        if errors:
            return QuizPath(tuple(visited), step, None, kept, errors)
        visited.append(step)
        passed_until = step.key == until
        index = definition.steps.index(step)
        step, outcome = _transition(definition, index, step, answers)
        if outcome is not None:
            return QuizPath(tuple(visited), None, outcome, kept)
    raise AssertionError("unreachable: every walk ends at a step or an outcome")


def step_back(
    definition: Definition, answers: Mapping[str, tuple[str, ...]], at: str | None
) -> QuizPath:
    """The step before ``at`` on the visitor's path, its answers kept (``Back``)."""
    path = walk(definition, answers, at)
    visited = list(path.visited)
    keys = [step.key for step in visited]
    before = visited[: keys.index(at)] if at in keys else visited
    if not before:
        return QuizPath((), definition.steps[0], None, path.answers)
    return QuizPath(tuple(before[:-1]), before[-1], None, path.answers)
