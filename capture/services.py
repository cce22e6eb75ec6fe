"""Accepting a submission and confirming a double opt-in: capture's domain logic.

:func:`accept_submission` runs in ONE write transaction: lead matched or created by
normalised email, the answers that may be kept, the confirmation mail queued, the
answer remembered for retries, the rate limit, and one ledger entry per ticked purpose
(plus a GPC opt-out). Any failure rolls all of it back.

Per-field purpose binding: an answer is kept only when the field is needed for the
request itself or one of the purposes it serves is granted in this submission or
already permitted for the lead. Quiz results (outcome, tags, score) derive from the
answers, so they are kept only when every answer on the path was kept.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import orjson
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from capture import ratelimit
from capture.definitions import Definition, Published, from_json
from capture.errors import RateLimited
from capture.forms import CleanSubmission
from capture.models import Answer, DefinitionVersion, IdempotencyRecord, Submission
from capture.quiz import QuizPath
from capture.site import SLUG_RE
from capture.tokens import CaptureTokens, ConfirmToken
from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource, PurposeCategory
from consent_ledger.evidence import EvidenceValue
from consent_ledger.models import ConsentState, NoticeVersion, Purpose, Subject, SubjectProfile
from consent_ledger.subjects import new_subject_id
from zeroparty import lead_signals
from zeroparty.db import utcnow
from zeroparty.errors import Conflict, NotFound
from zeroparty.mail import LeadLinker, Mail, queue_mail, with_lead_links

NEGATIVE_STATUSES = frozenset({"withdrawn", "refused", "gpc-opt-out", "expired", "erased"})

_submissions = cast(Table, Submission.__table__)
_answers = cast(Table, Answer.__table__)
_idempotency = cast(Table, IdempotencyRecord.__table__)
_state = cast(Table, ConsentState.__table__)
_purposes = cast(Table, Purpose.__table__)
_subjects = cast(Table, Subject.__table__)
_profiles = cast(Table, SubjectProfile.__table__)

_INSERT_SUBMISSION = insert(_submissions)
_INSERT_ANSWERS = insert(_answers)
_INSERT_IDEMPOTENCY = insert(_idempotency)
_SELECT_IDEMPOTENCY = select(_idempotency.c.request_sha256, _idempotency.c.response).where(
    _idempotency.c.key == bindparam("key")
)
SELECT_STATES = select(_state.c.purpose_key, _state.c.status, _state.c.permitted).where(
    _state.c.subject_id == bindparam("sid")
)
_FIND_LEAD = (
    select(_profiles.c.subject_id, _subjects.c.jurisdiction)
    .join(_subjects, _subjects.c.id == _profiles.c.subject_id)
    .where(_profiles.c.email == bindparam("email"))
)
_INSERT_SUBJECT = insert(_subjects)
_INSERT_PROFILE = insert(_profiles)
_SELECT_PURPOSES = select(
    _purposes.c.key, _purposes.c.title, _purposes.c.category, _purposes.c.double_opt_in
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
    """What happened, as answered (and replayed to a retry)."""

    submission_id: str
    kept: tuple[str, ...] = ()
    granted: tuple[str, ...] = ()
    pending_confirmation: tuple[str, ...] = ()
    gpc_opt_out: tuple[str, ...] = ()
    outcome: str | None = None
    mail_queued: bool = False
    replayed: bool = False
    stored: bool = True

    def as_json(self) -> dict[str, object]:
        return {
            "submission": self.submission_id,
            "stored": self.stored,
            "kept_fields": list(self.kept),
            "granted": list(self.granted),
            "pending_confirmation": list(self.pending_confirmation),
            "gpc_opt_out": list(self.gpc_opt_out),
            "outcome": self.outcome,
            "mail_queued": self.mail_queued,
        }

    @classmethod
    def from_json(cls, raw: str) -> SubmissionResult:
        data = orjson.loads(raw)
        return cls(
            submission_id=data["submission"],
            kept=tuple(data["kept_fields"]),
            granted=tuple(data["granted"]),
            pending_confirmation=tuple(data["pending_confirmation"]),
            gpc_opt_out=tuple(data["gpc_opt_out"]),
            outcome=data["outcome"],
            mail_queued=data["mail_queued"],
            stored=data["stored"],
            replayed=True,
        )


@dataclass(slots=True)
class DefinitionStore:
    """Published versions by id (immutable, so cached for the app's life)."""

    by_id: dict[int, Published] = field(default_factory=dict)

    def latest(self, session: Session, slug: str) -> Published:
        if not SLUG_RE.match(slug):  # not a slug at all: nothing to look up
            raise UnknownForm(slug)
        row = session.execute(
            select(DefinitionVersion.id)
            .where(DefinitionVersion.slug == slug)
            .order_by(DefinitionVersion.version.desc())
            .limit(1)
        ).scalar_one_or_none()
        if row is None:
            raise UnknownForm(slug)
        return self.get(session, row)

    def get(self, session: Session, definition_id: int) -> Published:
        published = self.by_id.get(definition_id)
        if published is None:
            version = session.get(DefinitionVersion, definition_id)
            if version is None:
                raise NotFound("this form version does not exist")
            published = Published(
                version.id, version.version, version.sha256, from_json(version.definition)
            )
            self.by_id[definition_id] = published
        return published


def purposes_info(session: Session) -> dict[str, PurposeInfo]:
    return {row.key: PurposeInfo(*row) for row in session.execute(_SELECT_PURPOSES)}


def notices_shown(session: Session, definition: Definition) -> list[Notice]:
    """The current notice text of each of the form's consent purposes, in its locale."""
    if not definition.consent:
        return []
    info = purposes_info(session)
    rows = session.execute(
        select(NoticeVersion.purpose_key, NoticeVersion.text, NoticeVersion.sha256)
        .where(
            NoticeVersion.purpose_key.in_(definition.consent),
            NoticeVersion.locale == definition.locale,
        )
        .order_by(NoticeVersion.purpose_key, NoticeVersion.version)
    ).all()
    latest = {row.purpose_key: row for row in rows}  # ordered by version: the last wins
    notices: list[Notice] = []
    for purpose in definition.consent:
        row = latest.get(purpose)
        if row is None or purpose not in info:
            continue
        override = definition.doi_override(purpose)
        notices.append(
            Notice(
                purpose=purpose,
                title=info[purpose].title,
                text=row.text,
                sha256=row.sha256,
                double_opt_in=info[purpose].double_opt_in if override is None else override,
                sale_or_sharing=info[purpose].category == PurposeCategory.SALE_OR_SHARING,
            )
        )
    return notices


def match_or_create_lead(connection: Connection, email: str, locale: str) -> tuple[str, str | None]:
    """The lead with this normalised email (its id and jurisdiction), created if new.

    Core statements rather than the ORM: this runs on every submission. Two first
    submissions of one address at once (PostgreSQL) meet at the unique email: the loser's
    savepoint rolls back and it takes the winner's lead.
    """
    row = connection.execute(_FIND_LEAD, {"email": email}).first()
    if row is not None:
        return str(row.subject_id), row.jurisdiction
    subject_id = new_subject_id()
    now = utcnow()
    subject = {"id": subject_id, "locale": locale, "created_at": now}
    profile = {"subject_id": subject_id, "email": email, "created_at": now, "updated_at": now}
    if connection.dialect.name == "sqlite":
        # Writers take the whole database (BEGIN IMMEDIATE): nobody else can be adding
        # this address now, so no savepoint is needed.
        connection.execute(_INSERT_SUBJECT, subject)
        connection.execute(_INSERT_PROFILE, profile)
        return subject_id, None
    try:
        with connection.begin_nested():
            connection.execute(_INSERT_SUBJECT, subject)
            connection.execute(_INSERT_PROFILE, profile)
    except IntegrityError:
        row = connection.execute(_FIND_LEAD, {"email": email}).first()
        if row is None:
            raise
        return str(row.subject_id), row.jurisdiction
    return subject_id, None


def replay(session: Session, request: SubmissionRequest) -> SubmissionResult | None:
    """The answer already given under this idempotency key, if any.

    Raises :class:`Conflict` when the key was used for a different submission.
    """
    row = session.execute(_SELECT_IDEMPOTENCY, {"key": request.idempotency_key}).first()
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


def accept_submission(
    session: Session,
    request: SubmissionRequest,
    *,
    tokens: CaptureTokens,
    base_url: str,
    lead_links: LeadLinker | None = None,
) -> SubmissionResult:
    """Store a checked submission (see the module docstring). The caller commits.

    A retry is not looked up first (that would cost every submission a query): it runs
    into the unique submission id or idempotency key, the transaction fails with
    ``IntegrityError``, and the caller answers from :func:`replay` instead.
    """
    definition = request.published.definition
    email = request.submission.email
    assert email is not None  # a submission without an email is answered without storing
    connection = session.connection()
    subject_id, jurisdiction = match_or_create_lead(connection, email, definition.locale)
    states = {
        row.purpose_key: (row.status, bool(row.permitted))
        for row in connection.execute(SELECT_STATES, {"sid": subject_id})
    }
    info = purposes_info(session)
    sharing = [k for k, p in info.items() if p.category == PurposeCategory.SALE_OR_SHARING]
    ticked = [p for p in request.submission.consent if not (request.gpc and p in sharing)]
    allowed = set(ticked) | {p for p, (_, permitted) in states.items() if permitted}
    kept, all_answers_kept = _kept_values(request, allowed)
    quiz = request.quiz
    keep_result = quiz is not None and all_answers_kept and bool(quiz.answers)
    connection.execute(
        _INSERT_SUBMISSION,
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
    answer_rows = [
        {
            "submission_id": request.submission_id,
            "subject_id": subject_id,
            "field": name,
            "value": value,
        }
        for name, values in kept.items()
        for value in values
    ]
    if answer_rows:
        connection.execute(_INSERT_ANSWERS, answer_rows)
    source = ConsentSource.QUIZ if definition.is_quiz else ConsentSource.FORM
    source_ref = f"{definition.slug}@v{request.published.version}"
    drafts: list[ledger.EntryDraft] = []
    pending: list[str] = []
    for purpose in ticked:
        override = definition.doi_override(purpose)
        double_opt_in = info[purpose].double_opt_in if override is None else override
        confirmation_required = double_opt_in and not states.get(purpose, ("", False))[1]
        if confirmation_required:
            pending.append(purpose)
        drafts.append(
            ledger.EntryDraft(
                subject_id=subject_id,
                purpose=purpose,
                action=ConsentAction.GRANTED.value,
                source=source.value,
                method=ConsentMethod.CHECKBOX.value,
                occurred_at=request.occurred_at,
                notice_sha256=request.notices[purpose],
                confirmation_required=confirmation_required,
                source_ref=source_ref,
                jurisdiction=jurisdiction,
                locale=definition.locale,
                evidence=request.evidence,
            )
        )
    opted_out: list[str] = []
    if request.gpc:
        for purpose in sharing:
            if states.get(purpose, ("", False))[0] in NEGATIVE_STATUSES:
                continue  # already refused: the signal changes nothing
            opted_out.append(purpose)
            drafts.append(
                ledger.EntryDraft(
                    subject_id=subject_id,
                    purpose=purpose,
                    action=ConsentAction.GPC_OPT_OUT.value,
                    source=source.value,
                    method=ConsentMethod.GPC_SIGNAL.value,
                    occurred_at=request.occurred_at,
                    source_ref=source_ref,
                    jurisdiction=jurisdiction,
                    locale=definition.locale,
                    evidence=request.evidence,
                )
            )
    if pending:
        token = tokens.issue_confirm(
            ConfirmToken(subject_id, tuple(pending), request.submission_id)
        )
        mail = confirmation_mail(email, [info[p] for p in pending], f"{base_url}/confirm/{token}")
        if lead_links is not None:
            # One-click unsubscribe withdraws exactly the purposes this mail is about.
            mail = with_lead_links(mail, lead_links(session, subject_id, list(pending)))
        queue_mail(session, mail, subject_id=subject_id)
        session.flush()
    result = SubmissionResult(
        submission_id=request.submission_id,
        kept=tuple(kept),
        granted=tuple(p for p in ticked if p not in pending),
        pending_confirmation=tuple(pending),
        gpc_opt_out=tuple(opted_out),
        outcome=quiz.outcome.key if quiz is not None and quiz.outcome else None,
        mail_queued=bool(pending),
    )
    connection.execute(
        _INSERT_IDEMPOTENCY,
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
    if ratelimit.hit(session, request.rate_bucket, limit.window_seconds) > limit.count:
        raise RateLimited("too many submissions from your network for this form; try again later")
    ledger.append_many(session, drafts)
    if lead_signals.listening():  # scoring listens (zeroparty.app imports it); same transaction
        lead_signals.publish(session, _lead_signal(request, subject_id, kept))
    return result


def _lead_signal(
    request: SubmissionRequest, subject_id: str, kept: Mapping[str, tuple[str, ...]]
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
        subject_id,
        request.occurred_at,
        f"{definition.slug}@v{request.published.version}",
        tuple(inputs),
    )


def confirmation_mail(to: str, purposes: Sequence[PurposeInfo], link: str) -> Mail:
    titles = ", ".join(p.title for p in purposes)
    text = (
        "Hello,\n\n"
        f"someone, hopefully you, asked to receive: {titles}.\n\n"
        "To confirm, open this link and press the Confirm button:\n"
        f"{link}\n\n"
        "If it was not you, ignore this mail: nothing will be sent to you, and this "
        "address stays unsubscribed.\n"
    )
    return Mail(to=to, subject=f"Please confirm: {titles}", text=text)


def new_submission_id() -> str:
    return secrets.token_hex(16)
