"""The preference center's domain logic: what a lead sees, and every change they make.

Every change is a ledger entry with source ``preference-center`` and evidence (the
minimised IP and user agent, which link opened the page, the topic set), recorded through
the app's :class:`~consent_ledger.api.ConsentLedger` in the caller's transaction together
with the kept consent state, so ``GET /api/consent`` answers the new state on the next
request (SPEC rule 2).

A grant made here is live at once when its purpose needs no double opt-in, or when
the lead has confirmed the very notice version shown before (the signed link mailed to
the address proves mailbox control). A grant of a double opt-in purpose under a notice
version the lead never confirmed (a new text, or a first subscription) is pending until
the lead follows the confirmation link mailed to the address (:func:`confirm_grants`):
whoever holds a forwarded link cannot make the ledger show agreement to a text the
lead never confirmed. The ledger decides (``ConsentChange.proven_mailbox``).

What a request needs of a lead (link version, profile, purposes with their current
notices, consent states, topics and topic choices) is read by ONE statement built once
at import (:func:`load_lead`); the functions here never open a transaction themselves:
the view's one :meth:`~zeroparty.db.Database.run` hop does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, cast

import orjson
from markupsafe import Markup, escape
from sqlalchemy import (
    Boolean,
    String,
    Table,
    and_,
    bindparam,
    func,
    insert,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import BindParameter, ColumnElement, Executable
from sqlalchemy.types import TypeEngine

from consent_ledger.actions import (
    ConsentAction,
    ConsentMethod,
    ConsentSource,
    Mechanism,
    PurposeCategory,
)
from consent_ledger.api import PENDING, ConsentChange, ConsentLedger, is_negative
from consent_ledger.entries import LedgerEntry
from consent_ledger.evidence import EvidenceError, EvidenceValue, clean_evidence
from consent_ledger.read_model import (
    consent_states,
    lead_profiles,
    leads,
    notice_versions,
    purposes,
    topics,
)
from preference_center.escaped import site_html, site_text_html
from preference_center.locale import DEFAULT_LOCALE
from preference_center.models import LinkVersion, TopicSubscription, TopicSubscriptionChange
from preference_center.tokens import TokenRevoked
from zeroparty import i18n
from zeroparty.db import (
    DriverStatement,
    Transaction,
    connection_of,
    driver_cursor,
    sqlite_time,
    utcnow,
)
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
    """A topic as the page shows it; its texts escaped (:mod:`preference_center.escaped`)."""

    key: Markup
    title: Markup
    description: Markup
    subscribed: bool


@dataclass(frozen=True, slots=True)
class PurposeView:
    """A purpose as the page shows it. Its texts from the site file are escaped, once per
    process (:mod:`preference_center.escaped`): the page prints them as they are."""

    key: Markup
    title: Markup
    description: Markup
    category: str
    mechanism: str
    notice_text: Markup
    notice_sha256: Markup
    notice_locale: Markup
    permitted: bool
    status: str
    topics: list[TopicView] = field(default_factory=list)
    # The notice changed materially since the lead agreed (their grant expired): the
    # page says so, with what changed (``change_summary``, as site.toml says it).
    changed: bool = False
    change_summary: Markup | None = None
    ends_at: datetime | None = None  # when a live grant lapses (expires_after_days)
    ends_on: Markup | None = None  # its date, YYYY-MM-DD

    @property
    def gpc_honoured(self) -> bool:
        return self.status == ConsentAction.GPC_OPT_OUT.value

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
    gpc: bool = False  # the browser sent Sec-GPC: 1 (honoured: SPEC rule 7)


@dataclass(frozen=True, slots=True)
class Choices:
    """What the lead ticked: purposes on, topics on, and the notice shown per purpose."""

    purposes: frozenset[str]
    topics: frozenset[str]
    notices: Mapping[str, str]


class SubjectGone(NotFound):
    """The link is fine but its lead was erased (or never had a profile)."""

    code = "subject_erased"


@dataclass(frozen=True, slots=True)
class LeadTopic:
    key: str
    title: str
    description: str
    choice: bool | None  # the lead's stored choice; None: follows the purpose
    translations: str | None = None  # title and description in other languages (JSON)

    @property
    def wanted(self) -> bool:
        return self.choice is None or self.choice


@dataclass(slots=True)
class LeadPurpose:
    """One purpose as one lead has it: definition, current notices, state, topics."""

    key: str
    title: str
    description: str
    category: str
    mechanism: str
    jurisdictions: str
    status: str | None  # None: no entry yet
    state_permitted: bool
    notices: dict[str, tuple[str, str]] = field(default_factory=dict)  # locale: (text, sha)
    state_notice: str | None = None  # the notice version of the lead's last entry
    change_summaries: dict[str, str | None] = field(default_factory=dict)  # locale: summary
    since: datetime | None = None  # when the current permission began
    expires_after_days: int | None = None
    remind_before_days: int | None = None
    translations: str | None = None  # title and description in other languages (JSON)

    def title_in(self, language: str) -> str:
        return i18n.site_text(self.title, self.translations, language)

    def ends_at(self) -> datetime | None:
        """When the lead's live grant lapses (``expires_after_days``), if it does."""
        if self.expires_after_days is None or self.since is None or self.status is None:
            return None
        if not self.state_permitted:
            return None
        return self.since + timedelta(days=self.expires_after_days)

    def renewal_due(self, now: datetime) -> bool:
        """Saving the page with the box ticked renews the grant (a new grant, issue 16)
        once it is within ``remind_before_days`` (else 30 days, at most the period less
        a day) of its end; earlier, a save with nothing changed records nothing."""
        ends = self.ends_at()
        if ends is None or self.expires_after_days is None:
            return False
        window = self.remind_before_days or min(30, self.expires_after_days - 1)
        return now >= ends - timedelta(days=window)

    topics: list[LeadTopic] = field(default_factory=list)

    def permitted(self, jurisdiction: str | None) -> bool:
        """Current permission; without entries, the purpose's default (SPEC rule 8)."""
        if self.status is not None:
            return self.state_permitted
        if self.mechanism == Mechanism.OPT_OUT and jurisdiction:
            return jurisdiction in orjson.loads(self.jurisdictions)
        return False


@dataclass(frozen=True, slots=True)
class Lead:
    """A live lead and every purpose (ordered by key), as :func:`load_lead` read them."""

    subject_id: str
    email: str
    locale: str | None
    jurisdiction: str | None
    purposes: list[LeadPurpose]


# -- statements, built once -------------------------------------------------------------

_nv = notice_versions.c
_latest_notice = (
    select(_nv.purpose_key, _nv.locale, func.max(_nv.version).label("version"))
    .group_by(_nv.purpose_key, _nv.locale)
    .subquery("latest_notice")
)
_all_versions = notice_versions.alias("all_versions")
_current_notice = (
    select(_nv.purpose_key, _nv.locale, _nv.text, _nv.sha256, _nv.change_summary)
    .where(
        _nv.version
        == select(func.max(_all_versions.c.version))
        .where(_all_versions.c.purpose_key == _nv.purpose_key, _all_versions.c.locale == _nv.locale)
        .scalar_subquery()
    )
    .subquery("current_notice")
)


# The columns of the lead's statement, in order (lead_on_cursor reads them by position),
# and the type of each.
_LEAD_TYPES: dict[str, TypeEngine[Any]] = {
    name: column.type
    for name, column in (
        ("locale", leads.c.locale),
        ("jurisdiction", leads.c.jurisdiction),
        ("erased_at", leads.c.erased_at),
        ("email", lead_profiles.c.email),
        ("version", LinkVersion.__table__.c.version),
        ("purpose", purposes.c.key),
        ("title", purposes.c.title),
        ("description", purposes.c.description),
        ("translations", purposes.c.translations),
        ("category", purposes.c.category),
        ("mechanism", purposes.c.mechanism),
        ("jurisdictions", purposes.c.jurisdictions),
        ("expires_after_days", purposes.c.expires_after_days),
        ("remind_before_days", purposes.c.remind_before_days),
        ("status", consent_states.c.status),
        ("permitted", consent_states.c.permitted),
        ("since", consent_states.c.since),
        ("state_notice", consent_states.c.notice_sha256),
        ("topic", topics.c.key),
        ("topic_title", topics.c.title),
        ("topic_description", topics.c.description),
        ("topic_translations", topics.c.translations),
        ("subscribed", TopicSubscription.__table__.c.subscribed),
        ("notice_locale", _current_notice.c.locale),
        ("text", _current_notice.c.text),
        ("sha256", _current_notice.c.sha256),
        ("change_summary", _current_notice.c.change_summary),
    )
}
LEAD_COLUMNS = tuple(_LEAD_TYPES)


def _lead_statement(with_notices: bool) -> Any:
    """The lead and all it has of each purpose, in ONE statement: a ``UNION ALL`` of rows
    of four kinds, in the columns of :data:`LEAD_COLUMNS` (a kind's columns filled, the
    others NULL), in no particular order:

    - the lead (``purpose`` NULL): ``locale``, ``jurisdiction``, ``erased_at``,
      ``email`` and its link ``version``; no row when there is no such lead;
    - a purpose (``purpose`` to ``remind_before_days``) with the lead's consent state
      (``status`` to ``state_notice``), one row per purpose;
    - a topic (``topic`` to ``topic_translations``, and its ``purpose``) with the lead's
      stored choice (``subscribed``), one row per topic;
    - with ``with_notices``, a current notice of a purpose (``purpose``,
      ``notice_locale`` to ``change_summary``), one row per purpose and locale.

    In a purpose's or a topic's row, ``version`` is its rank: how many purposes (topics)
    have a key that sorts before its key, as the database collates them (the order the
    page shows them in). Sorting the rows in SQL instead would copy every text into
    SQLite's sorter: a fifth of the statement's time.

    Each site table is read once (a join of them gave a row per purpose x notice locale
    x topic, every text repeated in each)."""
    columns = LEAD_COLUMNS if with_notices else LEAD_COLUMNS[: LEAD_COLUMNS.index("notice_locale")]
    lead, profile, purpose, state, topic = (
        leads.c,
        lead_profiles.c,
        purposes.c,
        consent_states.c,
        topics.c,
    )
    n = _current_notice.c
    subject_id: BindParameter[str] = bindparam("subject_id")
    lead_row = select(
        *_kind(
            columns,
            locale=lead.locale,
            jurisdiction=lead.jurisdiction,
            erased_at=lead.erased_at,
            email=profile.email,
            version=LinkVersion.version,
        )
    )
    lead_row = (
        lead_row.select_from(leads)
        .outerjoin(lead_profiles, profile.subject_id == lead.subject_id)
        .outerjoin(LinkVersion, LinkVersion.subject_id == lead.subject_id)
        .where(lead.subject_id == subject_id)
    )
    earlier_purpose, earlier_topic = purposes.alias("earlier"), topics.alias("earlier")
    purpose_rows = select(
        *_kind(
            columns,
            version=select(func.count())
            .where(earlier_purpose.c.key < purpose.key)
            .scalar_subquery(),
            purpose=purpose.key,
            title=purpose.title,
            description=purpose.description,
            translations=purpose.translations,
            category=purpose.category,
            mechanism=purpose.mechanism,
            jurisdictions=purpose.jurisdictions,
            expires_after_days=purpose.expires_after_days,
            remind_before_days=purpose.remind_before_days,
            status=state.status,
            permitted=state.permitted,
            since=state.since,
            state_notice=state.notice_sha256,
        )
    ).outerjoin_from(
        purposes,
        consent_states,
        and_(state.subject_id == subject_id, state.purpose_key == purpose.key),
    )
    topic_rows = select(
        *_kind(
            columns,
            version=select(func.count()).where(earlier_topic.c.key < topic.key).scalar_subquery(),
            purpose=topic.purpose_key,
            topic=topic.key,
            topic_title=topic.title,
            topic_description=topic.description,
            topic_translations=topic.translations,
            subscribed=TopicSubscription.subscribed,
        )
    ).outerjoin_from(
        topics,
        TopicSubscription,
        and_(
            TopicSubscription.subject_id == subject_id,
            TopicSubscription.topic_key == topic.key,
        ),
    )
    kinds = [lead_row, purpose_rows, topic_rows]
    if with_notices:
        kinds.append(
            select(
                *_kind(
                    columns,
                    purpose=n.purpose_key,
                    notice_locale=n.locale,
                    text=n.text,
                    sha256=n.sha256,
                    change_summary=n.change_summary,
                )
            ).select_from(_current_notice)
        )
    return union_all(*kinds)


def _kind(columns: tuple[str, ...], **given: Any) -> list[ColumnElement[Any]]:
    """The columns of one kind of :func:`_lead_statement`'s rows: those ``given``, the
    others NULL of the column's type (PostgreSQL types each column of a ``UNION`` from
    its rows, and an untyped NULL in every row but one is taken for text)."""
    return [
        (given[name] if name in given else null().cast(_LEAD_TYPES[name])).label(name)
        for name in columns
    ]


_LEAD_WITH_NOTICES = _lead_statement(True)
_LEAD = _lead_statement(False)
_LINK_VERSION = select(LinkVersion.version).where(LinkVersion.subject_id == bindparam("subject_id"))
_LEAD_ROW = (
    select(leads.c.locale, leads.c.jurisdiction, leads.c.created_at, lead_profiles.c.email)
    .join(lead_profiles, lead_profiles.c.subject_id == leads.c.subject_id)
    .where(leads.c.subject_id == bindparam("subject_id"), leads.c.erased_at.is_(None))
)
_NOTICES_BY_HASH = (
    select(
        _nv.purpose_key,
        _nv.sha256,
        _nv.locale,
        _latest_notice.c.version.is_not(None).label("current"),
    )
    .outerjoin(
        _latest_notice,
        and_(
            _latest_notice.c.purpose_key == _nv.purpose_key,
            _latest_notice.c.locale == _nv.locale,
            _latest_notice.c.version == _nv.version,
        ),
    )
    .where(_nv.sha256.in_(bindparam("hashes", expanding=True)))
    .order_by(_nv.version)
)
_subscription = cast(Table, TopicSubscription.__table__)
_subscription_change = cast(Table, TopicSubscriptionChange.__table__)


def _topic_statements() -> dict[str, tuple[Executable, ...]]:
    """Store topic choices of one lead and their history on PostgreSQL: one statement,
    the choices as arrays (``topic_keys``, ``subscribed``) and the history inserted from
    the upsert's RETURNING. (SQLite: :func:`_sqlite_topic_rows`.)"""
    c = _subscription.c
    history_columns = ["subject_id", "topic_key", "subscribed", "occurred_at", "ledger_seq"]
    statements: dict[str, tuple[Executable, ...]] = {}
    rows = (
        func.unnest(
            bindparam("topic_keys", type_=postgresql.ARRAY(String)),
            bindparam("subscribed", type_=postgresql.ARRAY(Boolean)),
        )
        .table_valued("topic_key", "subscribed")
        .render_derived(name="choice")
    )
    pg = postgresql.insert(_subscription).from_select(
        ["subject_id", "topic_key", "subscribed", "updated_at", "ledger_seq"],
        select(
            bindparam("subject_id", type_=c.subject_id.type),
            rows.c.topic_key,
            rows.c.subscribed,
            bindparam("now", type_=c.updated_at.type),
            bindparam("ledger_seq", type_=c.ledger_seq.type),
        ).where(true()),  # INSERT ... SELECT ... ON CONFLICT: no join may claim the ON
    )
    stored = (
        pg.on_conflict_do_update(
            index_elements=[c.subject_id, c.topic_key],
            set_={
                "subscribed": pg.excluded.subscribed,
                "updated_at": pg.excluded.updated_at,
                "ledger_seq": pg.excluded.ledger_seq,
            },
        )
        .returning(c.subject_id, c.topic_key, c.subscribed, c.updated_at, c.ledger_seq)
        .cte("stored")
    )
    statements["postgresql"] = (
        insert(_subscription_change).from_select(
            history_columns,
            select(
                stored.c.subject_id,
                stored.c.topic_key,
                stored.c.subscribed,
                stored.c.updated_at,
                stored.c.ledger_seq,
            ),
        ),
    )
    return statements


_TOPIC_STATEMENTS = _topic_statements()


# -- reads ------------------------------------------------------------------------------


def check_link_version(tx: Transaction, subject_id: str, version: int) -> None:
    """Raise :class:`TokenRevoked` unless ``version`` is the subject's current one."""
    current = connection_of(tx).execute(_LINK_VERSION, {"subject_id": subject_id}).scalar()
    if version != (current or 0):
        raise TokenRevoked("this link has been withdrawn; a newer one may have been mailed")


@cache
def _lead_sql(dialect: Dialect, notices: bool) -> DriverStatement:
    return DriverStatement.compile(_LEAD_WITH_NOTICES if notices else _LEAD, dialect)


def load_lead(
    tx: Transaction, subject_id: str, version: int, *, notices: bool = False
) -> Lead | None:
    """The lead behind a link of ``version``, in one statement; ``None`` when it has no
    personal data any more (erased). Raises :class:`TokenRevoked` for an old version."""
    connection = connection_of(tx)
    with driver_cursor(connection) as cursor:
        return lead_on_cursor(cursor, connection.dialect, subject_id, version, notices=notices)


def lead_on_cursor(
    cursor: Any, dialect: Dialect, subject_id: str, version: int, *, notices: bool = False
) -> Lead | None:
    """:func:`load_lead` on a DBAPI cursor (a request's one statement, compiled once:
    SQLAlchemy's execution and rows cost more than the query)."""
    statement = _lead_sql(dialect, notices)
    cursor.execute(statement.sql, statement.parameters({"subject_id": subject_id}))
    # Columns in LEAD_COLUMNS' order (a test holds them together); purposes and topics
    # put in the order of their keys by their rank (``version``).
    lead_row = None
    purpose_rows: list[Any] = []
    topic_rows: list[Any] = []
    notice_rows: list[Any] = []
    for row in cursor.fetchall():
        if row[5] is None:
            lead_row = row
        elif row[18] is not None:
            topic_rows.append(row)
        elif notices and row[23] is not None:
            notice_rows.append(row)
        else:
            purpose_rows.append(row)
    current = (lead_row[4] if lead_row is not None else None) or 0
    if version != current:
        raise TokenRevoked("this link has been withdrawn; a newer one may have been mailed")
    if lead_row is None or lead_row[3] is None or lead_row[2] is not None:
        return None
    locale, jurisdiction, _erased_at, email = lead_row[:4]
    purposes: dict[str, LeadPurpose] = {}
    purpose_rows.sort(key=_rank)
    topic_rows.sort(key=_rank)
    for row in purpose_rows:
        (key, title, description, translations, category, mechanism, jurisdictions) = row[5:12]
        (expires, remind, status, permitted, since, state_notice) = row[12:18]
        purposes[key] = LeadPurpose(
            key=key,
            title=title,
            description=description,
            category=category,
            mechanism=mechanism,
            jurisdictions=jurisdictions,
            status=status,
            state_permitted=bool(permitted),
            since=_aware(since),
            expires_after_days=expires,
            remind_before_days=remind,
            translations=translations,
            state_notice=state_notice,
        )
    for row in notice_rows:
        purpose = purposes.get(row[5])
        if purpose is not None:
            notice_locale, text, sha256, change_summary = row[23:27]
            purpose.notices[notice_locale] = (text, sha256)
            purpose.change_summaries[notice_locale] = change_summary
    for row in topic_rows:
        purpose = purposes.get(row[5])
        if purpose is not None:
            subscribed = row[22]
            choice = None if subscribed is None else bool(subscribed)
            purpose.topics.append(LeadTopic(row[18], row[19], row[20], choice, row[21]))
    return Lead(subject_id, email, locale, jurisdiction, list(purposes.values()))


def _rank(row: Any) -> int:
    rank: int = row[4]
    return rank


def live_lead(tx: Transaction, subject_id: str, version: int, *, notices: bool = False) -> Lead:
    """As :func:`load_lead`, raising :class:`SubjectGone` for an erased lead."""
    lead = load_lead(tx, subject_id, version, notices=notices)
    if lead is None:
        raise SubjectGone("there is no personal data behind this link any more")
    return lead


def lead_row(tx: Transaction, subject_id: str) -> Any:
    """Locale, jurisdiction, created_at and email of a live lead; else SubjectGone."""
    row = connection_of(tx).execute(_LEAD_ROW, {"subject_id": subject_id}).first()
    if row is None:
        raise SubjectGone("there is no personal data behind this link any more")
    return row


def preference_page(lead: Lead, locale: str, *, gpc: bool = False) -> PreferencePage:
    """The lead's purposes (with the current notice in ``locale``), states and topics."""
    views: list[PurposeView] = []
    for purpose in lead.purposes:
        texts = purpose.notices
        if not texts:
            continue  # a purpose without a notice cannot be agreed to
        shown_locale = (
            locale
            if locale in texts
            else (DEFAULT_LOCALE if DEFAULT_LOCALE in texts else sorted(texts)[0])
        )
        text, sha = texts[shown_locale]
        permitted = purpose.permitted(lead.jurisdiction)
        summary = purpose.change_summaries.get(shown_locale)
        ends_at = purpose.ends_at()
        views.append(
            PurposeView(
                key=site_html(purpose.key),
                title=site_text_html(purpose.title, purpose.translations, locale, "title"),
                description=site_text_html(
                    purpose.description, purpose.translations, locale, "description"
                ),
                category=purpose.category,
                mechanism=purpose.mechanism,
                notice_text=site_html(text),
                notice_sha256=site_html(sha),
                notice_locale=site_html(shown_locale),
                permitted=permitted,
                status=purpose.status if purpose.status is not None else "none",
                topics=[
                    TopicView(
                        site_html(t.key),
                        site_text_html(t.title, t.translations, locale, "title"),
                        site_text_html(t.description, t.translations, locale, "description"),
                        permitted and t.wanted,
                    )
                    for t in purpose.topics
                ],
                changed=_expired_by_change(purpose, sha),
                change_summary=None if summary is None else site_html(summary),
                ends_at=ends_at,
                ends_on=None if ends_at is None else escape(ends_at.date().isoformat()),
            )
        )
    return PreferencePage(lead.subject_id, lead.email, locale, views, gpc=gpc)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands a column of a subquery back without UTCDateTime's processing.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _expired_by_change(purpose: LeadPurpose, shown_sha: str) -> bool:
    """The lead's grant expired under a text other than the one shown now: a material
    notice change (issue 16) asks them again."""
    return purpose.status == "expired" and purpose.state_notice not in (None, shown_sha)


# -- writes -----------------------------------------------------------------------------


def _withdrawal_action(purpose: LeadPurpose) -> ConsentAction:
    # An opt-out purpose is refused ("do not sell or share"); an opt-in one withdrawn.
    return (
        ConsentAction.REFUSED if purpose.mechanism == Mechanism.OPT_OUT else ConsentAction.WITHDRAWN
    )


def _change(
    lead: Lead,
    purpose: str,
    action: ConsentAction,
    context: ChangeContext,
    now: datetime,
    *,
    notice_sha256: str | None = None,
    locale: str | None = None,
    topics: Iterable[str] | None = None,
) -> ConsentChange:
    extra: dict[str, EvidenceValue] = {}
    if topics is not None:
        extra["topics"] = ",".join(sorted(topics))
    return ConsentChange(
        subject_id=lead.subject_id,
        purpose=purpose,
        action=action,
        source=SOURCE,
        method=context.method,
        occurred_at=now,
        notice_sha256=notice_sha256,
        # The signed link mailed to the address proved mailbox control: the ledger makes
        # a grant live at once only under a notice version the lead has confirmed.
        proven_mailbox=True,
        jurisdiction=lead.jurisdiction,
        locale=locale or lead.locale,
        evidence=context.evidence(extra),
    )


def record_topics(
    tx: Transaction,
    subject_id: str,
    changes: Mapping[str, bool],
    ledger_seq: int | None,
    now: datetime,
) -> None:
    """Store topic choices (upserted) and their history: two statements per batch on
    SQLite (:func:`_sqlite_topic_rows`), one on PostgreSQL (:func:`_topic_statements`)."""
    if not changes:
        return
    connection = connection_of(tx)
    choices = sorted(changes.items())
    if connection.dialect.name == "postgresql":
        (statement,) = _TOPIC_STATEMENTS["postgresql"]
        params = {
            "subject_id": subject_id,
            "now": now,
            "ledger_seq": ledger_seq,
            "topic_keys": [key for key, _on in choices],
            "subscribed": [on for _key, on in choices],
        }
        connection.execute(statement, params)
        return
    upsert, history = _sqlite_topic_rows(connection.dialect, len(choices))
    values: dict[str, object] = {
        "subject_id": subject_id,
        "ledger_seq": ledger_seq,
        "at": sqlite_time(now),
    }
    for n, (key, on) in enumerate(choices):
        values[f"topic_key_{n}"], values[f"subscribed_{n}"] = key, on
    # On the driver's cursor, one multi-row statement each (compiled once per count of
    # topics): SQLAlchemy's executemany around them cost more than SQLite's work.
    with driver_cursor(connection) as cursor:
        cursor.execute(upsert.sql, upsert.parameters(values))
        cursor.execute(history.sql, history.parameters(values))


@cache
def _sqlite_topic_rows(dialect: Dialect, count: int) -> tuple[DriverStatement, DriverStatement]:
    """SQLite's topic upsert and history insert for ``count`` choices, as
    :func:`record_topics` fills them (``topic_key_N``, ``subscribed_N``; the timestamp
    as SQLAlchemy stores it)."""
    c = _subscription.c

    def rows(time_column: str) -> list[dict[str, Any]]:
        return [
            {
                "subject_id": bindparam("subject_id"),
                "topic_key": bindparam(f"topic_key_{n}"),
                "subscribed": bindparam(f"subscribed_{n}"),
                time_column: bindparam("at"),
                "ledger_seq": bindparam("ledger_seq"),
            }
            for n in range(count)
        ]

    upsert = sqlite.insert(_subscription).values(rows("updated_at"))
    upsert = upsert.on_conflict_do_update(
        index_elements=[c.subject_id, c.topic_key],
        set_={
            "subscribed": upsert.excluded.subscribed,
            "updated_at": upsert.excluded.updated_at,
            "ledger_seq": upsert.excluded.ledger_seq,
        },
    )
    history = insert(_subscription_change).values(rows("occurred_at"))
    return DriverStatement.compile(upsert, dialect), DriverStatement.compile(history, dialect)


def validate_choices(lead: Lead, choices: Choices) -> None:
    """Refuse unknown purposes and topics."""
    errors: dict[str, str] = {}
    known_purposes = {p.key for p in lead.purposes}
    known_topics = {t.key for p in lead.purposes for t in p.topics}
    unknown = sorted(choices.purposes - known_purposes)
    if unknown:
        errors["purpose"] = f"unknown purpose {unknown[0][:64]!r}"
    unknown_topics = sorted(choices.topics - known_topics)
    if unknown_topics:
        errors["topic"] = f"unknown topic {unknown_topics[0][:64]!r}"
    if errors:
        raise InvalidInput("the form names something that does not exist", fields=errors)


def apply_choices(
    ledger: ConsentLedger,
    tx: Transaction,
    lead: Lead,
    choices: Choices,
    context: ChangeContext,
) -> list[LedgerEntry]:
    """Bring the lead's consents and topics to ``choices``; one ledger entry per change.

    A purpose turned on is granted under the notice shown (its hash comes with the form);
    turned off, withdrawn (refused, for opt-out purposes); left on with a different
    topic set, re-affirmed with the new topic set as evidence, under the notice the lead
    agreed to (a page shown in another language changes the topics, not what was agreed
    to, and asks for no new confirmation). A pending grant left unticked stays pending:
    not ticking is not an act.
    """
    now = utcnow()
    changes: list[ConsentChange] = []
    topic_changes: list[dict[str, bool]] = []
    grants: list[tuple[LeadPurpose, list[str], bool, dict[str, bool]]] = []
    agreed: dict[str, str] = {}  # purpose -> the notice a re-affirmation keeps
    for purpose in lead.purposes:
        was_on = purpose.permitted(lead.jurisdiction)
        want_on = purpose.key in choices.purposes
        own_topics = [t.key for t in purpose.topics]
        stored = {t.key: t.wanted for t in purpose.topics}
        before = {k: was_on and stored[k] for k in own_topics}
        after = {k: want_on and k in choices.topics for k in own_topics}
        changed = {k: on for k, on in after.items() if stored[k] != on or before[k] != on}
        wanted_topics = [k for k, on in after.items() if on]
        renew = was_on and purpose.renewal_due(now)
        if want_on and (not was_on or before != after or renew):
            grants.append((purpose, wanted_topics, bool(own_topics), changed))
            if was_on and not renew and purpose.state_notice is not None:
                agreed[purpose.key] = purpose.state_notice
        elif not want_on and was_on:
            grants.append((purpose, [], False, changed))
        elif changed:
            # Topics of a purpose that stays off: stored off, nothing to tell the ledger.
            record_topics(tx, lead.subject_id, changed, None, now)
    shown = _notices_shown(
        tx, [p.key for p, *_ in grants if p.key in choices.purposes], choices.notices, agreed
    )
    for purpose, wanted_topics, has_topics, changed in grants:
        if purpose.key in choices.purposes:
            notice = shown.get(purpose.key)
            if notice is None:
                reason = "the notice shown with this purpose is missing or not its own"
                raise InvalidInput(
                    f"notice.{purpose.key}: {reason}", fields={f"notice.{purpose.key}": reason}
                )
            sha, locale = notice
            changes.append(
                _change(
                    lead,
                    purpose.key,
                    ConsentAction.GRANTED,
                    context,
                    now,
                    notice_sha256=sha,
                    locale=locale,
                    topics=wanted_topics if has_topics else None,
                )
            )
        else:
            changes.append(_change(lead, purpose.key, _withdrawal_action(purpose), context, now))
        topic_changes.append(changed)
    entries = ledger.record(tx, changes)
    for entry, changed in zip(entries, topic_changes, strict=True):
        record_topics(tx, lead.subject_id, changed, entry.seq, now)
    return entries


def _notices_shown(
    tx: Transaction,
    purposes: list[str],
    notices: Mapping[str, str],
    agreed: Mapping[str, str],
) -> dict[str, tuple[str, str]]:
    """(hash, locale) of the notice each granted purpose is recorded under: the one it was
    shown (``notices``: purpose -> hash), if its own; for a re-affirmation (``agreed``:
    the notice the lead's standing grant names), that one instead when it is still the
    current text in its language and the page showed another language's."""
    hashes = sorted({notices[p] for p in purposes if p in notices} | set(agreed.values()))
    if not hashes:
        return {}
    found: dict[tuple[str, str], tuple[str, bool]] = {}
    rows = connection_of(tx).execute(_NOTICES_BY_HASH, {"hashes": hashes})
    for purpose, sha, locale, current in rows:
        found[(purpose, sha)] = (locale, bool(current))  # ordered by version: latest wins
    shown: dict[str, tuple[str, str]] = {}
    for purpose in purposes:
        given = notices.get(purpose)
        if given is None or (purpose, given) not in found:
            continue
        shown[purpose] = (given, found[(purpose, given)][0])
        kept = agreed.get(purpose)
        if kept is not None and (purpose, kept) in found:
            locale, current = found[(purpose, kept)]
            if current and locale != shown[purpose][1]:
                shown[purpose] = (kept, locale)
    return shown


def withdraw_purposes(
    ledger: ConsentLedger,
    tx: Transaction,
    lead: Lead,
    purposes: Iterable[str] | None,
    context: ChangeContext,
) -> list[LedgerEntry]:
    """Withdraw ``purposes`` (``None``: every purpose) where permitted or pending.

    Idempotent: a purpose already off gets no entry, so a mail provider retrying a
    one-click unsubscribe records nothing new.
    """
    wanted = None if purposes is None else set(purposes)
    now = utcnow()
    changes: list[ConsentChange] = []
    topic_changes: list[dict[str, bool]] = []
    for purpose in lead.purposes:
        if wanted is not None and purpose.key not in wanted:
            continue
        on = purpose.permitted(lead.jurisdiction)
        if not on and purpose.status != PENDING:
            continue
        changes.append(_change(lead, purpose.key, _withdrawal_action(purpose), context, now))
        topic_changes.append({t.key: False for t in purpose.topics if t.wanted})
    entries = ledger.record(tx, changes)
    for entry, changed in zip(entries, topic_changes, strict=True):
        record_topics(tx, lead.subject_id, changed, entry.seq, now)
    return entries


def confirm_grants(
    ledger: ConsentLedger,
    tx: Transaction,
    lead: Lead,
    purposes: Iterable[str],
    context: ChangeContext,
) -> list[LedgerEntry]:
    """Record ``confirmed`` (method double-opt-in) for each of ``purposes`` still
    pending, under the notice version its pending grant was made with. Confirming
    twice, or after a withdrawal, records nothing (nothing is pending)."""
    wanted = set(purposes)
    states = ledger.lead_states(tx, lead.subject_id)
    now = utcnow()
    changes = [
        ConsentChange(
            subject_id=lead.subject_id,
            purpose=purpose.key,
            action=ConsentAction.CONFIRMED,
            source=SOURCE,
            method=ConsentMethod.DOUBLE_OPT_IN,
            occurred_at=now,
            notice_sha256=states[purpose.key][2],
            confirmed=True,
            jurisdiction=lead.jurisdiction,
            locale=lead.locale,
            evidence=ChangeContext(
                ip=context.ip, user_agent=context.user_agent, via="confirmation-link"
            ).evidence(),
        )
        for purpose in lead.purposes
        if purpose.key in wanted and states.get(purpose.key, ("",))[0] == PENDING
    ]
    return ledger.record(tx, changes)


# -- Global Privacy Control (issue 16) ----------------------------------------------------


def gpc_not_yet_honoured(lead: Lead) -> list[LeadPurpose]:
    """The lead's sale-or-sharing purposes a ``Sec-GPC: 1`` signal still has to opt out
    of: those without a no recorded (a refusal, withdrawal, earlier GPC signal, expiry
    or erasure already is one)."""
    return [
        p
        for p in lead.purposes
        if p.category == PurposeCategory.SALE_OR_SHARING.value
        and (p.status is None or not is_negative(p.status))
    ]


def honour_gpc(
    ledger: ConsentLedger, tx: Transaction, lead: Lead, context: ChangeContext
) -> list[LedgerEntry]:
    """Record a GPC opt-out (method gpc-signal) for each purpose
    :func:`gpc_not_yet_honoured` names: once, however often the browser sends it."""
    now = utcnow()
    changes = [
        ConsentChange(
            subject_id=lead.subject_id,
            purpose=purpose.key,
            action=ConsentAction.GPC_OPT_OUT,
            source=SOURCE,
            method=ConsentMethod.GPC_SIGNAL,
            occurred_at=now,
            jurisdiction=lead.jurisdiction,
            locale=lead.locale,
            evidence=ChangeContext(
                ip=context.ip, user_agent=context.user_agent, via="preference-page-gpc"
            ).evidence({"signal": "Sec-GPC: 1"}),
        )
        for purpose in gpc_not_yet_honoured(lead)
    ]
    return ledger.record(tx, changes)
