"""Capture's part of ``site.toml``: the ``forms`` and ``quizzes`` tables.

:func:`parse` checks everything (every problem located by key path) and builds
:class:`~capture.definitions.Definition` objects; :func:`apply` publishes each one whose
canonical form changed as a new immutable version. Forms and quizzes share one slug
space (both are served at ``/f/SLUG``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from capture.definitions import (
    CHOICE_TYPES,
    COMPANY_SIZES,
    DEFAULT_MAX_LENGTH,
    DEFAULT_SUBMIT_LABEL,
    DEFAULT_THANK_YOU,
    INDUSTRIES,
    AnswerSpec,
    Choice,
    Definition,
    DefinitionKind,
    FieldSpec,
    FieldType,
    OutcomeSpec,
    QuestionSpec,
    RateLimit,
    StepSpec,
    definition_sha256,
    to_json,
)
from capture.models import DefinitionVersion
from zeroparty import i18n
from zeroparty.config_errors import ConfigProblems

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
MAX_FIELD_LENGTH = 10_000
RESERVED_NAMES = frozenset({"consent"})

COMMON_KEYS = {
    "title",
    "intro",
    "locale",
    "locales",
    "fields",
    "consent",
    "allowed_origins",
    "thank_you",
    "redirect",
    "double_opt_in",
    "min_fill_seconds",
    "rate_limit",
    "submit_label",
}
QUIZ_KEYS = COMMON_KEYS | {"steps", "outcomes", "default_outcome", "answer_purposes"}
FIELD_KEYS = {
    "name",
    "type",
    "label",
    "help",
    "required",
    "max_length",
    "purposes",
    "needed",
    "choices",
}
STEP_KEYS = {"key", "title", "questions", "next", "outcome"}
QUESTION_KEYS = {"key", "text", "help", "multiple", "required", "purposes", "answers"}
ANSWER_KEYS = {"value", "label", "next", "outcome", "tags", "score"}


class _Texts:
    """A definition's texts in each of its languages, collected while it is read.

    A text is a string (a form in one language) or a table of language → text that
    names every language of the form (``label = { en = "Email", de = "E-Mail" }``)."""

    def __init__(self, prefix: str, locale: str, locales: tuple[str, ...]) -> None:
        self.prefix = prefix
        self.locale = locale
        self.locales = locales
        self.by_locale: dict[str, dict[str, str]] = {lang: {} for lang in locales}

    def path(self, where: str, key: str) -> str:
        inside = where[len(self.prefix) :].lstrip(".")
        return f"{inside}.{key}" if inside else key

    def example(self) -> str:
        return "{ " + ", ".join(f'{lang} = "…"' for lang in self.locales) + " }"

    def read(self, check: _Checker, key: str, value: object, limit: int) -> str | None:
        """The text in the definition's own language; ``None`` when ``value`` is not a
        table (a plain string), which only a form in one language may give."""
        if not isinstance(value, dict):
            if len(self.locales) > 1:
                check.add(key, f"this form is in {list(self.locales)}: give the text in "
                          f"each, as a table {self.example()}")  # fmt: skip
            return None
        for lang in sorted(set(value) - set(self.locales)):
            check.add(f"{key}.{lang}", f"not one of this form's locales {list(self.locales)}")
        own = ""
        for lang in self.locales:
            text = value.get(lang)
            if not isinstance(text, str) or not text.strip():
                check.add(key, f"no text in {lang!r}: give {self.example()}")
                continue
            if len(text) > limit:
                check.add(f"{key}.{lang}", f"at most {limit} characters")
            self.by_locale[lang][self.path(check.where, key)] = text.strip()
            if lang == self.locale:
                own = text.strip()
        return own

    def translations(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        if len(self.locales) < 2:
            return ()
        return tuple(
            (lang, tuple(sorted(texts.items())))
            for lang, texts in sorted(self.by_locale.items())
            if lang != self.locale
        )


class _Checker:
    """Reads one table with problems located by key path."""

    def __init__(
        self,
        raw: Mapping[str, Any],
        where: str,
        problems: ConfigProblems,
        texts: _Texts | None = None,
    ) -> None:
        self.raw = raw
        self.where = where
        self.problems = problems
        self.texts = texts

    def child(self, raw: Mapping[str, Any], where: str) -> _Checker:
        return _Checker(raw, where, self.problems, self.texts)

    def words(self, key: str, *, default: str | None = None, limit: int = 200) -> str:
        """A text people read: a string, or a table with the text in each of the form's
        languages (see :class:`_Texts`)."""
        if self.texts is not None and key in self.raw:
            own = self.texts.read(self, key, self.raw[key], limit)
            if own is not None:
                return own
        return self.text(key, default=default, limit=limit)

    def add(self, key: str, what: str) -> None:
        self.problems.add(f"{self.where}.{key}" if key else self.where, what)

    def unknown(self, known: set[str]) -> None:
        for key in sorted(set(self.raw) - known):
            self.add(key, f"unknown key (known: {', '.join(sorted(known))})")

    def text(self, key: str, *, default: str | None = None, limit: int = 200) -> str:
        value = self.raw.get(key, default)
        if value is None:
            self.add(key, "is required")
            return ""
        if not isinstance(value, str):
            self.add(key, "must be a string")
            return ""
        if len(value) > limit:
            self.add(key, f"at most {limit} characters")
        return value.strip()

    def optional_text(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(key, "must be a non-empty string")
            return None
        return value.strip()

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            self.add(key, "must be true or false")
            return default
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.add(key, f"must be a whole number from {low} to {high}")
            return default
        return value

    def strings(self, key: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(key, "must be a list of strings")
            return ()
        for item in value:
            if pattern is not None and not pattern.match(item):
                self.add(key, f"{item!r} is not valid here")
        return tuple(value)

    def tables(self, key: str) -> list[Mapping[str, Any]]:
        value = self.raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.add(key, "must be a list of tables")
            return []
        return value


class _Context:
    """What a definition may refer to: the purposes declared in the same file."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        purposes = raw.get("purposes", {})
        self.purposes: dict[str, Mapping[str, Any]] = (
            {k: v for k, v in purposes.items() if isinstance(v, dict)}
            if isinstance(purposes, dict)
            else {}
        )

    def check_purposes(self, check: _Checker, key: str, keys: tuple[str, ...]) -> None:
        for purpose in keys:
            if purpose not in self.purposes:
                check.add(key, f"no purpose {purpose!r} in this file")


def _choice_label(check: _Checker, index: int, item: Mapping[str, Any]) -> str:
    if "label" not in item:
        return str(item["value"])
    return check.child(item, f"{check.where}.choices[{index}]").words("label")


def _choices(check: _Checker, field_type: FieldType) -> tuple[Choice, ...]:
    raw = check.raw.get("choices")
    if raw is None:
        if field_type is FieldType.COMPANY_SIZE:
            return tuple(Choice(v, label) for v, label in COMPANY_SIZES)
        if field_type is FieldType.INDUSTRY:
            return tuple(Choice(v, label) for v, label in INDUSTRIES)
        if field_type in CHOICE_TYPES:
            check.add("choices", "a list of choices is required for this field type")
        return ()
    if field_type not in CHOICE_TYPES:
        check.add("choices", f"only choice fields have choices, not {field_type.value}")
        return ()
    choices: list[Choice] = []
    if not isinstance(raw, list) or not raw:
        check.add("choices", "must be a non-empty list of strings or {value, label} tables")
        return ()
    for index, item in enumerate(raw):
        if isinstance(item, str) and item.strip():
            if check.texts is not None and len(check.texts.locales) > 1:
                check.add(f"choices[{index}]", "this form is in several languages: give "
                          f"{{ value = ..., label = {check.texts.example()} }}")  # fmt: skip
            choices.append(Choice(item.strip(), item.strip()))
        elif isinstance(item, dict) and isinstance(item.get("value"), str):
            choices.append(Choice(item["value"], _choice_label(check, index, item)))
        else:
            check.add("choices", f"{item!r} is not a string or {{value, label}} table")
    values = [c.value for c in choices]
    if len(set(values)) != len(values):
        check.add("choices", "values must be unique")
    return tuple(choices)


def _field(
    raw: Mapping[str, Any], where: str, context: _Context, parent: _Checker
) -> FieldSpec | None:
    check = parent.child(raw, where)
    check.unknown(FIELD_KEYS)
    name = check.text("name", limit=64)
    if name and (not NAME_RE.match(name) or name in RESERVED_NAMES):
        check.add("name", "lower-case letters, digits and '_', starting with a letter")
    type_name = raw.get("type", "text")
    try:
        field_type = FieldType(type_name)
    except ValueError:
        check.add("type", f"must be one of {', '.join(t.value for t in FieldType)}")
        return None
    purposes = check.strings("purposes")
    context.check_purposes(check, "purposes", purposes)
    needed = check.flag("needed", field_type is FieldType.EMAIL)
    if field_type is FieldType.EMAIL and not needed and not purposes:
        check.add("needed", "an email field must be needed or serve a purpose")
    if needed and field_type is FieldType.HIDDEN:
        # needed = true only where the request itself needs the value (issue 16): a
        # value the visitor never sees or types is not part of their request.
        check.add("needed", "a hidden field is not part of the visitor's request: it cannot "
                  "be needed (let it serve a purpose instead)")  # fmt: skip
    default_length = DEFAULT_MAX_LENGTH.get(field_type, 200)
    return FieldSpec(
        name=name,
        type=field_type,
        label=check.words("label", default=name.replace("_", " ").capitalize() or None),
        help=check.words("help", default="", limit=500),
        required=check.flag("required", field_type is FieldType.EMAIL),
        max_length=check.integer("max_length", default_length, 1, MAX_FIELD_LENGTH),
        purposes=purposes,
        needed=needed,
        choices=_choices(check, field_type),
    )


def _common(
    slug: str,
    raw: Mapping[str, Any],
    kind: DefinitionKind,
    locales: tuple[str, ...],
    context: _Context,
    problems: ConfigProblems,
) -> dict[str, Any]:
    where = f"{'forms' if kind is DefinitionKind.FORM else 'quizzes'}.{slug}"
    check = _Checker(raw, where, problems)
    check.unknown(QUIZ_KEYS if kind is DefinitionKind.QUIZ else COMMON_KEYS)
    if not SLUG_RE.match(slug):
        check.add("", "slugs are lower-case letters, digits and '-'")
    locale = check.text("locale", default=locales[0] if locales else "en", limit=16)
    if locales and locale not in locales:
        check.add("locale", f"not in site.locales {list(locales)}")
    offered = _form_locales(check, locale, locales)
    check.texts = _Texts(where, locale, offered)
    fields: list[FieldSpec] = []
    for index, item in enumerate(check.tables("fields")):
        spec = _field(item, f"{where}.fields[{index}]", context, check)
        if spec is not None:
            fields.append(spec)
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        check.add("fields", "field names must be unique")
    if kind is DefinitionKind.FORM and not any(f.type is FieldType.EMAIL for f in fields):
        check.add("fields", "a form needs an email field (leads are matched by email)")
    if sum(f.type is FieldType.EMAIL for f in fields) > 1:
        check.add("fields", "at most one email field")
    consent = check.strings("consent")
    context.check_purposes(check, "consent", consent)
    for purpose in consent:
        notices = context.purposes.get(purpose, {}).get("notice", {})
        for lang in offered:
            if purpose in context.purposes and lang not in notices:
                check.add("consent", f"purpose {purpose!r} has no notice text in {lang!r}")
    if len(set(consent)) != len(consent):
        check.add("consent", "one box per purpose: list each purpose once")
    origins = check.strings("allowed_origins", ORIGIN_RE)
    doi_raw = raw.get("double_opt_in", {})
    overrides: list[tuple[str, bool]] = []
    if not isinstance(doi_raw, dict):
        check.add("double_opt_in", "must be a table of purpose = true|false")
    else:
        for purpose, value in sorted(doi_raw.items()):
            if purpose not in consent:
                check.add(f"double_opt_in.{purpose}", "not one of this form's consent purposes")
            if not isinstance(value, bool):
                check.add(f"double_opt_in.{purpose}", "must be true or false")
            else:
                overrides.append((purpose, value))
    redirect = check.optional_text("redirect")
    if redirect is not None and not redirect.startswith(("https://", "http://")):
        check.add("redirect", "must be an absolute http(s) URL")
    rate_raw = raw.get("rate_limit", {})
    rate = RateLimit()
    if not isinstance(rate_raw, dict):
        check.add("rate_limit", "must be a table {count, window_seconds}")
    else:
        rate_check = _Checker(rate_raw, f"{where}.rate_limit", problems)
        rate_check.unknown({"count", "window_seconds"})
        rate = RateLimit(
            count=rate_check.integer("count", rate.count, 1, 1_000_000),
            window_seconds=rate_check.integer("window_seconds", rate.window_seconds, 1, 86_400),
        )
    min_fill = raw.get("min_fill_seconds", 2.0)
    if (
        isinstance(min_fill, bool)
        or not isinstance(min_fill, int | float)
        or not 0 <= min_fill <= 600
    ):
        check.add("min_fill_seconds", "must be a number of seconds from 0 to 600")
        min_fill = 2.0
    return {
        "slug": slug,
        "kind": kind,
        "title": check.words("title"),
        "intro": check.words("intro", default="", limit=2000),
        "locale": locale,
        "locales": offered if len(offered) > 1 else (),
        "texts": check.texts,
        "fields": tuple(fields),
        "consent": consent,
        "submit_label": check.words("submit_label", default=DEFAULT_SUBMIT_LABEL, limit=60),
        "allowed_origins": origins,
        "thank_you": check.words("thank_you", default=DEFAULT_THANK_YOU, limit=2000),
        "redirect": redirect,
        "double_opt_in": tuple(overrides),
        "min_fill_seconds": float(min_fill),
        "rate_limit": rate,
    }


def _form_locales(check: _Checker, locale: str, site_locales: tuple[str, ...]) -> tuple[str, ...]:
    """The languages a form is offered in (``locales``, its own ``locale`` first): each
    one of the site's, each with a catalogue for the page's own texts."""
    if "locales" not in check.raw:
        return (locale,)
    offered = check.strings("locales")
    if not offered:
        check.add("locales", 'must be a non-empty list of locales such as ["en", "de"]')
        return (locale,)
    if locale not in offered:
        check.add("locales", f"must name the form's own locale {locale!r}")
    if len(set(offered)) != len(offered):
        check.add("locales", "list each language once")
    speakable = i18n.languages()
    for lang in offered:
        if site_locales and lang not in site_locales:
            check.add("locales", f"{lang!r} is not in site.locales {list(site_locales)}")
        elif i18n.primary(lang) not in speakable:
            check.add("locales", f"{lang!r} has no catalogue (languages with one: "
                      f"{', '.join(sorted(speakable))}; see README: Languages)")  # fmt: skip
    return (locale, *dict.fromkeys(lang for lang in offered if lang != locale))


def _answers(check: _Checker) -> tuple[AnswerSpec, ...]:
    answers: list[AnswerSpec] = []
    for index, item in enumerate(check.tables("answers")):
        a = check.child(item, f"{check.where}.answers[{index}]")
        a.unknown(ANSWER_KEYS)
        value = a.text("value", limit=64)
        answers.append(
            AnswerSpec(
                value=value,
                label=a.words("label", default=value or None),
                next=a.optional_text("next"),
                outcome=a.optional_text("outcome"),
                tags=a.strings("tags", NAME_RE),
                score=a.integer("score", 0, -1000, 1000),
            )
        )
    if not answers:
        check.add("answers", "at least one answer is required")
    values = [a.value for a in answers]
    if len(set(values)) != len(values):
        check.add("answers", "answer values must be unique within a question")
    return tuple(answers)


def _quiz(
    slug: str,
    raw: Mapping[str, Any],
    locales: tuple[str, ...],
    context: _Context,
    problems: ConfigProblems,
) -> Definition:
    where = f"quizzes.{slug}"
    values = _common(slug, raw, DefinitionKind.QUIZ, locales, context, problems)
    texts: _Texts = values.pop("texts")
    check = _Checker(raw, where, problems, texts)
    answer_purposes = check.strings("answer_purposes")
    context.check_purposes(check, "answer_purposes", answer_purposes)
    outcomes: list[OutcomeSpec] = []
    outcomes_raw = raw.get("outcomes", {})
    if not isinstance(outcomes_raw, dict) or not outcomes_raw:
        check.add("outcomes", "a table of outcomes (result screens) is required")
        outcomes_raw = {}
    for key, item in outcomes_raw.items():
        o = check.child(item if isinstance(item, dict) else {}, f"{where}.outcomes.{key}")
        o.unknown({"title", "text"})
        if not NAME_RE.match(key):
            o.add("", "outcome keys are lower-case letters, digits and '_'")
        outcomes.append(OutcomeSpec(key, o.words("title"), o.words("text", limit=4000)))
    steps: list[StepSpec] = []
    for index, item in enumerate(check.tables("steps")):
        s = check.child(item, f"{where}.steps[{index}]")
        s.unknown(STEP_KEYS)
        questions: list[QuestionSpec] = []
        for q_index, q_raw in enumerate(s.tables("questions")):
            q = s.child(q_raw, f"{s.where}.questions[{q_index}]")
            q.unknown(QUESTION_KEYS)
            key = q.text("key", limit=64)
            if key and (not NAME_RE.match(key) or key in RESERVED_NAMES):
                q.add("key", "lower-case letters, digits and '_', starting with a letter")
            purposes = q.strings("purposes")
            context.check_purposes(q, "purposes", purposes)
            questions.append(
                QuestionSpec(
                    key=key,
                    text=q.words("text", limit=500),
                    answers=_answers(q),
                    multiple=q.flag("multiple", False),
                    required=q.flag("required", True),
                    help=q.words("help", default="", limit=500),
                    purposes=purposes,
                )
            )
        if not questions:
            s.add("questions", "at least one question is required")
        steps.append(
            StepSpec(
                key=s.text("key", limit=64),
                title=s.words("title", default=""),
                questions=tuple(questions),
                next=s.optional_text("next"),
                outcome=s.optional_text("outcome"),
            )
        )
    if not steps:
        check.add("steps", "at least one step is required")
    default_outcome = check.optional_text("default_outcome")
    _check_branches(where, steps, {o.key for o in outcomes}, default_outcome, problems)
    names = {f.name for f in values["fields"]} | {"consent"}
    for question in (q for step in steps for q in step.questions):
        if question.key in names:
            problems.add(where, f"question key {question.key!r} clashes with a field name")
        names.add(question.key)
    return Definition(
        **values,
        steps=tuple(steps),
        outcomes=tuple(outcomes),
        default_outcome=default_outcome,
        answer_purposes=answer_purposes,
        translations=texts.translations(),
    )


def _check_branches(
    where: str,
    steps: list[StepSpec],
    outcomes: set[str],
    default_outcome: str | None,
    problems: ConfigProblems,
) -> None:
    """Branches only lead forward (so every walk ends) to steps and outcomes that exist."""
    order = {step.key: index for index, step in enumerate(steps)}
    if len(order) != len(steps):
        problems.add(f"{where}.steps", "step keys must be unique")
    if default_outcome is not None and default_outcome not in outcomes:
        problems.add(f"{where}.default_outcome", f"no outcome {default_outcome!r}")
    if default_outcome is None and steps and steps[-1].outcome is None:
        problems.add(f"{where}.default_outcome", "required unless the last step names an outcome")
    for index, step in enumerate(steps):
        targets: list[tuple[str, str | None, str | None]] = [
            (f"steps[{index}]", step.next, step.outcome)
        ]
        for question in step.questions:
            targets += [
                (f"steps[{index}].{question.key}.{a.value}", a.next, a.outcome)
                for a in question.answers
            ]
        for path, next_step, outcome in targets:
            if next_step is not None and order.get(next_step, -1) <= index:
                problems.add(f"{where}.{path}.next", f"{next_step!r} is not a later step")
            if outcome is not None and outcome not in outcomes:
                problems.add(f"{where}.{path}.outcome", f"no outcome {outcome!r}")


def parse(
    raw: Mapping[str, object], locales: tuple[str, ...], problems: ConfigProblems
) -> tuple[Definition, ...]:
    """Check the ``forms`` and ``quizzes`` tables, adding every problem to ``problems``."""
    context = _Context(raw)
    definitions: list[Definition] = []
    for section, kind in (("forms", DefinitionKind.FORM), ("quizzes", DefinitionKind.QUIZ)):
        table = raw.get(section, {})
        if not isinstance(table, dict):
            problems.add(section, "must be a table")
            continue
        for slug, item in table.items():
            if not isinstance(item, dict):
                problems.add(f"{section}.{slug}", "must be a table")
            elif kind is DefinitionKind.FORM:
                values = _common(slug, item, kind, locales, context, problems)
                texts: _Texts = values.pop("texts")
                definitions.append(Definition(**values, translations=texts.translations()))
            else:
                definitions.append(_quiz(slug, item, locales, context, problems))
    slugs = [d.slug for d in definitions]
    for slug in sorted({s for s in slugs if slugs.count(s) > 1}):
        problems.add(f"quizzes.{slug}", "a form and a quiz cannot share a slug")
    return tuple(definitions)


def apply(session: Session, definitions: tuple[Definition, ...]) -> list[str]:
    """Publish every definition that changed as a new version; returns the changes."""
    changes: list[str] = []
    for definition in definitions:
        digest = definition_sha256(definition)
        latest = session.execute(
            select(DefinitionVersion.sha256, DefinitionVersion.version)
            .where(DefinitionVersion.slug == definition.slug)
            .order_by(DefinitionVersion.version.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.sha256 == digest:
            continue
        version = (
            session.execute(
                select(func.coalesce(func.max(DefinitionVersion.version), 0)).where(
                    DefinitionVersion.slug == definition.slug
                )
            ).scalar_one()
            + 1
        )
        session.add(
            DefinitionVersion(
                slug=definition.slug,
                kind=definition.kind.value,
                version=version,
                definition=to_json(definition).decode(),
                sha256=digest,
            )
        )
        changes.append(
            f"{definition.kind.value} {definition.slug}: version {version} (sha256 {digest[:12]}…)"
        )
        changes.extend(needed_reasons(definition))
    session.flush()
    return changes


def needed_reasons(definition: Definition) -> list[str]:
    """Why each ``needed = true`` field of a definition may be kept without any consent
    (issue 16): the request itself needs it (GDPR Art. 6(1)(b)), and it is kept for the
    request only (``site load`` prints these lines with a new version)."""
    lines: list[str] = []
    for spec in definition.fields:
        if not spec.needed:
            continue
        if spec.type is FieldType.EMAIL:
            why = "the address the request is answered at and any confirmation is sent to"
        elif spec.required:
            why = "required to send the request, which cannot be answered without it"
        else:
            why = "given by the visitor so the request can be answered as asked (optional)"
        lines.append(
            f"  {definition.kind.value} {definition.slug}: field {spec.name} kept without "
            f"consent (needed = true): {why}"
        )
    return lines
