"""Tables of the preference center.

Topic choices live here, not in the ledger: the ledger stays purpose-level (what was
consented to, under which notice), and every topic change is *also* a ledger entry for
its purpose (a re-affirmed grant whose evidence names the topic set), so the ledger shows
that something changed and when, while these tables say exactly what.

None of these tables holds an email or a name: rows are keyed by the pseudonymous
subject id (or, for rate limiting, a keyed hash of the address that expires in an hour).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from zeroparty.db import Base, UTCDateTime, utcnow

SUBJECT_ID_LENGTH = 32


class LinkVersion(Base):
    """A subject's current link version: tokens carrying an older one are revoked.

    No row means version 0. Bumping the version (:func:`revoke_links`) kills every
    preference, unsubscribe and erasure link mailed to the subject so far.
    """

    __tablename__ = "preference_link_versions"

    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TopicSubscription(Base):
    """Whether a subject wants a topic now. No row: the topic follows its purpose."""

    __tablename__ = "topic_subscriptions"

    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"), primary_key=True)
    topic_key: Mapped[str] = mapped_column(ForeignKey("topics.key"), primary_key=True)
    subscribed: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ledger_seq: Mapped[int | None] = mapped_column(BigInteger)


class TopicSubscriptionChange(Base):
    """The history of topic choices: one row per topic per change, never updated.

    ``ledger_seq`` names the ledger entry recorded with the change, so an auditor can go
    from a topic change to the entry (and its evidence) and back.
    """

    __tablename__ = "topic_subscription_changes"
    __table_args__ = (Index("ix_topic_subscription_changes_subject", "subject_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(ForeignKey("subjects.id"))
    topic_key: Mapped[str] = mapped_column(ForeignKey("topics.key"))
    subscribed: Mapped[bool] = mapped_column(Boolean)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ledger_seq: Mapped[int | None] = mapped_column(BigInteger)


class LinkRequest(Base):
    """One ``POST /p/request-link``, for rate limiting across processes and hosts.

    ``address_key`` is an HMAC of the normalised address under the signing key, kept
    for an hour at most (older rows are pruned on every request); it is computed the same
    way whether or not the address belongs to a lead, so the limit reveals nothing.
    """

    __tablename__ = "preference_link_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    address_key: Mapped[str] = mapped_column(String(64), index=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
