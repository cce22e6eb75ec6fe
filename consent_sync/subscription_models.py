"""Tables of outgoing subscriptions (see :mod:`consent_sync.subscriptions`).

``consent_sync_subscriptions``: an endpoint staff registered, the event types it wants,
its Standard Webhooks secret (needed to sign, so kept as given; shown once when made)
and ``after_seq``, the ledger ``seq`` up to which the ledger's entries were turned into
its deliveries. ``consent_sync_deliveries``: the outbox (:mod:`zeroparty.outbox`), one
row per (subscription, ledger entry) it wants; its id ``msg_<subscription>_<seq>`` is
the ``webhook-id``, the same on every retry. Exactly one of ``delivered_at``,
``failed_at`` (dead letter), ``cancelled_at`` ends a row. No personal data in either:
a delivery's body is built from the change feed when it is sent.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from zeroparty.db import Base, UTCDateTime, utcnow


class Subscription(Base):
    """An endpoint that is sent the consent changes it subscribed to."""

    __tablename__ = "consent_sync_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(String(200), default="")
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    after_seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SubscriptionDelivery(Base):
    """One ledger entry on its way to one subscription's endpoint."""

    __tablename__ = "consent_sync_deliveries"
    __table_args__ = (
        Index("ix_consent_sync_deliveries_due", "next_attempt_at"),
        Index("ix_consent_sync_deliveries_subscription", "subscription_id", "seq"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)


class InboundSource(Base):
    """A sending tool allowed to post to ``/api/inbound/{provider}``, with what checks
    its signature: a ``whsec_`` secret (generic), Mailgun's webhook signing key, or
    SendGrid's verification key (base64 DER public key). Set with
    ``zeroparty inbound set PROVIDER``."""

    __tablename__ = "consent_sync_inbound_sources"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
