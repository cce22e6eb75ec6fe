"""The preference center's domain logic: what a lead sees, and every change they make.

Every change is a ledger entry with source ``preference-center`` and evidence (the
minimised IP and user agent, which link opened the page, the topic set), appended in the
caller's transaction together with the kept consent state, so ``GET /api/consent``
answers the new state on the next request (SPEC rule 2).

Grants made here are live at once, without another double opt-in round: the lead
reached the page through a signed link mailed to the address, which is the proof of
mailbox control a confirmation mail would give.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource, Mechanism
from consent_ledger.entries import LedgerEntry
from consent_ledger.evidence import EvidenceError, EvidenceValue, clean_evidence
from consent_ledger.models import ConsentState, Purpose, Subject, SubjectProfile, Topic
from consent_ledger.projection import PENDING
from consent_ledger.services import current_notices, notice_for
from preference_center.locale import DEFAULT_LOCALE
from preference_center.models import TopicSubscription, TopicSubscriptionChange
from zeroparty.db import utcnow
from zeroparty.errors import InvalidInput, NotFound

SOURCE = ConsentSource.PREFERENCE_CENTER


@dataclass(frozen=True, slots=True)
class ChangeContext:
    """Who made a change and how: becomes the entries' evidence (minimised)."""

    method: ConsentMethod = ConsentMethod.EMAIL_LINK
    ip: str | None = None
    user_agent: str | None = None
    via: str = "preference-page"

    def evidence(
        self, extra: Mapping[str, EvidenceValue] | None = None
    ) -> dict[str, EvidenceValue]:
        raw: dict[str, EvidenceValue] = {"via": self.via}
        if self.ip:
            raw["ip"] = self.ip
        if self.user_agent:
            raw["user_agent"] = self.user_agent
        raw.update(extra or {})
        try:
            return clean_evidence(raw)
        except EvidenceError:
            raw.pop("ip", None)  # an unparseable client address is not worth refusing for
            return clean_evidence(raw)


@dataclass(frozen=True, slots=True)
class TopicView:
    key: str
    title: str
    description: str
    subscribed: bool


@dataclass(frozen=True, slots=True)
class PurposeView:
    key: str
    title: str
    description: str
    category: str
    mechanism: str
    notice_text: str
    notice_sha256: str
    notice_locale: str
    permitted: bool
    status: str
    topics: list[TopicView] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return self.status == PENDING


@dataclass(frozen=True, slots=True)
class PreferencePage:
    """Everything the preference page shows (the template's documented context)."""

    subject_id: str
    email: str
    locale: str
    purposes: list[PurposeView]


@dataclass(frozen=True, slots=True)
class Choices:
    """What the lead ticked: purposes on, topics on, and the notice shown per purpose."""

    purposes: frozenset[str]
    topics: frozenset[str]
    notices: Mapping[str, str]


class SubjectGone(NotFound):
    """The link is fine but its lead was erased (or never had a profile)."""

    code = "subject_erased"


def live_subject(session: Session, subject_id: str) -> tuple[Subject, SubjectProfile]:
    subject = session.get(Subject, subject_id)
    profile = session.get(SubjectProfile, subject_id)
    if subject is None or profile is None or subject.erased_at is not None:
        raise SubjectGone("there is no personal data behind this link any more")
    return subject, profile


def _states(session: Session, subject_id: str) -> dict[str, ConsentState]:
    rows = session.execute(select(ConsentState).where(ConsentState.subject_id == subject_id))
    return {row.purpose_key: row for row in rows.scalars()}


def _permitted(purpose: Purpose, state: ConsentState | None, jurisdiction: str | None) -> bool:
    """Current permission; without entries, the purpose's default (SPEC rule 8)."""
    if state is not None:
        return bool(state.permitted)
    if purpose.mechanism == Mechanism.OPT_OUT and jurisdiction:
        return jurisdiction in orjson.loads(purpose.jurisdictions)
    return False


def _subscriptions(session: Session, subject_id: str) -> dict[str, bool]:
    stmt = select(TopicSubscription.topic_key, TopicSubscription.subscribed).where(
        TopicSubscription.subject_id == subject_id
    )
    return {key: bool(on) for key, on in session.execute(stmt).all()}


def _topics_by_purpose(session: Session) -> dict[str, list[Topic]]:
    grouped: dict[str, list[Topic]] = {}
    for topic in session.execute(select(Topic).order_by(Topic.key)).scalars():
        grouped.setdefault(topic.purpose_key, []).append(topic)
    return grouped


def preference_page(session: Session, subject_id: str, locale: str) -> PreferencePage:
    """The lead's purposes (with the current notice in ``locale``), states and topics."""
    subject, profile = live_subject(session, subject_id)
    notices: dict[str, dict[str, tuple[str, str]]] = {}
    for notice in current_notices(session):
        notices.setdefault(notice.purpose, {})[notice.locale] = (notice.text, notice.notice_sha256)
    states = _states(session, subject_id)
    subscribed = _subscriptions(session, subject_id)
    topics = _topics_by_purpose(session)
    views: list[PurposeView] = []
    for purpose in session.execute(select(Purpose).order_by(Purpose.key)).scalars():
        texts = notices.get(purpose.key)
        if not texts:
            continue  # a purpose without a notice cannot be agreed to
        shown_locale = (
            locale
            if locale in texts
            else (DEFAULT_LOCALE if DEFAULT_LOCALE in texts else sorted(texts)[0])
        )
        text, sha = texts[shown_locale]
        state = states.get(purpose.key)
        permitted = _permitted(purpose, state, subject.jurisdiction)
        views.append(
            PurposeView(
                key=purpose.key,
                title=purpose.title,
                description=purpose.description,
                category=purpose.category,
                mechanism=purpose.mechanism,
                notice_text=text,
                notice_sha256=sha,
                notice_locale=shown_locale,
                permitted=permitted,
                status=state.status if state is not None else "none",
                topics=[
                    TopicView(
                        t.key, t.title, t.description, permitted and subscribed.get(t.key, True)
                    )
                    for t in topics.get(purpose.key, [])
                ],
            )
        )
    return PreferencePage(subject_id, profile.email, locale, views)


def _withdrawal_action(purpose: Purpose) -> ConsentAction:
    # An opt-out purpose is refused ("do not sell or share"); an opt-in one withdrawn.
    return (
        ConsentAction.REFUSED if purpose.mechanism == Mechanism.OPT_OUT else ConsentAction.WITHDRAWN
    )


def _draft(
    subject: Subject,
    purpose: str,
    action: ConsentAction,
    context: ChangeContext,
    now: datetime,
    *,
    notice_sha256: str | None = None,
    locale: str | None = None,
    topics: Iterable[str] | None = None,
) -> ledger.EntryDraft:
    extra: dict[str, EvidenceValue] = {}
    if topics is not None:
        extra["topics"] = ",".join(sorted(topics))
    return ledger.EntryDraft(
        subject_id=subject.id,
        purpose=purpose,
        action=action.value,
        source=SOURCE.value,
        method=context.method.value,
        occurred_at=now,
        notice_sha256=notice_sha256,
        confirmation_required=False,
        jurisdiction=subject.jurisdiction,
        locale=locale or subject.locale,
        evidence=context.evidence(extra),
    )


def _record_topics(
    session: Session,
    subject_id: str,
    changes: Mapping[str, bool],
    ledger_seq: int | None,
    now: datetime,
) -> None:
    for key, on in sorted(changes.items()):
        row = session.get(TopicSubscription, (subject_id, key))
        if row is None:
            session.add(
                TopicSubscription(
                    subject_id=subject_id,
                    topic_key=key,
                    subscribed=on,
                    updated_at=now,
                    ledger_seq=ledger_seq,
                )
            )
        else:
            row.subscribed, row.updated_at, row.ledger_seq = on, now, ledger_seq
        session.add(
            TopicSubscriptionChange(
                subject_id=subject_id,
                topic_key=key,
                subscribed=on,
                occurred_at=now,
                ledger_seq=ledger_seq,
            )
        )


def validate_choices(session: Session, choices: Choices) -> None:
    """Refuse unknown purposes and topics, and grants without a notice of their purpose."""
    errors: dict[str, str] = {}
    known_purposes = set(session.execute(select(Purpose.key)).scalars())
    known_topics = set(session.execute(select(Topic.key)).scalars())
    unknown = sorted(choices.purposes - known_purposes)
    if unknown:
        errors["purpose"] = f"unknown purpose {unknown[0][:64]!r}"
    unknown_topics = sorted(choices.topics - known_topics)
    if unknown_topics:
        errors["topic"] = f"unknown topic {unknown_topics[0][:64]!r}"
    if errors:
        raise InvalidInput("the form names something that does not exist", fields=errors)


def apply_choices(
    session: Session, subject_id: str, choices: Choices, context: ChangeContext
) -> list[LedgerEntry]:
    """Bring the lead's consents and topics to ``choices``; one ledger entry per change.

    A purpose turned on is granted under the notice shown (its hash comes with the form);
    turned off, withdrawn (refused, for opt-out purposes); left on with a different
    topic set, re-affirmed with the new topic set as evidence. A pending grant left
    unticked stays pending: not ticking is not an act.
    """
    validate_choices(session, choices)
    subject, _profile = live_subject(session, subject_id)
    states = _states(session, subject_id)
    subscribed = _subscriptions(session, subject_id)
    topics = _topics_by_purpose(session)
    now = utcnow()
    drafts: list[ledger.EntryDraft] = []
    topic_changes: list[dict[str, bool]] = []
    for purpose in session.execute(select(Purpose).order_by(Purpose.key)).scalars():
        state = states.get(purpose.key)
        was_on = _permitted(purpose, state, subject.jurisdiction)
        want_on = purpose.key in choices.purposes
        own_topics = [t.key for t in topics.get(purpose.key, [])]
        before = {k: was_on and subscribed.get(k, True) for k in own_topics}
        after = {k: want_on and k in choices.topics for k in own_topics}
        changed = {
            k: on for k, on in after.items() if subscribed.get(k, True) != on or before[k] != on
        }
        wanted_topics = [k for k, on in after.items() if on]
        if want_on and (not was_on or before != after):
            sha = choices.notices.get(purpose.key)
            notice = notice_for(session, purpose.key, sha) if sha else None
            if notice is None:
                reason = "the notice shown with this purpose is missing or not its own"
                raise InvalidInput(
                    f"notice.{purpose.key}: {reason}", fields={f"notice.{purpose.key}": reason}
                )
            drafts.append(
                _draft(
                    subject,
                    purpose.key,
                    ConsentAction.GRANTED,
                    context,
                    now,
                    notice_sha256=notice.sha256,
                    locale=notice.locale,
                    topics=wanted_topics if own_topics else None,
                )
            )
            topic_changes.append(changed)
        elif not want_on and was_on:
            drafts.append(_draft(subject, purpose.key, _withdrawal_action(purpose), context, now))
            topic_changes.append(changed)
        elif changed:
            # Topics of a purpose that stays off: stored off, nothing to tell the ledger.
            _record_topics(session, subject_id, changed, None, now)
    entries = ledger.append_many(session, drafts)
    for entry, changed in zip(entries, topic_changes, strict=True):
        if changed:
            _record_topics(session, subject_id, changed, entry.seq, now)
    return entries


def withdraw_purposes(
    session: Session,
    subject_id: str,
    purposes: Iterable[str] | None,
    context: ChangeContext,
) -> list[LedgerEntry]:
    """Withdraw ``purposes`` (``None``: every purpose) where permitted or pending.

    Idempotent: a purpose already off gets no entry, so a mail provider retrying a
    one-click unsubscribe records nothing new.
    """
    subject, _profile = live_subject(session, subject_id)
    states = _states(session, subject_id)
    wanted = None if purposes is None else set(purposes)
    subscribed = _subscriptions(session, subject_id)
    topics = _topics_by_purpose(session)
    now = utcnow()
    drafts: list[ledger.EntryDraft] = []
    topic_changes: list[dict[str, bool]] = []
    for purpose in session.execute(select(Purpose).order_by(Purpose.key)).scalars():
        if wanted is not None and purpose.key not in wanted:
            continue
        state = states.get(purpose.key)
        on = _permitted(purpose, state, subject.jurisdiction)
        if not on and not (state is not None and state.status == PENDING):
            continue
        drafts.append(_draft(subject, purpose.key, _withdrawal_action(purpose), context, now))
        topic_changes.append(
            {t.key: False for t in topics.get(purpose.key, []) if subscribed.get(t.key, True)}
        )
    entries = ledger.append_many(session, drafts)
    for entry, changed in zip(entries, topic_changes, strict=True):
        if changed:
            _record_topics(session, subject_id, changed, entry.seq, now)
    return entries
