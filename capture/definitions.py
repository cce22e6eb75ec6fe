"""What a form or quiz is: fields, consent boxes, steps, branches, outcomes.

A :class:`Definition` is plain, immutable data. Its canonical JSON (:func:`to_json`) is
what a published version stores, and its SHA-256 is the version's identity, like a
notice text's: a changed definition is a new version, never an edit of the old one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import orjson

from zeroparty.i18n import N_, gettext


class FieldType(StrEnum):
    EMAIL = "email"
    TEXT = "text"
    NAME = "name"
    COMPANY = "company"
    JOB_TITLE = "job_title"
    COMPANY_SIZE = "company_size"
    INDUSTRY = "industry"
    TEXTAREA = "textarea"
    CHOICE = "choice"
    """One of a list, as a drop-down."""
    RADIO = "radio"
    """One of a list, as radio buttons."""
    CHECKBOXES = "checkboxes"
    """Any of a list, as check boxes (``checkbox-multi``)."""
    HIDDEN = "hidden"
    """Filled from the page's query string (``utm_source`` …), never shown."""


class DefinitionKind(StrEnum):
    FORM = "form"
    QUIZ = "quiz"


CHOICE_TYPES = frozenset(
    {
        FieldType.CHOICE,
        FieldType.RADIO,
        FieldType.CHECKBOXES,
        FieldType.COMPANY_SIZE,
        FieldType.INDUSTRY,
    }
)

DEFAULT_MAX_LENGTH = {FieldType.EMAIL: 320, FieldType.TEXTAREA: 2000, FieldType.HIDDEN: 200}
AUTOCOMPLETE = {
    FieldType.EMAIL: "email",
    FieldType.NAME: "name",
    FieldType.COMPANY: "organization",
    FieldType.JOB_TITLE: "organization-title",
}
INPUT_TYPE = {FieldType.EMAIL: "email"}

# Built-in texts: English in a definition, translated by the catalogue where shown.
COMPANY_SIZES = (
    ("1-10", N_("1 to 10 people")),
    ("11-50", N_("11 to 50 people")),
    ("51-200", N_("51 to 200 people")),
    ("201-1000", N_("201 to 1,000 people")),
    ("1001+", N_("More than 1,000 people")),
)
INDUSTRIES = (
    ("software", N_("Software and internet")),
    ("finance", N_("Finance and insurance")),
    ("retail", N_("Retail and e-commerce")),
    ("manufacturing", N_("Manufacturing")),
    ("health", N_("Health care")),
    ("public", N_("Public sector and education")),
    ("other", N_("Other")),
)
DEFAULT_SUBMIT_LABEL = N_("Submit")
DEFAULT_THANK_YOU = N_("Thank you. We have received your details.")


@dataclass(frozen=True, slots=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One input. ``purposes``: what a kept answer may be used for; ``needed``: kept
    because the request itself needs it (the email a confirmation goes to), even when
    no purpose is granted. An answer that is neither is never stored."""

    name: str
    type: FieldType
    label: str
    help: str = ""
    required: bool = False
    max_length: int = 200
    purposes: tuple[str, ...] = ()
    needed: bool = False
    choices: tuple[Choice, ...] = ()

    @property
    def multiple(self) -> bool:
        return self.type is FieldType.CHECKBOXES

    @property
    def autocomplete(self) -> str:
        return AUTOCOMPLETE.get(self.type, "off" if self.type is FieldType.HIDDEN else "on")

    @property
    def input_type(self) -> str:
        return INPUT_TYPE.get(self.type, "text")


@dataclass(frozen=True, slots=True)
class AnswerSpec:
    """A possible answer to a quiz question, with where it leads and what it tells."""

    value: str
    label: str
    next: str | None = None
    outcome: str | None = None
    tags: tuple[str, ...] = ()
    score: int = 0


@dataclass(frozen=True, slots=True)
class QuestionSpec:
    key: str
    text: str
    answers: tuple[AnswerSpec, ...]
    multiple: bool = False
    required: bool = True
    help: str = ""
    purposes: tuple[str, ...] = ()

    def answer(self, value: str) -> AnswerSpec | None:
        return next((a for a in self.answers if a.value == value), None)


@dataclass(frozen=True, slots=True)
class StepSpec:
    key: str
    title: str
    questions: tuple[QuestionSpec, ...]
    next: str | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class OutcomeSpec:
    key: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` accepted submissions per client IP and form per window."""

    count: int = 20
    window_seconds: int = 600


@dataclass(frozen=True, slots=True)
class Definition:
    """A form (``steps`` empty) or a quiz, as published under ``slug``.

    Its texts are in ``locale``. A form offered in several languages lists them in
    ``locales`` and carries the texts of each in ``translations``: per language, the
    text's path in the definition (``fields[0].label``, ``steps[1].questions[0]
    .answers[2].label``, ``outcomes.expert.text``) and the text. :func:`in_locale`
    gives the definition as shown in one of them."""

    slug: str
    kind: DefinitionKind
    title: str
    locale: str
    fields: tuple[FieldSpec, ...]
    consent: tuple[str, ...] = ()
    intro: str = ""
    submit_label: str = "Submit"
    allowed_origins: tuple[str, ...] = ()
    thank_you: str = "Thank you. We have received your details."
    redirect: str | None = None
    double_opt_in: tuple[tuple[str, bool], ...] = ()
    min_fill_seconds: float = 2.0
    rate_limit: RateLimit = field(default_factory=RateLimit)
    steps: tuple[StepSpec, ...] = ()
    outcomes: tuple[OutcomeSpec, ...] = ()
    default_outcome: str | None = None
    answer_purposes: tuple[str, ...] = ()
    locales: tuple[str, ...] = ()
    translations: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @property
    def offered_locales(self) -> tuple[str, ...]:
        """The languages the form is shown in, its own first."""
        return self.locales or (self.locale,)

    @property
    def is_quiz(self) -> bool:
        return self.kind is DefinitionKind.QUIZ

    def field_named(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    def questions(self) -> list[QuestionSpec]:
        return [q for step in self.steps for q in step.questions]

    def step_named(self, key: str) -> StepSpec | None:
        return next((s for s in self.steps if s.key == key), None)

    def outcome_named(self, key: str) -> OutcomeSpec | None:
        return next((o for o in self.outcomes if o.key == key), None)

    def question_purposes(self, question: QuestionSpec) -> tuple[str, ...]:
        return question.purposes or self.answer_purposes

    def doi_override(self, purpose: str) -> bool | None:
        return dict(self.double_opt_in).get(purpose)


@dataclass(frozen=True, slots=True)
class Published:
    """A definition as stored: its version row's id, number and hash."""

    id: int
    version: int
    sha256: str
    definition: Definition


def to_json(definition: Definition) -> bytes:
    """Canonical JSON (sorted keys, no whitespace): stored, hashed, compared. A form in
    one language leaves ``locales`` and ``translations`` out, so its hash is the one it
    had before forms could have several."""
    data = plain(definition)
    if not definition.locales and not definition.translations:
        del data["locales"], data["translations"]
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def definition_sha256(definition: Definition) -> str:
    return hashlib.sha256(to_json(definition)).hexdigest()


def plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {name: plain(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    return value


def from_json(data: bytes | str) -> Definition:
    """Rebuild a stored definition (the inverse of :func:`to_json`)."""
    raw = orjson.loads(data)
    return Definition(
        slug=raw["slug"],
        kind=DefinitionKind(raw["kind"]),
        title=raw["title"],
        locale=raw["locale"],
        fields=tuple(_field(f) for f in raw["fields"]),
        consent=tuple(raw["consent"]),
        intro=raw["intro"],
        submit_label=raw["submit_label"],
        allowed_origins=tuple(raw["allowed_origins"]),
        thank_you=raw["thank_you"],
        redirect=raw["redirect"],
        double_opt_in=tuple((p, bool(v)) for p, v in raw["double_opt_in"]),
        min_fill_seconds=float(raw["min_fill_seconds"]),
        rate_limit=RateLimit(**raw["rate_limit"]),
        steps=tuple(
            StepSpec(
                key=s["key"],
                title=s["title"],
                questions=tuple(_question(q) for q in s["questions"]),
                next=s["next"],
                outcome=s["outcome"],
            )
            for s in raw["steps"]
        ),
        outcomes=tuple(OutcomeSpec(**o) for o in raw["outcomes"]),
        default_outcome=raw["default_outcome"],
        answer_purposes=tuple(raw["answer_purposes"]),
        locales=tuple(raw.get("locales", ())),
        translations=tuple(
            (locale, tuple((path, text) for path, text in texts))
            for locale, texts in raw.get("translations", ())
        ),
    )


def _field(raw: dict[str, Any]) -> FieldSpec:
    return FieldSpec(
        name=raw["name"],
        type=FieldType(raw["type"]),
        label=raw["label"],
        help=raw["help"],
        required=raw["required"],
        max_length=raw["max_length"],
        purposes=tuple(raw["purposes"]),
        needed=raw["needed"],
        choices=tuple(Choice(**c) for c in raw["choices"]),
    )


def _question(raw: dict[str, Any]) -> QuestionSpec:
    return QuestionSpec(
        key=raw["key"],
        text=raw["text"],
        answers=tuple(
            AnswerSpec(
                value=a["value"],
                label=a["label"],
                next=a["next"],
                outcome=a["outcome"],
                tags=tuple(a["tags"]),
                score=a["score"],
            )
            for a in raw["answers"]
        ),
        multiple=raw["multiple"],
        required=raw["required"],
        help=raw["help"],
        purposes=tuple(raw["purposes"]),
    )


def in_locale(definition: Definition, language: str) -> Definition:
    """``definition`` as shown in ``language``: each text from its translations, else
    (a built-in text such as a company size or the default button) from the catalogue;
    ``locale`` becomes ``language`` (what the page, the evidence and a new lead record)."""
    if language == definition.locale == "en":
        return definition
    texts = dict(dict(definition.translations).get(language, ()))

    def text(path: str, value: str) -> str:
        return texts[path] if path in texts else gettext(language, value)

    def field_in(index: int, spec: FieldSpec) -> FieldSpec:
        where = f"fields[{index}]"
        return replace(
            spec,
            label=text(f"{where}.label", spec.label),
            help=text(f"{where}.help", spec.help) if spec.help else "",
            choices=tuple(
                Choice(c.value, text(f"{where}.choices[{i}].label", c.label))
                for i, c in enumerate(spec.choices)
            ),
        )

    def question_in(where: str, question: QuestionSpec) -> QuestionSpec:
        return replace(
            question,
            text=text(f"{where}.text", question.text),
            help=text(f"{where}.help", question.help) if question.help else "",
            answers=tuple(
                replace(a, label=text(f"{where}.answers[{i}].label", a.label))
                for i, a in enumerate(question.answers)
            ),
        )

    return replace(
        definition,
        locale=language,
        title=text("title", definition.title),
        intro=text("intro", definition.intro) if definition.intro else "",
        submit_label=text("submit_label", definition.submit_label),
        thank_you=text("thank_you", definition.thank_you),
        fields=tuple(field_in(i, f) for i, f in enumerate(definition.fields)),
        steps=tuple(
            replace(
                step,
                title=text(f"steps[{i}].title", step.title) if step.title else "",
                questions=tuple(
                    question_in(f"steps[{i}].questions[{j}]", q)
                    for j, q in enumerate(step.questions)
                ),
            )
            for i, step in enumerate(definition.steps)
        ),
        outcomes=tuple(
            OutcomeSpec(
                o.key,
                text(f"outcomes.{o.key}.title", o.title),
                text(f"outcomes.{o.key}.text", o.text),
            )
            for o in definition.outcomes
        ),
    )
