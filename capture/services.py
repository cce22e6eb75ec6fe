"""Accepting a submission and confirming a double opt-in: capture's domain logic.

:func:`accept_submission` runs in ONE write transaction: lead matched or created by
normalised email, the answers that may be kept, the confirmation mail queued, the
answer remembered for retries, the rate limit, and one ledger entry per ticked purpose
(plus a GPC opt-out). Any failure rolls all of it back.

Unverified input never speaks for someone else: when the address already belongs to a
lead, the submission is held (:mod:`capture.pending`) and a link is mailed to the
address; nothing of it reaches the lead (answers, quiz results, scores, grants, GPC
opt-outs) until that link is followed (:func:`apply_confirmed`). The answer to the
visitor is the same either way (:class:`SubmissionResult`): only what they sent and a
generic next step, never what we hold about the address.

Per-field purpose binding: an answer is kept only when the field is needed for the
request itself or one of the purposes it serves is granted in this submission or
already permitted for the lead. Quiz results (outcome, tags, score) derive from the
answers, so they are kept only when every answer on the path was kept.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import cast

import orjson
from sqlalchemy import Table, and_, bindparam, insert, select, text

from capture import pending as held_submissions
from capture import ratelimit
from capture.definitions import Definition, Published, from_json, in_locale
from capture.errors import RateLimited
from capture.forms import CleanSubmission
from capture.models import Answer, DefinitionVersion, IdempotencyRecord, Submission
from capture.quiz import QuizPath
from capture.site import SLUG_RE
from capture.tokens import CaptureTokens, ConfirmToken, HeldToken
from consent_ledger import read_model
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource, PurposeCategory
from consent_ledger.api import ConsentChange, ConsentLedger
from consent_ledger.entries import LedgerEntry
from consent_ledger.evidence import EvidenceValue
from zeroparty import i18n, lead_signals
from zeroparty.db import Prepared, Transaction, connection_of
from zeroparty.errors import Conflict, NotFound
from zeroparty.i18n import N_
from zeroparty.mail import LeadLinker, Mail, QueuedMail, in_language, queue_mail, with_lead_links

NEXT_STEP = N_("If anything needs confirming, we have sent you an email with a link.")
NEGATIVE_STATUSES = frozenset({"withdrawn", "refused", "gpc-opt-out", "expired", "erased"})

_submissions = cast(Table, Submission.__table__)
_answers = cast(Table, Answer.__table__)
_idempotency = cast(Table, IdempotencyRecord.__table__)

# On the driver's cursor: every submission writes both.
_INSERT_SUBMISSION = Prepared(insert(_submissions))
_INSERT_IDEMPOTENCY = Prepared(insert(_idempotency))
_SELECT_IDEMPOTENCY = select(_idempotency.c.request_sha256, _idempotency.c.response).where(
    _idempotency.c.key == bindparam("key")
)
_LATEST_VERSION = (
    select(DefinitionVersion.id)
    .where(DefinitionVersion.slug == bindparam("slug"))
    .order_by(DefinitionVersion.version.desc())
    .limit(1)
)
_VERSION = select(
    DefinitionVersion.id,
    DefinitionVersion.version,
    DefinitionVersion.sha256,
    DefinitionVersion.definition,
).where(DefinitionVersion.id == bindparam("id"))
_purposes = read_model.purposes
_notices = read_model.notice_versions
# Each of a form's purposes with its notice versions in the form's locale, oldest first
# (the last one read is the current one).
_FORM_NOTICES = (
    select(
        _purposes.c.key,
        _purposes.c.title,
        _purposes.c.translations,
        _purposes.c.category,
        _purposes.c.double_opt_in,
        _notices.c.text,
        _notices.c.sha256,
    )
    .join(
        _notices,
        and_(_notices.c.purpose_key == _purposes.c.key, _notices.c.locale == bindparam("locale")),
    )
    .where(_purposes.c.key.in_(bindparam("purposes", expanding=True)))
    .order_by(_purposes.c.key, _notices.c.version)
)
_PURPOSE_TITLES = select(_purposes.c.key, _purposes.c.title, _purposes.c.translations).where(
    _purposes.c.key.in_(bindparam("purposes", expanding=True))
)


@lru_cache(maxsize=64)
def _insert_answers(rows: int) -> Prepared:
    """One multi-row INSERT of ``rows`` answers, compiled once per row count, for the
    driver's cursor. As text: a multi-row ``insert().values([...])`` would be compiled
    again for every submission. Every column is a string."""
    rows_sql = ", ".join(
        f"(:submission_id_{i}, :subject_id_{i}, :field_{i}, :value_{i})" for i in range(rows)
    )
    return Prepared(
        text(
            f"INSERT INTO {_answers.name} (submission_id, subject_id, field, value) "
            f"VALUES {rows_sql}"
        )
    )


class UnknownForm(NotFound):
    def __init__(self, slug: str) -> None:
        super().__init__(f"there is no form or quiz {slug[:64]!r}")


@dataclass(frozen=True, slots=True)
class PurposeInfo:
    key: str
    title: str
    category: str
    double_opt_in: bool
    translations: str | None = None

    def title_in(self, language: str) -> str:
        """The title as the site file gives it in ``language``."""
        return i18n.site_text(self.title, self.translations, language)

    def in_language(self, language: str) -> PurposeInfo:
        return replace(self, title=self.title_in(language))


@dataclass(frozen=True, slots=True)
class Notice:
    purpose: str
    title: str
    text: str
    sha256: str
    double_opt_in: bool
    sale_or_sharing: bool


@dataclass(frozen=True, slots=True)
class SubmissionRequest:
    """Everything :func:`accept_submission` needs, checked and ready to store."""

    published: Published
    submission: CleanSubmission
    notices: Mapping[str, str]
    submission_id: str
    idempotency_key: str
    rate_bucket: str
    gpc: bool
    evidence: Mapping[str, EvidenceValue]
    occurred_at: datetime
    quiz: QuizPath | None = None


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    """What is answered (and replayed to a retry).

    Only what the visitor sent (the purposes ticked, the GPC signal's purposes, the quiz
    outcome) and a generic next step: never whether the address is known, has consent,
    or needs a confirmation, so the answer is the same for every address.
    """

    submission_id: str
    consent: tuple[str, ...] = ()
    gpc_opt_out: tuple[str, ...] = ()
    outcome: str | None = None
    stored: bool = True
    replayed: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "submission": self.submission_id,
            "stored": self.stored,
            "consent": list(self.consent),
            "gpc_opt_out": list(self.gpc_opt_out),
            "outcome": self.outcome,
            "next_step": NEXT_STEP if self.stored else None,
        }

    @classmethod
    def from_json(cls, raw: str) -> SubmissionResult:
        data = orjson.loads(raw)
        # Answers stored before held submissions named the purposes ticked "granted"
        # and "pending_confirmation": a retry of one still gets what was sent.
        old = [*data.get("granted", []), *data.get("pending_confirmation", [])]
        return cls(
            submission_id=data["submission"],
            consent=tuple(data.get("consent", old)),
            gpc_opt_out=tuple(data.get("gpc_opt_out", [])),
            outcome=data.get("outcome"),
            stored=data.get("stored", True),
            replayed=True,
        )


@dataclass(frozen=True, slots=True)
class Lead:
    """The lead a submission's address belongs to; ``created``: by this submission."""

    subject_id: str
    jurisdiction: str | None
    created: bool


@dataclass(slots=True)
class DefinitionStore:
    """Published versions by id (immutable, so cached for the app's life). Which
    version is a slug's latest is asked of the database each time (one indexed
    statement): a version published by another process is shown at once."""

    by_id: dict[int, Published] = field(default_factory=dict)
    in_locale: dict[tuple[int, str], Published] = field(default_factory=dict)

    def latest(self, tx: Transaction, slug: str) -> Published:
        if not SLUG_RE.match(slug):  # not a slug at all: nothing to look up
            raise UnknownForm(slug)
        row = tx.execute(_LATEST_VERSION, {"slug": slug}).scalar_one_or_none()
        if row is None:
            raise UnknownForm(slug)
        return self.get(tx, row)

    def shown(self, published: Published, language: str) -> Published:
        """``published`` as shown in ``language`` (one of its locales), built once."""
        if language == published.definition.locale == "en":
            return published
        key = (published.id, language)
        found = self.in_locale.get(key)
        if found is None:
            definition = in_locale(published.definition, language)
            found = self.in_locale[key] = replace(published, definition=definition)
        return found

    def get(self, tx: Transaction, definition_id: int) -> Published:
        published = self.by_id.get(definition_id)
        if published is None:
            version = tx.execute(_VERSION, {"id": definition_id}).first()
            if version is None:
                raise NotFound("this form version does not exist")
            published = Published(
                version.id, version.version, version.sha256, from_json(version.definition)
            )
            self.by_id[definition_id] = published
        return published


def purposes_info(ledger: ConsentLedger, tx: Transaction) -> dict[str, PurposeInfo]:
    return {row[0]: PurposeInfo(*row) for row in ledger.purpose_facts(tx)}


def purpose_titles(tx: Transaction, purposes: Sequence[str], language: str) -> dict[str, str]:
    """The titles of ``purposes`` in ``language`` (unknown ones left out), in one
    statement."""
    if not purposes:
        return {}
    rows = tx.execute(_PURPOSE_TITLES, {"purposes": list(purposes)})
    return {row.key: i18n.site_text(row.title, row.translations, language) for row in rows}


def notices_shown(tx: Transaction, definition: Definition) -> list[Notice]:
    """The current notice text of each of the form's consent purposes, in its locale
    (a purpose without a notice in that locale is not shown), in one statement."""
    if not definition.consent:
        return []
    rows = tx.execute(
        _FORM_NOTICES, {"purposes": list(definition.consent), "locale": definition.locale}
    )
    # Oldest version first: the last row of a purpose is its current notice.
    latest = {row.key: row for row in rows}
    notices: list[Notice] = []
    for purpose in definition.consent:
        row = latest.get(purpose)
        if row is None:
            continue
        override = definition.doi_override(purpose)
        notices.append(
            Notice(
                purpose=purpose,
                title=i18n.site_text(row.title, row.translations, definition.locale),
                text=row.text,
                sha256=row.sha256,
                double_opt_in=bool(row.double_opt_in) if override is None else override,
                sale_or_sharing=row.category == PurposeCategory.SALE_OR_SHARING,
            )
        )
    return notices


def replay(tx: Transaction, request: SubmissionRequest) -> SubmissionResult | None:
    """The answer already given under this idempotency key, if any.

    Raises :class:`Conflict` when the key was used for a different submission.
    """
    row = tx.execute(_SELECT_IDEMPOTENCY, {"key": request.idempotency_key}).first()
    if row is None:
        return None
    if row.request_sha256 != request.submission.request_sha256():
        raise Conflict(
            "this form was already sent with different answers; reload it to send again",
            fields={"idempotency_key": "already used for a different submission"},
        )
    return SubmissionResult.from_json(row.response)


def _kept_values(
    request: SubmissionRequest, allowed: set[str]
) -> tuple[dict[str, tuple[str, ...]], bool]:
    """The values that may be stored, and whether every quiz answer on the path was."""
    definition = request.published.definition
    values = request.submission.values
    kept: dict[str, tuple[str, ...]] = {}
    for spec in definition.fields:
        if spec.name in values and (spec.needed or allowed.intersection(spec.purposes)):
            kept[spec.name] = values[spec.name]
    all_answers_kept = True
    if request.quiz is not None:
        for step in request.quiz.visited:
            for question in step.questions:
                chosen = request.quiz.answers.get(question.key)
                if not chosen:
                    continue
                if allowed.intersection(definition.question_purposes(question)):
                    kept[question.key] = chosen
                else:
                    all_answers_kept = False
    return kept, all_answers_kept


def _ticked(request: SubmissionRequest, info: Mapping[str, PurposeInfo] | None) -> list[str]:
    """The purposes ticked, less sale/sharing ones under a GPC signal (rule 7); ``info``
    is only needed (and only read) under a GPC signal."""
    if not request.gpc:
        return list(request.submission.consent)
    assert info is not None
    sharing = _sharing(info)
    return [p for p in request.submission.consent if p not in sharing]


def _sharing(info: Mapping[str, PurposeInfo]) -> list[str]:
    return [k for k, p in info.items() if p.category == PurposeCategory.SALE_OR_SHARING]


def accept_submission(
    tx: Transaction,
    request: SubmissionRequest,
    *,
    ledger: ConsentLedger,
    tokens: CaptureTokens,
    base_url: str,
    lead_links: LeadLinker | None = None,
    claims: list[QueuedMail],
) -> SubmissionResult:
    """Store a checked submission (see the module docstring). The caller commits, then
    sends the mail it queued: each is added to ``claims``, claimed by this process
    (:func:`zeroparty.mail.queue_mail`).

    A retry is not looked up first (that would cost every submission a query): it runs
    into the unique submission id or idempotency key, the transaction fails with
    ``IntegrityError``, and the caller answers from :func:`replay` instead.
    """
    definition = request.published.definition
    email = request.submission.email
    assert email is not None  # a submission without an email is answered without storing
    connection = connection_of(tx)
    subject_id = ledger.find_lead(connection, email)
    new_lead: Lead | None = None
    if subject_id is None:
        ref = ledger.create_lead_if_new(connection, email, locale=definition.locale)
        if ref is not None:
            new_lead = Lead(ref.id, ref.jurisdiction, created=True)
        else:  # another submission of this address created the lead just now
            subject_id = ledger.find_lead(connection, email)
            assert subject_id is not None
    # Purposes are read only when needed: a GPC signal, a held submission, a mail.
    info = purposes_info(ledger, tx) if request.gpc else None
    ticked = _ticked(request, info)
    applied = _Applied()
    if new_lead is not None:
        applied = _apply(tx, ledger, request, new_lead, info, ticked, states={})
    else:
        assert subject_id is not None
        info = info if info is not None else purposes_info(ledger, tx)
        _hold(tx, request, Lead(subject_id, None, created=False), info, ticked,
              tokens=tokens, base_url=base_url, lead_links=lead_links, claims=claims)  # fmt: skip
    quiz = request.quiz
    result = SubmissionResult(
        submission_id=request.submission_id,
        consent=tuple(ticked),
        gpc_opt_out=tuple(_sharing(info)) if request.gpc and info is not None else (),
        outcome=quiz.outcome.key if quiz is not None and quiz.outcome else None,
    )
    _INSERT_IDEMPOTENCY.execute(
        connection,
        {
            "key": request.idempotency_key,
            "request_sha256": request.submission.request_sha256(),
            "submission_id": request.submission_id,
            "response": orjson.dumps(result.as_json()).decode(),
            "created_at": request.occurred_at,
        },
    )
    # Last, the two rows every submission of a form from one network (the rate counter)
    # and every ledger append (the head) must lock: they stay locked until the commit,
    # so as little as possible happens after them.
    limit = definition.rate_limit
    if ratelimit.hit(tx, request.rate_bucket, limit.window_seconds) > limit.count:
        raise RateLimited("too many submissions from your network for this form; try again later")
    entries = _record(tx, ledger, applied)
    pending = [e.purpose for e in entries if e.confirmation_required]
    if pending and new_lead is not None:
        # The ledger decided double opt-in: the mail is queued after its entries.
        info = info if info is not None else purposes_info(ledger, tx)
        _queue_confirmation(tx, request, new_lead, info, pending, tokens=tokens,
                            base_url=base_url, lead_links=lead_links, claims=claims)  # fmt: skip
    return result


def apply_confirmed(
    tx: Transaction,
    ledger: ConsentLedger,
    request: SubmissionRequest,
    lead: Lead,
    confirmation: Mapping[str, EvidenceValue],
) -> None:
    """Apply a held submission now that its sender has shown control of the address:
    exactly as if the owner submitted it at ``request.occurred_at``, except that no
    double opt-in mail is needed (the link just followed was one). Each grant carries
    the submission's evidence plus ``confirmation``; a purpose that needs double opt-in
    gets its ``confirmed`` entry (method double-opt-in) right after its grant."""
    info = purposes_info(ledger, tx)
    states = ledger.lead_states(tx, lead.subject_id)
    ticked = _ticked(request, info)
    # A box ticked under a text a material change replaced while the submission was
    # held grants nothing (issue 16): the rest of the submission still applies.
    replaced = ledger.superseded_notices(tx, [(p, request.notices[p]) for p in ticked])
    ticked = [p for p in ticked if (p, request.notices[p]) not in replaced]
    applied = _apply(tx, ledger, request, lead, info, ticked, states, confirmation)
    _record(tx, ledger, applied)


@dataclass(slots=True)
class _Applied:
    """What applying a submission to a lead still has to record (ledger, listeners)."""

    changes: list[ConsentChange] = field(default_factory=list)
    overrides: dict[str, bool] = field(default_factory=dict)
    signal: lead_signals.LeadSignal | None = None


def _record(tx: Transaction, ledger: ConsentLedger, applied: _Applied) -> list[LedgerEntry]:
    entries = ledger.record_form(tx, applied.changes, applied.overrides)
    if applied.signal is not None:
        # scoring listens (the app's wiring); same transaction
        ledger.publish_signals(tx, [applied.signal])
    return entries


def _apply(
    tx: Transaction,
    ledger: ConsentLedger,
    request: SubmissionRequest,
    lead: Lead,
    info: Mapping[str, PurposeInfo] | None,
    ticked: list[str],
    states: Mapping[str, tuple[str, bool, str | None]],
    confirmation: Mapping[str, EvidenceValue] | None = None,
) -> _Applied:
    """Store the submission for ``lead``: the submission row, the answers that may be
    kept, and the ledger changes and lead signal for the caller to record last.

    ``states``: the lead's consent states (none for a lead this submission created).
    ``confirmation``: the evidence that the sender controls the address (a held
    submission being applied, ``info`` then given); ``None`` for a new lead's own
    submission, whose double opt-in the ledger decides."""
    definition = request.published.definition
    subject_id = lead.subject_id
    connection = connection_of(tx)
    allowed = set(ticked) | {p for p, state in states.items() if state[1]}
    kept, all_answers_kept = _kept_values(request, allowed)
    quiz = request.quiz
    keep_result = quiz is not None and all_answers_kept and bool(quiz.answers)
    _INSERT_SUBMISSION.execute(
        connection,
        {
            "id": request.submission_id,
            "definition_id": request.published.id,
            "subject_id": subject_id,
            "locale": definition.locale,
            "outcome": quiz.outcome.key if keep_result and quiz and quiz.outcome else None,
            "tags": orjson.dumps(list(quiz.tags)).decode() if keep_result and quiz else None,
            "score": quiz.score if keep_result and quiz else None,
            "created_at": request.occurred_at,
        },
    )
    answers = [(name, value) for name, values in kept.items() for value in values]
    if answers:
        params: dict[str, object] = {}
        for i, (name, value) in enumerate(answers):
            params[f"submission_id_{i}"] = request.submission_id
            params[f"subject_id_{i}"] = subject_id
            params[f"field_{i}"] = name
            params[f"value_{i}"] = value
        _insert_answers(len(answers)).execute(connection, params)
    source = ConsentSource.QUIZ if definition.is_quiz else ConsentSource.FORM
    source_ref = f"{definition.slug}@v{request.published.version}"
    evidence = (
        dict(request.evidence) if confirmation is None else {**request.evidence, **confirmation}
    )
    picked = _picked_topics(tx, ledger, request, ticked)
    applied = _Applied(overrides=dict(definition.double_opt_in))
    for purpose in ticked:
        _status, live, live_notice = states.get(purpose, ("", False, None))
        # Permitted already under this very notice: nothing to confirm. Under another
        # text the grant waits for a confirmation again (the held link followed gives it).
        permitted = live and live_notice == request.notices[purpose]
        applied.changes.append(
            ConsentChange(
                subject_id=subject_id,
                purpose=purpose,
                action=ConsentAction.GRANTED,
                source=source,
                method=ConsentMethod.CHECKBOX,
                occurred_at=request.occurred_at,
                notice_sha256=request.notices[purpose],
                confirmed=permitted,
                source_ref=source_ref,
                jurisdiction=lead.jurisdiction,
                locale=definition.locale,
                evidence={**evidence, "topics": picked[purpose]} if purpose in picked else evidence,
            )
        )
        if confirmation is None or permitted:
            continue
        assert info is not None
        override = definition.doi_override(purpose)
        if info[purpose].double_opt_in if override is None else override:
            applied.changes.append(
                ConsentChange(
                    subject_id=subject_id,
                    purpose=purpose,
                    action=ConsentAction.CONFIRMED,
                    source=source,
                    method=ConsentMethod.DOUBLE_OPT_IN,
                    occurred_at=request.occurred_at,
                    notice_sha256=request.notices[purpose],
                    source_ref=f"submission:{request.submission_id}",
                    jurisdiction=lead.jurisdiction,
                    locale=definition.locale,
                    evidence={**confirmation, "submission": request.submission_id},
                )
            )
    if request.gpc:
        assert info is not None
        for purpose in _sharing(info):
            if states.get(purpose, ("", False, None))[0] in NEGATIVE_STATUSES:
                continue  # already refused: the signal changes nothing
            applied.changes.append(
                ConsentChange(
                    subject_id=subject_id,
                    purpose=purpose,
                    action=ConsentAction.GPC_OPT_OUT,
                    source=source,
                    method=ConsentMethod.GPC_SIGNAL,
                    occurred_at=request.occurred_at,
                    source_ref=source_ref,
                    jurisdiction=lead.jurisdiction,
                    locale=definition.locale,
                    evidence=evidence,
                )
            )
    applied.signal = _lead_signal(request, lead, kept)
    return applied


def _picked_topics(
    tx: Transaction, ledger: ConsentLedger, request: SubmissionRequest, ticked: Sequence[str]
) -> dict[str, str]:
    """The topics picked per ticked purpose, as the grant's ``topics`` evidence (keys,
    comma-separated, sorted: as the preference center records a topic set).

    A field picks topics of a purpose when it serves that purpose and its choices are
    topic keys of it (the demo's ``topics`` field for the newsletter). A purpose with no
    topic picked gets no ``topics`` evidence: the lead gets every topic of it (what the
    box they ticked says), as when subscribing on the preference page."""
    definition = request.published.definition
    values = request.submission.values
    pickers = [spec for spec in definition.fields if spec.choices and spec.name in values]
    if not ticked or not pickers:
        return {}
    topics = ledger.topics_of(tx, list(ticked))
    picked: dict[str, str] = {}
    for purpose, keys in topics.items():
        chosen = {
            value
            for spec in pickers
            if purpose in spec.purposes and {c.value for c in spec.choices} & keys
            for value in values[spec.name]
            if value in keys
        }
        if chosen:
            picked[purpose] = ",".join(sorted(chosen))
    return picked


def _queue_confirmation(
    tx: Transaction,
    request: SubmissionRequest,
    lead: Lead,
    info: Mapping[str, PurposeInfo],
    purposes: Sequence[str],
    *,
    tokens: CaptureTokens,
    base_url: str,
    lead_links: LeadLinker | None,
    claims: list[QueuedMail],
) -> None:
    """The double opt-in mail of a new lead, queued in the transaction."""
    assert request.submission.email is not None
    token = tokens.issue_confirm(
        ConfirmToken(lead.subject_id, tuple(purposes), request.submission_id)
    )
    mail = confirmation_mail(
        request.submission.email,
        [info[p] for p in purposes],
        f"{base_url}/confirm/{token}",
        request.published.definition.locale,
    )
    if lead_links is not None:
        # One-click unsubscribe withdraws exactly the purposes this mail is about.
        mail = with_lead_links(mail, lead_links(tx, lead.subject_id, list(purposes)))
    # Claimed by this process: the request sends it right after its commit.
    queue_mail(tx, mail, subject_id=lead.subject_id, claims=claims)


def _hold(
    tx: Transaction,
    request: SubmissionRequest,
    lead: Lead,
    info: Mapping[str, PurposeInfo],
    ticked: list[str],
    *,
    tokens: CaptureTokens,
    base_url: str,
    lead_links: LeadLinker | None,
    claims: list[QueuedMail],
) -> None:
    """Hold a submission under an existing lead's address and mail the address a link
    that applies it (see :mod:`capture.pending`)."""
    definition = request.published.definition
    assert request.submission.email is not None
    # Only values that could ever be kept: a field neither needed nor serving a purpose
    # would be dropped when applied, so it is not held either.
    values = {
        spec.name: request.submission.values[spec.name]
        for spec in definition.fields
        if spec.name in request.submission.values and (spec.needed or spec.purposes)
    }
    quiz = request.quiz
    held_submissions.hold(
        connection_of(tx),
        held_submissions.HeldSubmission(
            submission_id=request.submission_id,
            subject_id=lead.subject_id,
            definition_id=request.published.id,
            values=values,
            consent=tuple(request.submission.consent),
            notices={p: request.notices[p] for p in request.submission.consent},
            gpc=request.gpc,
            quiz_answers=None if quiz is None else dict(quiz.answers),
            evidence=request.evidence,
            created_at=request.occurred_at,
            expires_at=request.occurred_at + held_submissions.HOLD,
        ),
    )
    token = tokens.issue_held(HeldToken(lead.subject_id, request.submission_id))
    mail = held_mail(
        request.submission.email,
        definition.title,
        [info[p] for p in ticked],
        f"{base_url}/confirm/held/{token}",
        definition.locale,
    )
    if lead_links is not None and ticked:
        mail = with_lead_links(mail, lead_links(tx, lead.subject_id, ticked))
    queue_mail(tx, mail, subject_id=lead.subject_id, claims=claims)


def _lead_signal(
    request: SubmissionRequest, lead: Lead, kept: Mapping[str, tuple[str, ...]]
) -> lead_signals.LeadSignal:
    """The kept answers, each with the purposes it was collected for."""
    definition = request.published.definition
    field_purposes = {spec.name: spec.purposes for spec in definition.fields}
    inputs = [
        lead_signals.LeadInput(lead_signals.InputKind.FIELD, name, kept[name], purposes)
        for name, purposes in field_purposes.items()
        if name in kept and purposes
    ]
    if request.quiz is not None:
        inputs += [
            lead_signals.LeadInput(
                lead_signals.InputKind.QUIZ_ANSWER,
                question.key,
                kept[question.key],
                definition.question_purposes(question),
            )
            for step in request.quiz.visited
            for question in step.questions
            if question.key in kept
        ]
    return lead_signals.LeadSignal(
        lead.subject_id,
        request.occurred_at,
        f"{definition.slug}@v{request.published.version}",
        tuple(inputs),
        new_lead=lead.created,
    )


# The mails of capture, in the language the form was shown in (the new lead's locale).
CONFIRM_SUBJECT = N_("Please confirm: %(what)s")
CONFIRM_TEXT = N_(
    "Hello,\n\nsomeone, hopefully you, asked to receive: %(purposes)s.\n\n"
    "To confirm, open this link and press the Confirm button:\n%(link)s\n\n"
    "If it was not you, ignore this mail: nothing will be sent to you, and this "
    "address stays unsubscribed.\n"
)
HELD_TEXT = N_(
    'Hello,\n\nsomeone, hopefully you, sent the form "%(form)s" with this address.\n\n'
    "Nothing they sent is added to what we hold about you, and none of your choices "
    "change, until you confirm. To confirm, open this link and press the Confirm "
    "button (it works for %(days)s days):\n%(link)s\n\n"
    "If it was not you, ignore this mail: what was sent is deleted after %(days)s days.\n"
)
HELD_ASKED_TEXT = N_(
    'Hello,\n\nsomeone, hopefully you, sent the form "%(form)s" with this address and '
    "asked to receive: %(purposes)s.\n\n"
    "Nothing they sent is added to what we hold about you, and none of your choices "
    "change, until you confirm. To confirm, open this link and press the Confirm "
    "button (it works for %(days)s days):\n%(link)s\n\n"
    "If it was not you, ignore this mail: what was sent is deleted after %(days)s days.\n"
)


def _in_language(link: str, language: str) -> str:
    """The link opens its page in the mail's language."""
    return link if language == i18n.SOURCE_LANGUAGE else f"{link}?lang={language}"


def confirmation_mail(
    to: str, purposes: Sequence[PurposeInfo], link: str, language: str = "en"
) -> Mail:
    titles = ", ".join(p.title_in(language) for p in purposes)
    values = {"purposes": titles, "link": _in_language(link, language)}
    text = i18n.gettext(language, CONFIRM_TEXT) % values
    subject = i18n.gettext(language, CONFIRM_SUBJECT) % {"what": titles}
    return Mail(to=to, subject=subject, text=text, headers=in_language(language))


def held_mail(
    to: str, form_title: str, purposes: Sequence[PurposeInfo], link: str, language: str = "en"
) -> Mail:
    """The mail to an existing lead's address when a submission under it is held."""
    values = {
        "form": form_title,
        "purposes": ", ".join(p.title_in(language) for p in purposes),
        "days": held_submissions.HOLD_DAYS,
        "link": _in_language(link, language),
    }
    text = i18n.gettext(language, HELD_ASKED_TEXT if purposes else HELD_TEXT) % values
    subject = i18n.gettext(language, CONFIRM_SUBJECT) % {"what": form_title}
    return Mail(to=to, subject=subject, text=text, headers=in_language(language))


def new_submission_id() -> str:
    return secrets.token_hex(16)
