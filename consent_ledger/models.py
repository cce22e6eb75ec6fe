"""Tables of the consent ledger.

Personal data (email, name, raw evidence) lives in ``subject_profiles`` and
``consent_evidence`` only, so erasure can delete those rows while ``consent_events``
(pseudonymous, append-only, hash-chained) stays whole and verifiable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from zeroparty.db import Base, UTCDateTime, utcnow

HASH_HEX = 64
SUBJECT_ID_LENGTH = 32


class Purpose(Base):
    """A reason for processing that a subject can say yes or no to."""

    __tablename__ = "purposes"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    legal_basis: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32))
    mechanism: Mapped[str] = mapped_column(String(16))
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    # JSON list of ISO 3166-2 codes where an opt-out mechanism is lawful ("US-CA").
    jurisdictions: Mapped[str] = mapped_column(Text, default="[]")
    # A grant lapses this many days after it began (an ``expired`` entry is appended by
    # the lifecycle job); None: it does not lapse. Issue 16.
    expires_after_days: Mapped[int | None] = mapped_column(Integer)
    # The lead is reminded this many days before the lapse; None: no reminder.
    remind_before_days: Mapped[int | None] = mapped_column(Integer)
    # The title and description in the site's other languages, as JSON
    # ({"de": {"title": "…", "description": "…"}}); None: one text for every language.
    translations: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class NoticeVersion(Base):
    """One immutable version of a purpose's notice text in one locale.

    Never updated or deleted (database triggers refuse it): a changed text is a new row.
    ``sha256`` is the SHA-256 hex of the exact UTF-8 text, the version's public identity.
    """

    __tablename__ = "notice_versions"
    __table_args__ = (UniqueConstraint("purpose_key", "locale", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    purpose_key: Mapped[str] = mapped_column(ForeignKey("purposes.key"))
    locale: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(HASH_HEX), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What this version is to the one before (issue 16): "initial" (the first),
    # "material" (grants under earlier versions of the locale go stale: expired, and
    # the lead is asked again) or "editorial" (wording only: consent kept).
    change: Mapped[str] = mapped_column(String(16), default="material", server_default="material")
    # What changed, in words, as site.toml says it (shown on the preference page and in
    # the re-permission mail); None: not said.
    change_summary: Mapped[str | None] = mapped_column(Text)


class Topic(Base):
    """A subscription topic within a communication purpose (a newsletter, product news)."""

    __tablename__ = "topics"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose_key: Mapped[str] = mapped_column(ForeignKey("purposes.key"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # As Purpose.translations.
    translations: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Subject(Base):
    """A lead as the ledger knows it: a random id and nothing personal."""

    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(SUBJECT_ID_LENGTH), primary_key=True)
    locale: Mapped[str | None] = mapped_column(String(16))
    jurisdiction: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SubjectProfile(Base):
    """The subject's personal data. Erasure deletes this row."""

    __tablename__ = "subject_profiles"

    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class EmailDomain(FunctionElement[str]):
    """The domain part of a stored e-mail address (stored normalised: lower-case, one
    ``@``), as SQL: ``split_part`` on PostgreSQL, ``substr``/``instr`` on SQLite.

    One construct for the index below and for every query meant to use it (scoring's
    accounts): both databases use an index on an expression only when the query spells
    the expression exactly as the index does, literals included (a bound ``'@'`` does
    not match), so the SQL text lives here and nowhere else.
    """

    type = String()
    name = "email_domain"
    inherit_cache = True


@compiles(EmailDomain)
def _email_domain_sqlite(element: EmailDomain, compiler: SQLCompiler, **kw: Any) -> str:
    (email,) = element.clauses
    sql = compiler.process(email, **kw)
    return f"substr({sql}, instr({sql}, '@') + 1)"


@compiles(EmailDomain, "postgresql")
def _email_domain_postgresql(element: EmailDomain, compiler: SQLCompiler, **kw: Any) -> str:
    (email,) = element.clauses
    return f"split_part({compiler.process(email, **kw)}, '@', 2)"


# Accounts (scoring) walk leads by e-mail domain in order and look one domain up.
Index("ix_subject_profiles_email_domain", EmailDomain(SubjectProfile.__table__.c.email))


class ConsentEvent(Base):
    """One entry of the append-only, hash-chained consent ledger.

    Invariants (checked by ``zeroparty ledger verify``, UPDATE/DELETE refused by triggers):
    ``seq`` runs 1, 2, 3 … without gaps; ``prev_hash`` is the previous entry's ``hash``
    (64 zeros for the first); ``hash`` is SHA-256 over the entry's canonical form
    (:mod:`consent_ledger.entries`). The entry holds no personal data: evidence is
    committed to by ``evidence_sha256`` (salted), its body lives in ``consent_evidence``.
    """

    __tablename__ = "consent_events"
    __table_args__ = (
        Index(
            "ix_consent_events_subject_purpose_time",
            "subject_id",
            "purpose_key",
            "occurred_at",
            "seq",
        ),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"))
    purpose_key: Mapped[str] = mapped_column(ForeignKey("purposes.key"))
    action: Mapped[str] = mapped_column(String(16))
    confirmation_required: Mapped[bool] = mapped_column(Boolean, default=False)
    notice_sha256: Mapped[str | None] = mapped_column(String(HASH_HEX))
    source: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str | None] = mapped_column(String(200))
    jurisdiction: Mapped[str | None] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(32))
    locale: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    evidence_sha256: Mapped[str | None] = mapped_column(String(HASH_HEX))
    prev_hash: Mapped[str] = mapped_column(String(HASH_HEX))
    hash: Mapped[str] = mapped_column(String(HASH_HEX), unique=True)


class ConsentEvidence(Base):
    """The evidence body behind an entry's ``evidence_sha256``; erasable.

    ``evidence_sha256 = SHA-256(salt || canonical(body))``: the random salt makes the
    commitment useless for guessing the erased body (an IPv4 /24 is easy to enumerate).
    """

    __tablename__ = "consent_evidence"

    seq: Mapped[int] = mapped_column(ForeignKey("consent_events.seq"), primary_key=True)
    salt: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)


class ConsentState(Base):
    """Current consent per subject and purpose: a projection of the ledger.

    Rebuildable at any time from ``consent_events`` (:func:`rebuild_projection`); never
    the source of truth. Holds rows only for pairs the ledger has entries for.
    """

    __tablename__ = "consent_state"

    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), primary_key=True)
    purpose_key: Mapped[str] = mapped_column(ForeignKey("purposes.key"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    permitted: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notice_sha256: Mapped[str | None] = mapped_column(String(HASH_HEX))
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerHead(Base):
    """The single row naming the ledger's last entry.

    Appenders lock it (``SELECT … FOR UPDATE``) to take the next ``seq``: the one point
    of serialisation that keeps the chain without gaps or forks across processes and
    hosts. ``verify`` checks it against the last entry, which catches a truncated tail.
    """

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH_HEX))


class MerkleNode(Base):
    """A stored hash of a perfect aligned subtree of the ledger's Merkle tree.

    Covers leaves ``[index * 2**height, (index + 1) * 2**height)`` (leaf ``i`` is entry
    ``seq = i + 1``). Only subtrees of at least tile height are kept, so a proof needs
    ``O(log n)`` look-ups and never a scan. Derived data: ``ledger verify`` recomputes it.
    """

    __tablename__ = "merkle_nodes"

    height: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(HASH_HEX))


class LedgerCheckpoint(Base):
    """A signed tree head, as published (C2SP signed-note checkpoint). Append-only."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(HASH_HEX))
    note: Mapped[str] = mapped_column(Text)
    key_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentExpiryReminder(Base):
    """The reminder mailed before a grant lapses (issue 16): one per lead and purpose,
    naming the grant (by when it began) it was sent for, so each grant gets at most one
    and a renewed grant gets its own. Pseudonymous (no address: the mail went out
    through the outbox)."""

    __tablename__ = "consent_expiry_reminders"

    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), primary_key=True)
    purpose_key: Mapped[str] = mapped_column(ForeignKey("purposes.key"), primary_key=True)
    grant_since: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ErasureScrub(Base):
    """Whether the tables erasure deletes from are due to be rewritten (one row, ``id`` 1).

    Every erasure counts itself in ``erasures`` in its own transaction (so a scrub due is
    never lost); the scrub job (:mod:`consent_ledger.scrub`) rewrites the tables at most
    once per interval and then sets ``scrubbed_through`` to the count it started from.
    Due while ``erasures > scrubbed_through``; ``due_since``: since when, at the latest.
    """

    __tablename__ = "erasure_scrub"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    erasures: Mapped[int] = mapped_column(BigInteger)
    scrubbed_through: Mapped[int] = mapped_column(BigInteger)
    due_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
