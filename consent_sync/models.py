"""Tables of consent sync.

``consent_sync_erased_addresses`` keeps, for each erased lead, the SHA-256 of its
normalised email, written by erasure itself (consent sync's personal-data provider runs
before the ledger deletes the profile). It is what GDPR Art. 17(2) and 19 need: the
change feed and the suppression list can tell downstream copies of the address to be
deleted and never re-added, without keeping or showing the address. The digest is the
one thing about an erased lead kept here, for that purpose only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from zeroparty.db import Base, UTCDateTime, utcnow

HASH_HEX = 64
SUBJECT_ID = 32


class ErasedAddress(Base):
    """The digest of an erased lead's normalised email. Written once, at erasure."""

    __tablename__ = "consent_sync_erased_addresses"

    # No foreign key: like scoring's rows, this one must not stand in the way of
    # whatever retention later does with the subject row.
    subject_id: Mapped[str] = mapped_column(String(SUBJECT_ID), primary_key=True)
    email_sha256: Mapped[str] = mapped_column(String(HASH_HEX), index=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
