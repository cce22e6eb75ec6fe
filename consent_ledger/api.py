"""The one way into the consent ledger for every other package: :class:`ConsentLedger`.

The app factory and the CLI build one ``ConsentLedger`` from explicit arguments: the
database, the listeners told of every append (scores follow a withdrawal in the same
transaction, SPEC rule 2), the providers of personal data (what access and erasure
cover) and the listeners of lead signals (answers handed to scoring). Nothing is
registered at import time, so two apps in one process can be wired differently, and
what erasure removes is whatever the app was built with.

Writes run in the caller's write transaction (an ORM session from
:meth:`Database.write` or a plain connection from :meth:`Database.write_connection`),
so a feature's own rows and the ledger's entries commit or roll back together. Every
change goes through :meth:`ConsentLedger.record`, which validates purposes and notice
versions, decides double opt-in and refuses times in the future, once, for the whole
batch. Reads take any connection or session.

The ledger's tables (``consent_ledger.models``) and its append internals
(``consent_ledger.ledger``, ``consent_ledger.append_sql``, ``consent_ledger.projection``)
are private to this package: the import contract in ``pyproject.toml`` (``lint-imports``)
keeps other packages out of them. Queries of other packages that must join consent in
SQL use the read-only selectables of :mod:`consent_ledger.read_model`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session, aliased

from consent_ledger import erasure, ledger, projection, services, state, subjects
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource, PurposeCategory
from consent_ledger.entries import LedgerEntry
from consent_ledger.erasure import ErasureResult, scrub_sqlite
from consent_ledger.evidence import EvidenceValue
from consent_ledger.filters import LedgerFilter
from consent_ledger.listeners import ConsentListener
from consent_ledger.models import (
    ConsentEvent,
    ConsentEvidence,
    NoticeVersion,
    Purpose,
    Subject,
    SubjectProfile,
)
from consent_ledger.projection import NO_RECORD, PENDING, is_negative
from consent_ledger.state import ConsentAnswer, UnknownPurpose
from consent_ledger.subjects import InvalidEmail, normalise_email
from zeroparty.db import Database, Prepared, Transaction, connection_of, driver_cursor, utcnow
from zeroparty.errors import InvalidInput
from zeroparty.lead_signals import LeadSignal, LeadSignalListener
from zeroparty.personal_data import PersonalData

__all__ = [
    "NO_RECORD",
    "PENDING",
    "ConsentAnswer",
    "ConsentChange",
    "ConsentLedger",
    "ConsentListener",
    "ConsentRecord",
    "ErasureResult",
    "InvalidEmail",
    "LeadRef",
    "StateAsOf",
    "UnknownPurpose",
    "is_negative",
    "normalise_email",
    "scrub_sqlite",
]

ConsentRecord = services.ConsentRecord
LeadRef = subjects.SubjectRef


class StateAsOf(NamedTuple):
    """A lead's consent for one purpose as of one ledger entry
    (:meth:`ConsentLedger.states_as_of`): ``grant_seq`` is the last grant's entry."""

    permitted: bool
    since: datetime | None
    notice_sha256: str | None
    grant_seq: int | None


@dataclass(frozen=True, slots=True)
class ConsentChange:
    """One change of one known lead's consent for one purpose, before validation.

    ``confirmed``: the grant was confirmed already (a double opt-in confirmation, or an
    import whose evidence shows it); otherwise a grant of a double opt-in purpose is
    recorded as pending until a ``confirmed`` entry follows.
    """

    subject_id: str
    purpose: str
    action: ConsentAction
    source: ConsentSource
    method: ConsentMethod
    occurred_at: datetime | None = None
    notice_sha256: str | None = None
    confirmed: bool = False
    source_ref: str | None = None
    jurisdiction: str | None = None
    locale: str | None = None
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)
    proven_mailbox: bool = False
    """The submitter proved control of the lead's mailbox (a signed link mailed to it)
    without confirming this grant: a grant of a double opt-in purpose is then live at
    once only under a notice version the lead has confirmed before, else pending until
    a ``confirmed`` entry follows (double opt-in again for a new text)."""


# Purposes of a batch and, where named, the notice versions they were shown, in one
# statement: (purpose, double opt-in, notice hash if it belongs to the purpose, locale,
# whether a material change replaced that version since: issue 16).
_NEWER_MATERIAL = aliased(NoticeVersion, name="newer_material")
_PURPOSES_AND_NOTICES = (
    select(
        Purpose.key,
        Purpose.double_opt_in,
        NoticeVersion.sha256,
        NoticeVersion.locale,
        exists()
        .where(
            _NEWER_MATERIAL.purpose_key == NoticeVersion.purpose_key,
            _NEWER_MATERIAL.locale == NoticeVersion.locale,
            _NEWER_MATERIAL.version > NoticeVersion.version,
            _NEWER_MATERIAL.change == "material",
        )
        .label("superseded"),
    )
    .outerjoin(
        NoticeVersion,
        (NoticeVersion.purpose_key == Purpose.key)
        & NoticeVersion.sha256.in_(bindparam("hashes", expanding=True)),
    )
    .where(Purpose.key.in_(bindparam("purposes", expanding=True)))
)


# The same, with whether one lead (``sid``) has confirmed each notice version named: a
# ``confirmed`` entry, or a grant that needed no confirmation, of the purpose under that
# version or an earlier one of its locale with no material change since (an editorial
# change keeps consent, issue 16).
_CONFIRMED_EVENT = cast(Table, ConsentEvent.__table__).alias("confirmed_event")
_CONFIRMED_NOTICE = aliased(NoticeVersion, name="confirmed_notice")
_MATERIAL_SINCE = aliased(NoticeVersion, name="material_since")
_PURPOSES_NOTICES_CONFIRMED = _PURPOSES_AND_NOTICES.add_columns(
    exists()
    .where(
        _CONFIRMED_EVENT.c.subject_id == bindparam("sid"),
        _CONFIRMED_EVENT.c.purpose_key == Purpose.key,
        or_(
            _CONFIRMED_EVENT.c.action == ConsentAction.CONFIRMED.value,
            and_(
                _CONFIRMED_EVENT.c.action == ConsentAction.GRANTED.value,
                _CONFIRMED_EVENT.c.confirmation_required.is_(False),
            ),
        ),
        _CONFIRMED_NOTICE.sha256 == _CONFIRMED_EVENT.c.notice_sha256,
        _CONFIRMED_NOTICE.purpose_key == Purpose.key,
        _CONFIRMED_NOTICE.locale == NoticeVersion.locale,
        _CONFIRMED_NOTICE.version <= NoticeVersion.version,
        ~exists().where(
            _MATERIAL_SINCE.purpose_key == Purpose.key,
            _MATERIAL_SINCE.locale == NoticeVersion.locale,
            _MATERIAL_SINCE.version > _CONFIRMED_NOTICE.version,
            _MATERIAL_SINCE.version <= NoticeVersion.version,
            _MATERIAL_SINCE.change == "material",
        ),
    )
    .label("confirmed")
)


# On the driver's cursor: every consent change asks one of these first.
_PURPOSES_OF_BATCH = Prepared(_PURPOSES_AND_NOTICES)
_PURPOSES_OF_BATCH_CONFIRMED = Prepared(_PURPOSES_NOTICES_CONFIRMED)


class ConsentLedger:
    """The ledger as every other package sees it. See the module's docstring."""

    def __init__(
        self,
        database: Database,
        *,
        listeners: Iterable[ConsentListener] = (),
        personal_data: Iterable[PersonalData] = (),
        signal_listeners: Iterable[LeadSignalListener] = (),
    ) -> None:
        self.database = database
        self._listeners = tuple(listeners)
        # The ledger's own part of a person's data (profile, evidence, mails) last:
        # feature packages may still need the profile to find their rows.
        self._personal_data = (*personal_data, erasure.LEDGER_PERSONAL_DATA)
        self._signal_listeners = tuple(signal_listeners)

    # -- writes ------------------------------------------------------------------

    def record(self, tx: Transaction, changes: Sequence[ConsentChange]) -> list[LedgerEntry]:
        """Validate ``changes`` and append them in order, in the caller's write
        transaction; returns the entries as chained. Raises :class:`UnknownPurpose` or
        :class:`InvalidInput` (nothing appended) when one of them is not valid."""
        if not changes:
            return []
        connection = connection_of(tx)
        double_opt_in, notice_locale, confirmed = self._purposes_of_batch(connection, changes)
        now = utcnow()
        drafts = [self._draft(c, double_opt_in, notice_locale, now) for c in changes]
        drafts = self._reconfirm_unconfirmed_notices(connection, changes, drafts, confirmed)
        return ledger.append_many(tx, drafts, listeners=self._listeners)

    @staticmethod
    def _draft(
        change: ConsentChange,
        double_opt_in: Mapping[str, bool],
        notice_locale: Mapping[tuple[str, str], str],
        now: datetime,
    ) -> ledger.EntryDraft:
        if change.purpose not in double_opt_in:
            raise UnknownPurpose(change.purpose)
        occurred_at = change.occurred_at or now
        if occurred_at > now + services.CLOCK_SKEW:
            raise InvalidInput(
                "occurred_at: lies in the future", fields={"occurred_at": "lies in the future"}
            )
        locale = change.locale
        if change.notice_sha256 is not None:
            shown = notice_locale.get((change.purpose, change.notice_sha256))
            if shown is None:
                reason = f"is not a notice version of purpose {change.purpose!r}"
                raise InvalidInput(f"notice_sha256: {reason}", fields={"notice_sha256": reason})
            locale = locale or shown
        elif change.action is ConsentAction.GRANTED:
            reason = "required when consent is granted: the hash of the notice text shown"
            raise InvalidInput(f"notice_sha256: {reason}", fields={"notice_sha256": reason})
        return ledger.EntryDraft(
            subject_id=change.subject_id,
            purpose=change.purpose,
            action=change.action.value,
            source=change.source.value,
            method=change.method.value,
            occurred_at=occurred_at,
            notice_sha256=change.notice_sha256,
            confirmation_required=(
                change.action is ConsentAction.GRANTED
                and double_opt_in[change.purpose]
                and not change.confirmed
                and change.method is not ConsentMethod.DOUBLE_OPT_IN
            ),
            source_ref=change.source_ref,
            jurisdiction=change.jurisdiction,
            locale=locale,
            evidence=change.evidence,
        )

    def record_by_email(self, tx: Transaction, record: ConsentRecord) -> LedgerEntry:
        """One change for a lead named by (normalised) email, the lead created if new:
        what ``POST /api/consent`` records. Validated as :meth:`record` validates."""
        return services.record_consent(tx, record, listeners=self._listeners)

    def ensure_lead(
        self,
        tx: Transaction,
        email: str,
        *,
        name: str | None = None,
        locale: str | None = None,
        jurisdiction: str | None = None,
    ) -> LeadRef:
        """The lead with this normalised email, created if new; a known lead takes the
        jurisdiction given and a locale it lacked."""
        return subjects.ensure_subject(
            tx, email, name=name, locale=locale, jurisdiction=jurisdiction
        )

    def create_lead(
        self,
        tx: Transaction,
        email: str,
        *,
        name: str | None = None,
        locale: str | None = None,
        jurisdiction: str | None = None,
    ) -> LeadRef:
        """A new lead for an email just found unknown in this write transaction (the
        hot path of a signup: no second look-up)."""
        return subjects.create_subject(
            tx, email, name=name, locale=locale, jurisdiction=jurisdiction
        )

    def publish_signals(self, tx: Transaction, signals: Sequence[LeadSignal]) -> None:
        """Hand what leads told us (answers with their purposes) to the packages that
        derive data from it, in the caller's transaction."""
        if signals and self._signal_listeners:
            for listener in self._signal_listeners:
                listener(tx, signals)

    def erase(
        self,
        session: Session,
        subject_id: str,
        *,
        source: ConsentSource = ConsentSource.CONSOLE,
        method: ConsentMethod = ConsentMethod.SYSTEM,
        source_ref: str | None = None,
    ) -> erasure.ErasureResult:
        """Erase a lead's personal data, every package's part, and append ``erased``
        entries (SPEC rule 5); idempotent."""
        return erasure.erase_subject(
            session,
            subject_id,
            providers=self._personal_data,
            listeners=self._listeners,
            source=source,
            method=method,
            source_ref=source_ref,
        )

    # -- reads ---------------------------------------------------------------------

    def personal_data(self, session: Session, subject_id: str) -> dict[str, Any]:
        """Every package's part of a lead's personal data, by provider name (GDPR Art.
        15/20); a provider with nothing to say is left out."""
        sections: dict[str, Any] = {}
        for provider in self._personal_data:
            section = provider.export(session, subject_id)
            if section is not None:
                sections[provider.name] = section
        return sections

    @property
    def personal_data_providers(self) -> tuple[PersonalData, ...]:
        return self._personal_data

    def find_lead(self, tx: Transaction, email: str) -> str | None:
        """The lead id of a normalised email, or ``None``."""
        return subjects.find_subject_id(tx, email)

    def consent(self, tx: Transaction, email: str, purpose: str) -> ConsentAnswer:
        """Whether ``email`` (normalised) may be contacted for ``purpose`` now."""
        return state.consent_now(tx, email, purpose)

    def consent_at(
        self, tx: Transaction, subject_id: str, purpose: str, at: datetime
    ) -> ConsentAnswer:
        """What a lead had permitted for ``purpose`` at ``at``, from the ledger itself."""
        return state.consent_at(tx, subject_id, purpose, at)

    def notices(self, session: Session, locale: str | None = None) -> list[services.NoticeView]:
        """Every purpose with its current notice version per locale."""
        return services.current_notices(session, locale)

    # -- console: the read queries the staff console shows -------------------------
    # Rows (not ORM objects) with the columns each docstring names; the console shapes
    # them into its pages.

    _LEAD_ID = re.compile(r"[0-9a-f]{32}")
    _EVENTS = cast(Table, ConsentEvent.__table__)
    _EVIDENCE = cast(Table, ConsentEvidence.__table__)
    _LEAD_CARDS = select(
        Subject.id.label("subject_id"),
        SubjectProfile.email,
        SubjectProfile.name,
        Subject.created_at,
        Subject.erased_at,
        Subject.jurisdiction,
        Subject.locale,
    ).outerjoin(SubjectProfile, SubjectProfile.subject_id == Subject.id)
    _TIMELINE = (
        select(
            _EVENTS,
            _EVIDENCE.c.body.label("evidence_body"),
            select(NoticeVersion.text)
            .where(NoticeVersion.sha256 == _EVENTS.c.notice_sha256)
            .limit(1)
            .scalar_subquery()
            .label("notice_text"),
        )
        .select_from(_EVENTS.outerjoin(_EVIDENCE, _EVIDENCE.c.seq == _EVENTS.c.seq))
        .order_by(_EVENTS.c.seq)
    )

    def search_leads(self, tx: Transaction, text: str, limit: int) -> list[Row[*tuple[Any, ...]]]:
        """Leads whose id is ``text``, whose email is ``text``, or else (at most
        ``limit``, by email) whose email starts with it; ``text`` lower-cased, as emails
        are stored. Columns as :meth:`lead_card`."""
        connection = connection_of(tx)
        if self._LEAD_ID.fullmatch(text):
            return list(connection.execute(self._LEAD_CARDS.where(Subject.id == text)))
        by_email = self._LEAD_CARDS
        # A whole address is found through the unique index; only a beginning needs a scan.
        exact = list(connection.execute(by_email.where(SubjectProfile.email == text)))
        if exact:
            return exact
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        prefix: ColumnElement[bool] = SubjectProfile.email.like(escaped + "%", escape="\\")
        if connection.dialect.name == "sqlite":
            # SQLite compares UTF-8 bytes: this range holds exactly the strings that start
            # with ``text`` and lets the index on email bound the scan (LIKE alone cannot:
            # SQLite's LIKE ignores case).
            prefix = and_(
                SubjectProfile.email >= text, SubjectProfile.email < text + "\U0010ffff", prefix
            )
        stmt = by_email.where(prefix).order_by(SubjectProfile.email).limit(limit)
        return list(connection.execute(stmt))

    def lead_card(self, tx: Transaction, subject_id: str) -> Row[*tuple[Any, ...]] | None:
        """One lead: ``subject_id, email, name, created_at, erased_at, jurisdiction,
        locale`` (email and name ``None`` once erased), or ``None`` if unknown."""
        stmt = self._LEAD_CARDS.where(Subject.id == subject_id)
        return connection_of(tx).execute(stmt).one_or_none()

    def timeline(self, tx: Transaction, subject_id: str, limit: int) -> list[Row[*tuple[Any, ...]]]:
        """A lead's entries in order, at most ``limit``: every column of an entry, with
        ``evidence_body`` (the kept evidence as JSON text, ``None`` once erased) and
        ``notice_text`` (the text its notice hash names)."""
        stmt = self._TIMELINE.where(self._EVENTS.c.subject_id == subject_id).limit(limit)
        return list(connection_of(tx).execute(stmt))

    def purpose_keys(self, tx: Transaction) -> list[str]:
        """Every purpose's key, sorted."""
        return list(connection_of(tx).scalars(select(Purpose.key).order_by(Purpose.key)))

    def notice_versions(self, tx: Transaction) -> list[Row[*tuple[Any, ...]]]:
        """Every notice version: ``purpose_key, locale, version, sha256, created_at,
        text``, and ``change`` (``initial``, ``material``: earlier grants expire, or
        ``editorial``: consent kept) with ``change_summary``, by purpose, locale and
        version."""
        stmt = select(
            NoticeVersion.purpose_key,
            NoticeVersion.locale,
            NoticeVersion.version,
            NoticeVersion.sha256,
            NoticeVersion.created_at,
            NoticeVersion.text,
            NoticeVersion.change,
            NoticeVersion.change_summary,
        ).order_by(NoticeVersion.purpose_key, NoticeVersion.locale, NoticeVersion.version)
        return list(connection_of(tx).execute(stmt))

    def entries_page(
        self, tx: Transaction, ledger_filter: LedgerFilter, before: int | None, limit: int
    ) -> list[Row[*tuple[Any, ...]]]:
        """Entries matching ``ledger_filter``, newest first, below seq ``before`` if
        given, at most ``limit``: ``seq, subject_id, purpose_key, action, source,
        source_ref, method, occurred_at, notice_sha256``."""
        ev = self._EVENTS.c
        stmt = (
            select(
                ev.seq,
                ev.subject_id,
                ev.purpose_key,
                ev.action,
                ev.source,
                ev.source_ref,
                ev.method,
                ev.occurred_at,
                ev.notice_sha256,
            )
            .where(*ledger_filter.clauses())
            .order_by(ev.seq.desc())
            .limit(limit)
        )
        if before is not None:
            stmt = stmt.where(ev.seq < before)
        return list(connection_of(tx).execute(stmt))

    def daily_counts(
        self, tx: Transaction, since: datetime, actions: Sequence[str]
    ) -> list[Row[*tuple[Any, ...]]]:
        """Entries that occurred from ``since`` with one of ``actions``, counted per
        ``day`` (UTC; a date or its ISO text, as the database gives it), ``action,
        purpose_key, source, source_ref, confirmation_required``: those columns and
        ``count``."""
        ev = self._EVENTS.c
        day = func.date(ev.occurred_at)
        keys = (day, ev.action, ev.purpose_key, ev.source, ev.source_ref)
        stmt = (
            select(*keys, ev.confirmation_required, func.count().label("count"))
            .where(ev.occurred_at >= since, ev.action.in_(actions))
            .group_by(*keys, ev.confirmation_required)
        )
        return list(connection_of(tx).execute(stmt))

    # -- capture: form submissions and their confirmations (capture.services) --------
    # Statements compiled once, run on the driver's cursor: a submission is the busiest
    # write path of the app.

    from consent_ledger import models as _m  # the tables these verbs read

    _PURPOSE_FACTS = Prepared(
        select(
            _m.Purpose.key,
            _m.Purpose.title,
            _m.Purpose.category,
            _m.Purpose.double_opt_in,
            _m.Purpose.translations,
        )
    )
    _FORM_NOTICES = Prepared(
        select(_m.NoticeVersion.purpose_key, _m.NoticeVersion.text, _m.NoticeVersion.sha256)
        .where(
            _m.NoticeVersion.purpose_key.in_(bindparam("purposes", expanding=True)),
            _m.NoticeVersion.locale == bindparam("locale"),
        )
        .order_by(_m.NoticeVersion.purpose_key, _m.NoticeVersion.version)
    )
    _LEAD_STATES = Prepared(
        select(
            _m.ConsentState.purpose_key,
            _m.ConsentState.status,
            _m.ConsentState.permitted,
            _m.ConsentState.notice_sha256,
        ).where(_m.ConsentState.subject_id == bindparam("sid"))
    )
    _TOPICS = Prepared(
        select(_m.Topic.key, _m.Topic.purpose_key).where(
            _m.Topic.purpose_key.in_(bindparam("purposes", expanding=True))
        )
    )
    _LEAD = Prepared(
        select(_m.Subject.id, _m.Subject.locale, _m.Subject.jurisdiction).where(
            _m.Subject.id == bindparam("sid")
        )
    )
    del _m

    def purpose_facts(self, tx: Transaction) -> list[tuple[str, str, str, bool, str | None]]:
        """Every purpose as ``(key, title, category, double_opt_in, translations)``
        (``translations``: the title in the site's other languages, for
        :func:`zeroparty.i18n.site_text`)."""
        return [tuple(row) for row in self._PURPOSE_FACTS.execute(connection_of(tx))]

    def latest_notices(
        self, tx: Transaction, purposes: Sequence[str], locale: str
    ) -> dict[str, tuple[str, str]]:
        """The current notice of each of ``purposes`` in ``locale``: purpose → (text,
        sha256); a purpose without a notice in that locale is left out."""
        if not purposes:
            return {}
        rows = self._FORM_NOTICES.execute(
            connection_of(tx), {"purposes": list(purposes), "locale": locale}
        )
        return {key: (text, sha256) for key, text, sha256 in rows}  # by version: last wins

    def lead_states(
        self, tx: Transaction, subject_id: str
    ) -> dict[str, tuple[str, bool, str | None]]:
        """A lead's state per purpose now: purpose → (status, permitted, notice_sha256)."""
        rows = self._LEAD_STATES.execute(connection_of(tx), {"sid": subject_id})
        return {key: (status, bool(permitted), sha) for key, status, permitted, sha in rows}

    def topics_of(self, tx: Transaction, purposes: Sequence[str]) -> dict[str, set[str]]:
        """The topic keys of each of ``purposes`` (purposes without topics left out)."""
        topics: dict[str, set[str]] = {}
        if purposes:
            rows = self._TOPICS.execute(connection_of(tx), {"purposes": list(purposes)})
            for key, purpose in rows:
                topics.setdefault(purpose, set()).add(key)
        return topics

    def lead(self, tx: Transaction, subject_id: str) -> LeadRef | None:
        """The lead with this id, or ``None`` (unknown)."""
        rows = self._LEAD.execute(connection_of(tx), {"sid": subject_id})
        return None if not rows else LeadRef(rows[0].id, rows[0].locale, rows[0].jurisdiction)

    def create_lead_if_new(
        self, tx: Transaction, email: str, *, locale: str | None = None
    ) -> LeadRef | None:
        """:meth:`create_lead` for an email just found unknown, or ``None`` when another
        transaction created a lead for it meanwhile (PostgreSQL; SQLite has one writer):
        a submission must not speak for a lead it did not create."""
        connection = connection_of(tx)
        if connection.dialect.name == "sqlite":
            return subjects.create_subject(connection, email, locale=locale)
        from consent_ledger.append_sql import append_sql

        sql = append_sql(connection.dialect.name)
        ref = LeadRef(subjects.new_subject_id(), locale, None)
        now = sql.bind_time(utcnow())
        with driver_cursor(connection) as cursor:
            cursor.execute(
                sql.insert_profile, (ref.id, locale, None, now, ref.id, email, None, now, now)
            )
            if cursor.fetchone() is not None:
                return ref
        # The profile yielded to a lead another transaction created (the insert waited
        # for that commit): drop the subject row written with it.
        connection.execute(subjects._DELETE_SUBJECT, {"sid": ref.id})
        return None

    def record_form(
        self,
        tx: Transaction,
        changes: Sequence[ConsentChange],
        double_opt_in: Mapping[str, bool],
    ) -> list[LedgerEntry]:
        """:meth:`record`, where a form decides double opt-in itself for the purposes in
        ``double_opt_in`` (purpose → required) instead of the purpose's own setting. A
        ``confirmed`` change still never waits for a confirmation."""
        if not changes:
            return []
        connection = connection_of(tx)
        required, notice_locale, confirmed = self._purposes_of_batch(connection, changes)
        doi = {key: bool(double_opt_in.get(key, own)) for key, own in required.items()}
        now = utcnow()
        drafts = [self._draft(c, doi, notice_locale, now) for c in changes]
        drafts = self._reconfirm_unconfirmed_notices(connection, changes, drafts, confirmed)
        return ledger.append_many(tx, drafts, listeners=self._listeners)

    # -- preference_center: topics picked with a form's grant (preference_center.form_topics)

    _EVIDENCE_BODIES = Prepared(
        select(ConsentEvidence.seq, ConsentEvidence.body).where(
            ConsentEvidence.seq.in_(bindparam("seqs", expanding=True))
        )
    )

    @staticmethod
    def evidence_of(tx: Transaction, seqs: Sequence[int]) -> dict[int, str]:
        """The kept evidence of the entries ``seqs``, as its JSON text, by seq (entries
        without evidence, or whose evidence was erased, left out). Static: a consent
        listener is told of entries with a transaction, not the ledger."""
        told = ledger.told_evidence()  # a listener asking of the entries it is told of
        found = {seq: body for seq in seqs if (body := told.get(seq)) is not None}
        unknown = [seq for seq in seqs if seq not in told]
        if unknown:
            rows = ConsentLedger._EVIDENCE_BODIES.execute(connection_of(tx), {"seqs": unknown})
            found.update((row.seq, row.body) for row in rows)
        return found

    # -- capture: the CSV import (capture.imports) ------------------------------------

    @property
    def hears_lead_signals(self) -> bool:
        """Whether any package listens to lead signals: an import hands a row's
        attribute columns on only then (and says so in its report)."""
        return bool(self._signal_listeners)

    CLOCK_SKEW = services.CLOCK_SKEW
    """How far in the future a change's time may lie (clocks differ): later is refused."""

    def create_leads_if_new(
        self, tx: Transaction, leads: Mapping[str, tuple[str | None, str | None, str | None]]
    ) -> dict[str, LeadRef]:
        """New leads for emails just found unknown in this write transaction, in bulk:
        ``leads`` maps a normalised email to its ``(name, locale, jurisdiction)``.
        Returns the leads created; an email another transaction gave a lead meanwhile
        (PostgreSQL; SQLite has one writer) is left out, for :meth:`ensure_lead`."""
        if not leads:
            return {}
        connection = connection_of(tx)
        now = utcnow()
        refs = {
            email: LeadRef(subjects.new_subject_id(), locale, jurisdiction)
            for email, (_name, locale, jurisdiction) in leads.items()
        }
        subject_rows = [
            {"id": r.id, "locale": r.locale, "jurisdiction": r.jurisdiction, "created_at": now}
            for r in refs.values()
        ]
        connection.execute(insert(self._SUBJECTS), subject_rows)
        profiles = [
            {
                "subject_id": refs[email].id,
                "email": email,
                "name": name,
                "created_at": now,
                "updated_at": now,
            }
            for email, (name, _locale, _jurisdiction) in leads.items()
        ]
        if connection.dialect.name == "sqlite":
            # Write transactions begin IMMEDIATE: nobody added these emails since.
            connection.execute(insert(self._PROFILES), profiles)
            return refs
        stmt = postgresql.insert(self._PROFILES).on_conflict_do_nothing(
            index_elements=[self._PROFILES.c.email]
        )
        returned = connection.execute(stmt.returning(self._PROFILES.c.email), profiles)
        inserted = set(returned.scalars())
        taken = [email for email in refs if email not in inserted]
        if taken:  # another transaction created these leads meanwhile: drop our subjects
            connection.execute(
                delete(self._SUBJECTS).where(self._SUBJECTS.c.id.in_([refs[e].id for e in taken]))
            )
        return {email: ref for email, ref in refs.items() if email in inserted}

    _SUBJECTS = cast(Table, Subject.__table__)
    _PROFILES = cast(Table, SubjectProfile.__table__)

    # -- scoring: was a purpose live when an input happened? ---------------------------

    @staticmethod
    def permitting_entries(
        tx: Transaction, purpose: str, moments: Iterable[tuple[str, datetime]]
    ) -> dict[tuple[str, datetime], int | None]:
        """For each ``(subject_id, at)``: the ``seq`` of the ledger entry under which
        ``purpose`` was live at ``at``, or ``None`` (not live then, or nothing recorded
        by then). The leads' entries for ``purpose`` up to the latest moment are read in
        one statement and folded up to each moment, as the projection folds them.
        Needs nothing wired: callable on the class, in any transaction."""
        wanted = sorted(set(moments))
        if not wanted:
            return {}
        rows = connection_of(tx).execute(
            ConsentLedger._FACTS_OF_LEADS_UNTIL,
            {
                "ids": sorted({sid for sid, _ in wanted}),
                "purpose": purpose,
                "until": max(at for _, at in wanted),
            },
        )
        facts: dict[str, list[projection.ConsentFact]] = {}
        for sid, *fact in rows:
            facts.setdefault(sid, []).append(projection.ConsentFact(*fact))
        found: dict[tuple[str, datetime], int | None] = {}
        for sid, at in wanted:
            folded = projection.fold([f for f in facts.get(sid, ()) if f.occurred_at <= at])
            found[(sid, at)] = folded.last_seq if folded and folded.permitted else None
        return found

    _EVENTS = cast(Table, ConsentEvent.__table__)
    _FACTS_OF_LEADS_UNTIL = (
        select(
            _EVENTS.c.subject_id,
            _EVENTS.c.seq,
            _EVENTS.c.action,
            _EVENTS.c.confirmation_required,
            _EVENTS.c.notice_sha256,
            _EVENTS.c.occurred_at,
        )
        .where(
            _EVENTS.c.subject_id.in_(bindparam("ids", expanding=True)),
            _EVENTS.c.purpose_key == bindparam("purpose"),
            _EVENTS.c.occurred_at <= bindparam("until"),
        )
        .order_by(_EVENTS.c.subject_id, _EVENTS.c.occurred_at, _EVENTS.c.seq)
    )

    # -- lifecycle: double opt-in again under a notice version not confirmed (issue 16) --

    @classmethod
    def confirmed_notices(
        cls, tx: Transaction, triples: Iterable[tuple[str, str, str]]
    ) -> set[tuple[str, str, str]]:
        """Of ``(subject_id, purpose, notice_sha256)`` triples, those the lead has
        confirmed: the ledger holds a ``confirmed`` entry, or a grant that needed no
        confirmation, of that purpose under that version or an earlier one of its
        locale with only editorial changes since. One statement per lead."""
        by_lead: dict[str, set[tuple[str, str]]] = {}
        for sid, purpose, sha in triples:
            by_lead.setdefault(sid, set()).add((purpose, sha))
        confirmed: set[tuple[str, str, str]] = set()
        connection = connection_of(tx)
        for sid, pairs in sorted(by_lead.items()):
            params = {
                "sid": sid,
                "purposes": sorted({p for p, _ in pairs}),
                "hashes": sorted({h for _, h in pairs}),
            }
            rows: Iterable[Any] = connection.execute(_PURPOSES_NOTICES_CONFIRMED, params)
            confirmed |= {(sid, r[0], r[2]) for r in rows if r[5] and (r[0], r[2]) in pairs}
        return confirmed

    _SUPERSEDED = (
        select(NoticeVersion.purpose_key, NoticeVersion.sha256)
        .where(
            NoticeVersion.sha256.in_(bindparam("hashes", expanding=True)),
            exists().where(
                _NEWER_MATERIAL.purpose_key == NoticeVersion.purpose_key,
                _NEWER_MATERIAL.locale == NoticeVersion.locale,
                _NEWER_MATERIAL.version > NoticeVersion.version,
                _NEWER_MATERIAL.change == "material",
            ),
        )
        .distinct()
    )

    def superseded_notices(
        self, tx: Transaction, shown: Iterable[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        """Of ``(purpose, notice_sha256)`` pairs, those a material change replaced since
        (a grant under them is refused): for a submission held from before the change."""
        wanted = set(shown)
        if not wanted:
            return set()
        hashes = sorted({h for _, h in wanted})
        rows = connection_of(tx).execute(self._SUPERSEDED, {"hashes": hashes})
        return {(purpose, sha) for purpose, sha in rows} & wanted

    _CATEGORY = select(Purpose.category).where(Purpose.key == bindparam("purpose"))

    def is_sale_or_sharing(self, tx: Transaction, purpose: str) -> bool:
        """Whether ``purpose`` is a sale or sharing (what a GPC signal opts out of,
        SPEC rule 7); raises :class:`UnknownPurpose` for no such purpose."""
        category = connection_of(tx).execute(self._CATEGORY, {"purpose": purpose}).scalar()
        if category is None:
            raise UnknownPurpose(purpose)
        return bool(category == PurposeCategory.SALE_OR_SHARING.value)

    @staticmethod
    def _asks_reconfirmation(change: ConsentChange) -> bool:
        return (
            change.proven_mailbox
            and not change.confirmed
            and change.action is ConsentAction.GRANTED
            and change.method is not ConsentMethod.DOUBLE_OPT_IN
        )

    def _purposes_of_batch(
        self, connection: Connection, changes: Sequence[ConsentChange]
    ) -> tuple[dict[str, bool], dict[tuple[str, str], str], set[tuple[str, str, str]] | None]:
        """In one statement: each purpose's own double opt-in, the locale of each notice
        version named, and, where the batch holds :attr:`ConsentChange.proven_mailbox`
        grants of one lead, which of the named versions that lead has confirmed
        (``None``: not read)."""
        params: dict[str, object] = {
            "purposes": sorted({c.purpose for c in changes}),
            "hashes": sorted({c.notice_sha256 for c in changes if c.notice_sha256}) or [""],
        }
        asking = {c.subject_id for c in changes if self._asks_reconfirmation(c)}
        statement = _PURPOSES_OF_BATCH
        if len(asking) == 1:
            statement = _PURPOSES_OF_BATCH_CONFIRMED
            params["sid"] = next(iter(asking))
        double_opt_in: dict[str, bool] = {}
        notice_locale: dict[tuple[str, str], str] = {}
        confirmed: set[tuple[str, str, str]] | None = set() if len(asking) == 1 else None
        rows = statement.execute(connection, params)  # 5 or 6 columns
        superseded: set[tuple[str, str]] = set()
        for row in rows:
            key, sha256 = row[0], row[2]
            double_opt_in[key] = bool(row[1])
            if sha256 is not None:
                notice_locale[(key, sha256)] = row[3]
                if row[4]:
                    superseded.add((key, sha256))
                if confirmed is not None and row[5]:
                    confirmed.add((str(params["sid"]), key, sha256))
        self._refuse_superseded_grants(changes, superseded)
        return double_opt_in, notice_locale, confirmed

    @staticmethod
    def _refuse_superseded_grants(
        changes: Sequence[ConsentChange], superseded: set[tuple[str, str]]
    ) -> None:
        """A grant under a notice version a material change replaced is refused: the
        text no longer says what is done, so agreeing to it permits nothing (the
        lifecycle job expires such grants made before the change; none is made after)."""
        for change in changes:
            if (
                change.action is ConsentAction.GRANTED
                and (change.purpose, change.notice_sha256 or "") in superseded
            ):
                reason = (
                    "this notice version was replaced by a material change: show the current text"
                )
                raise InvalidInput(f"notice_sha256: {reason}", fields={"notice_sha256": reason})

    def _reconfirm_unconfirmed_notices(
        self,
        connection: Connection,
        changes: Sequence[ConsentChange],
        drafts: list[ledger.EntryDraft],
        confirmed: set[tuple[str, str, str]] | None,
    ) -> list[ledger.EntryDraft]:
        """A grant made with only a proven mailbox (:attr:`ConsentChange.proven_mailbox`)
        of a double opt-in purpose, under a notice version the lead never confirmed, is
        pending: whoever holds a forwarded link, or the lead who never confirmed the new
        text, must not make the ledger show agreement to it (GDPR Art. 7(1)). Under a
        version the lead has confirmed it is live at once. ``confirmed``: as read with
        the batch's purposes, or ``None`` (read here, one statement)."""
        asking = [
            (i, draft)
            for i, (change, draft) in enumerate(zip(changes, drafts, strict=True))
            if self._asks_reconfirmation(change) and draft.confirmation_required
        ]
        if not asking:
            return drafts
        if confirmed is None:
            confirmed = self.confirmed_notices(
                connection,
                [(d.subject_id, d.purpose, d.notice_sha256 or "") for _, d in asking],
            )
        for i, draft in asking:
            if (draft.subject_id, draft.purpose, draft.notice_sha256) in confirmed:
                drafts[i] = replace(draft, confirmation_required=False)
        return drafts

    # -- consent_sync: audiences as of one ledger entry (consent_sync.audiences) -------

    _PAIR_FACTS_UNTIL_SEQ = select(
        ConsentEvent.subject_id,
        ConsentEvent.seq,
        ConsentEvent.action,
        ConsentEvent.confirmation_required,
        ConsentEvent.notice_sha256,
        ConsentEvent.occurred_at,
    ).where(
        ConsentEvent.subject_id.in_(bindparam("sids", expanding=True)),
        ConsentEvent.purpose_key == bindparam("purpose"),
        ConsentEvent.seq <= bindparam("seq"),
    )

    def states_as_of(
        self, tx: Transaction, purpose: str, subject_ids: Sequence[str], seq: int
    ) -> dict[str, StateAsOf]:
        """Each lead's consent for ``purpose`` after the ledger's entries up to ``seq``
        only (folded as the kept projection folds them), in one statement; leads with
        no such entry are left out. For an export that must stay one snapshot while the
        ledger grows (consent_sync's audiences)."""
        if not subject_ids:
            return {}
        facts: dict[str, list[projection.ConsentFact]] = {}
        grants: dict[str, int] = {}
        params = {"sids": list(subject_ids), "purpose": purpose, "seq": seq}
        for row in connection_of(tx).execute(self._PAIR_FACTS_UNTIL_SEQ, params):
            facts.setdefault(row.subject_id, []).append(projection.ConsentFact(*row[1:]))
            if row.action == ConsentAction.GRANTED.value:
                grants[row.subject_id] = max(grants.get(row.subject_id, 0), row.seq)
        states: dict[str, StateAsOf] = {}
        for subject_id, pair in facts.items():
            folded = projection.fold(pair)
            if folded is not None:
                states[subject_id] = StateAsOf(
                    folded.permitted,
                    folded.since,
                    folded.notice_sha256,
                    grants.get(subject_id),
                )
        return states
