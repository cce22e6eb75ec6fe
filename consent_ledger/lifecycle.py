"""Consent over time (issue 16): grants made stale by a material notice change expire.

A notice version marked ``material`` (the default for a changed text, see
:mod:`consent_ledger.site`) makes every grant of the purpose under an earlier version
of the same locale stale: the lead agreed to a text that no longer describes what is
done. :func:`expire_stale_grants` appends one ``expired`` entry per affected lead and
purpose (source and method ``system``, ``source_ref`` naming the version that made it
stale), so the lead is no longer permitted: the API, scoring (its consent listener, in
the same transaction), audiences and exports read the ledger's state and follow at once.
Each lead is mailed a re-permission mail (the new text, what changed, a link to the
preference page where the box is unticked), queued in the same transaction as the
expiry so neither is ever without the other.

Batched and resumable: each batch is its own write transaction and the query finds
only leads still permitted (or pending) under a stale version, so a run stopped halfway
(a crash, a deploy) carries on where it stopped, and running twice appends nothing
twice. On PostgreSQL the batch's state rows are locked (``FOR UPDATE SKIP LOCKED``): a
lead who re-grants under the new text meanwhile is re-read, no longer matches, and is
left alone; another process running the job takes other rows.

An ``editorial`` version keeps consent: nothing expires, and the version history
(:meth:`ConsentLedger.notice_versions`) says so.

Expiry: a purpose with ``expires_after_days`` lapses that many days after the grant
began (the state's ``since``: the grant, or its double opt-in confirmation; a renewal
starts it again). :func:`expire_due_grants` appends the ``expired`` entry at that very
moment (``occurred_at`` = since + days, never later however late the job runs), so
point-in-time answers (``consent_at``) are exact. With ``remind_before_days``,
:func:`remind_due_grants` mails the lead once per grant that many days before, with
the date and how to renew (save the preference page with the box ticked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from babel.dates import format_date
from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import Session, aliased

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.models import (
    ConsentExpiryReminder,
    ConsentState,
    NoticeVersion,
    Purpose,
    Subject,
    SubjectProfile,
)
from zeroparty import i18n
from zeroparty.db import Database, utcnow
from zeroparty.i18n import N_
from zeroparty.mail import LeadLinker, Mail, in_language, queue_mail, with_lead_links

if TYPE_CHECKING:
    from consent_ledger.api import ConsentLedger

BATCH_SIZE = 500
POLL_SECONDS = 60.0
# States a stale version must not keep: live, or waiting for a confirmation that would
# make an old text live.
_HELD = ("granted", "confirmed", "pending")
MATERIAL = "material"


@dataclass(frozen=True, slots=True)
class StaleGrant:
    """One lead's state for a purpose under a version a material change made stale."""

    subject_id: str
    purpose: str
    title: str
    email: str | None
    stale_sha256: str
    new_version: int
    new_locale: str
    new_sha256: str
    new_text: str
    summary: str | None
    translations: str | None = None  # the purpose's title in other languages (JSON)


_old = aliased(NoticeVersion, name="old_notice")
_new = aliased(NoticeVersion, name="new_notice")
_STALE = (
    select(
        ConsentState.subject_id,
        ConsentState.purpose_key,
        Purpose.title,
        SubjectProfile.email,
        ConsentState.notice_sha256,
        _new.version,
        _new.locale,
        _new.sha256,
        _new.text,
        _new.change_summary,
        Purpose.translations,
    )
    .join(
        _old,
        and_(
            _old.sha256 == ConsentState.notice_sha256,
            _old.purpose_key == ConsentState.purpose_key,
        ),
    )
    .join(
        _new,
        and_(
            _new.purpose_key == _old.purpose_key,
            _new.locale == _old.locale,
            _new.version > _old.version,
            _new.change == MATERIAL,
        ),
    )
    .join(Purpose, Purpose.key == ConsentState.purpose_key)
    .outerjoin(SubjectProfile, SubjectProfile.subject_id == ConsentState.subject_id)
    .where(ConsentState.status.in_(_HELD))
    .order_by(ConsentState.subject_id, ConsentState.purpose_key, _new.version.desc())
)


def stale_grants(session: Session, limit: int) -> list[StaleGrant]:
    """Up to ``limit`` (lead, purpose) pairs held under a stale notice version, each
    with the newest material version that made it stale."""
    stmt = _STALE.limit(limit * 4)  # a pair may match several newer versions
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=ConsentState, skip_locked=True)
    found: dict[tuple[str, str], StaleGrant] = {}
    rows: list[tuple[Any, ...]] = [tuple(row) for row in session.execute(stmt)]
    for row in rows:
        key = (row[0], row[1])
        if key not in found and len(found) < limit:
            found[key] = StaleGrant(*row)
    return list(found.values())


# The lifecycle's mails, in the language of the notice the lead agreed to (the ledger's
# catalogue, consent_ledger/locale).
REPERMISSION_SUBJECT = N_("Please agree again: %(title)s")
REPERMISSION_CHANGED = N_("The text you agreed to has changed.")
REPERMISSION_TEXT = N_(
    'Hello,\n\nwe have changed what we ask your consent for: "%(title)s".\n\n'
    "What changed: %(changed)s\n\nThe new text:\n%(text)s\n\n"
    'Your earlier consent no longer covers this, so we have stopped "%(title)s" '
    "for you. If you agree to the new text, tick its box on your preference page "
    "(the link below); if you do nothing, nothing more is sent to you for it.\n"
)
REMINDER_SUBJECT = N_("Your consent ends on %(day)s: %(title)s")
REMINDER_TEXT = N_(
    'Hello,\n\nyour consent to "%(title)s" ends on %(day)s (UTC), as we ask it again '
    "from time to time.\n\n"
    "To keep it, open your preference page (the link below), leave the box ticked "
    "and press Save. If you do nothing, it ends on that day and nothing more is "
    "sent to you for it.\n"
)


def repermission_mail(grant: StaleGrant) -> Mail:
    """The mail asking a lead again: the new text, what changed, where to agree; in
    the language of the notice (the one the lead agreed to)."""
    language = i18n.choose_language(i18n.languages(), recorded=grant.new_locale)
    changed = grant.summary or i18n.gettext(language, REPERMISSION_CHANGED)
    title = i18n.site_text(grant.title, grant.translations, grant.new_locale)
    values = {"title": title, "changed": changed, "text": grant.new_text}
    text = i18n.gettext(language, REPERMISSION_TEXT) % values
    subject = i18n.gettext(language, REPERMISSION_SUBJECT) % {"title": title}
    assert grant.email is not None
    return Mail(to=grant.email, subject=subject, text=text, headers=in_language(language))


def expire_batch(
    session: Session,
    ledger: ConsentLedger,
    *,
    lead_links: LeadLinker | None,
    now: datetime,
    limit: int = BATCH_SIZE,
) -> list[StaleGrant]:
    """Expire one batch in the caller's write transaction; returns what it expired."""
    from consent_ledger.api import ConsentChange

    grants = stale_grants(session, limit)
    if not grants:
        return []
    changes = [
        ConsentChange(
            subject_id=g.subject_id,
            purpose=g.purpose,
            action=ConsentAction.EXPIRED,
            source=ConsentSource.SYSTEM,
            method=ConsentMethod.SYSTEM,
            occurred_at=now,
            notice_sha256=g.stale_sha256,
            source_ref=f"notice:{g.purpose}/{g.new_locale}/v{g.new_version}"[:200],
            evidence={"reason": "material notice change", "new_notice_sha256": g.new_sha256},
        )
        for g in grants
    ]
    ledger.record(session, changes)
    for grant in grants:
        if grant.email is None:
            continue  # erased meanwhile: nobody to ask
        mail = repermission_mail(grant)
        if lead_links is not None:
            mail = with_lead_links(mail, lead_links(session, grant.subject_id, [grant.purpose]))
        queue_mail(session, mail, subject_id=grant.subject_id)
    return grants


def expire_stale_grants(
    database: Database,
    ledger: ConsentLedger,
    *,
    lead_links: LeadLinker | None,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
) -> int:
    """Expire every stale grant, one batch per transaction; returns how many.

    ``max_batches`` stops early (the rest is left for the next run)."""
    total = batches = 0
    while max_batches is None or batches < max_batches:
        with database.write() as session:
            done: Sequence[StaleGrant] = expire_batch(
                session, ledger, lead_links=lead_links, now=now or utcnow(), limit=batch_size
            )
        total += len(done)
        batches += 1
        if len(done) < batch_size:
            break
    return total


# -- expiry -------------------------------------------------------------------------------

_LIVE = ("granted", "confirmed")


@dataclass(frozen=True, slots=True)
class ExpiringPurpose:
    key: str
    title: str
    expires_after_days: int
    remind_before_days: int | None
    translations: str | None = None  # the title in other languages (JSON)


_EXPIRING = (
    select(
        Purpose.key,
        Purpose.title,
        Purpose.expires_after_days,
        Purpose.remind_before_days,
        Purpose.translations,
    )
    .where(Purpose.expires_after_days.is_not(None))
    .order_by(Purpose.key)
)
_DUE = (
    select(ConsentState.subject_id, ConsentState.since, ConsentState.notice_sha256)
    .where(
        ConsentState.purpose_key == bindparam("purpose"),
        ConsentState.permitted.is_(True),
        ConsentState.status.in_(_LIVE),
        ConsentState.since <= bindparam("cutoff"),
    )
    .order_by(ConsentState.subject_id)
    .limit(bindparam("limit"))
)
_REMIND = (
    select(ConsentState.subject_id, ConsentState.since, SubjectProfile.email, Subject.locale)
    .join(SubjectProfile, SubjectProfile.subject_id == ConsentState.subject_id)
    .join(Subject, Subject.id == ConsentState.subject_id)
    .outerjoin(
        ConsentExpiryReminder,
        and_(
            ConsentExpiryReminder.subject_id == ConsentState.subject_id,
            ConsentExpiryReminder.purpose_key == ConsentState.purpose_key,
        ),
    )
    .where(
        ConsentState.purpose_key == bindparam("purpose"),
        ConsentState.permitted.is_(True),
        ConsentState.status.in_(_LIVE),
        ConsentState.since <= bindparam("remind_cutoff"),
        ConsentState.since > bindparam("expire_cutoff"),
        or_(
            ConsentExpiryReminder.grant_since.is_(None),
            ConsentExpiryReminder.grant_since != ConsentState.since,
        ),
    )
    .order_by(ConsentState.subject_id)
    .limit(bindparam("limit"))
)


def expiring_purposes(session: Session) -> list[ExpiringPurpose]:
    return [
        ExpiringPurpose(key, title, days, remind, translations)
        for key, title, days, remind, translations in session.execute(_EXPIRING)
        if days is not None
    ]


def _locked(session: Session, stmt: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(of=ConsentState, skip_locked=True)
    return stmt


def expire_batch_due(
    session: Session,
    ledger: ConsentLedger,
    purpose: ExpiringPurpose,
    *,
    now: datetime,
    limit: int = BATCH_SIZE,
) -> int:
    """Expire up to ``limit`` grants of ``purpose`` whose time ran out by ``now``, each
    at the moment it ran out; returns how many."""
    from consent_ledger.api import ConsentChange

    period = timedelta(days=purpose.expires_after_days)
    params = {"purpose": purpose.key, "cutoff": now - period, "limit": limit}
    rows = list(session.execute(_locked(session, _DUE), params))
    changes = [
        ConsentChange(
            subject_id=subject_id,
            purpose=purpose.key,
            action=ConsentAction.EXPIRED,
            source=ConsentSource.SYSTEM,
            method=ConsentMethod.SYSTEM,
            occurred_at=since + period,
            notice_sha256=notice,
            source_ref=f"expiry:{purpose.key}:{purpose.expires_after_days}d"[:200],
            evidence={"reason": "consent expired", "expires_after_days": period.days},
        )
        for subject_id, since, notice in rows
    ]
    ledger.record(session, changes)
    return len(changes)


def reminder_mail(
    to: str,
    title: str,
    ends: datetime,
    locale: str | None = None,
    translations: str | None = None,
) -> Mail:
    """The reminder before a consent expires, in the lead's language (``title`` in it
    too, where ``translations`` has it)."""
    language = i18n.choose_language(i18n.languages(), recorded=locale)
    title = i18n.site_text(title, translations, language)
    if language == i18n.SOURCE_LANGUAGE:
        day = ends.strftime("%d %B %Y")
    else:
        day = format_date(ends.date(), format="long", locale=language)
    values = {"title": title, "day": day}
    text = i18n.gettext(language, REMINDER_TEXT) % values
    subject = i18n.gettext(language, REMINDER_SUBJECT) % values
    return Mail(to=to, subject=subject, text=text, headers=in_language(language))


def remind_batch_due(
    session: Session,
    purpose: ExpiringPurpose,
    *,
    lead_links: LeadLinker | None,
    now: datetime,
    limit: int = BATCH_SIZE,
) -> int:
    """Mail the reminder to up to ``limit`` leads whose grant of ``purpose`` ends within
    ``remind_before_days`` and who were not reminded of this grant yet."""
    if purpose.remind_before_days is None:
        return 0
    period = timedelta(days=purpose.expires_after_days)
    params = {
        "purpose": purpose.key,
        "remind_cutoff": now - period + timedelta(days=purpose.remind_before_days),
        "expire_cutoff": now - period,
        "limit": limit,
    }
    rows = list(session.execute(_locked(session, _REMIND), params))
    for subject_id, since, email, locale in rows:
        mail = reminder_mail(email, purpose.title, since + period, locale, purpose.translations)
        if lead_links is not None:
            mail = with_lead_links(mail, lead_links(session, subject_id, [purpose.key]))
        queue_mail(session, mail, subject_id=subject_id)
        reminder = session.get(ConsentExpiryReminder, (subject_id, purpose.key))
        if reminder is None:
            session.add(ConsentExpiryReminder(subject_id=subject_id, purpose_key=purpose.key,
                                              grant_since=since, sent_at=now))  # fmt: skip
        else:
            reminder.grant_since, reminder.sent_at = since, now
    session.flush()
    return len(rows)


@dataclass(frozen=True, slots=True)
class LifecycleReport:
    """What one run of the lifecycle job did."""

    stale_expired: int
    expired: int
    reminded: int


def run_lifecycle(
    database: Database,
    ledger: ConsentLedger,
    *,
    lead_links: LeadLinker | None,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
) -> LifecycleReport:
    """Everything the lifecycle job does, each batch its own transaction: stale grants
    (material notice changes), grants whose time ran out, reminders before that."""
    stale = expire_stale_grants(database, ledger, lead_links=lead_links, now=now,
                                batch_size=batch_size, max_batches=max_batches)  # fmt: skip
    expired = reminded = 0
    with database.read() as session:
        purposes = expiring_purposes(session)
    for purpose in purposes:
        for step in ("expire", "remind"):
            batches = 0
            while max_batches is None or batches < max_batches:
                with database.write() as session:
                    moment = now or utcnow()
                    if step == "expire":
                        done = expire_batch_due(session, ledger, purpose, now=moment,
                                                limit=batch_size)  # fmt: skip
                        expired += done
                    else:
                        done = remind_batch_due(session, purpose, lead_links=lead_links,
                                                now=moment, limit=batch_size)  # fmt: skip
                        reminded += done
                batches += 1
                if done < batch_size:
                    break
    return LifecycleReport(stale, expired, reminded)
