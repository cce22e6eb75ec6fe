"""What consent sync keeps of an erased lead: the SHA-256 of its normalised email.

Erasure asks every package's personal-data provider to delete its part before the
ledger deletes the profile (:mod:`consent_ledger.erasure`); consent sync's provider uses
that moment to keep the digest (:class:`consent_sync.models.ErasedAddress`), so the
change feed and the suppression list can name the erased address to downstream copies
(GDPR Art. 17(2), 19) without holding it. A live lead has nothing here.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent_ledger.read_model import lead_profiles
from consent_sync.models import ErasedAddress
from zeroparty.db import utcnow
from zeroparty.personal_data import PersonalData


def email_sha256(normalised_email: str) -> str:
    """The digest downstream systems compare with: SHA-256 hex of the normalised email
    (as ``consent_ledger.api.normalise_email`` makes it) in UTF-8."""
    return hashlib.sha256(normalised_email.encode()).hexdigest()


def _export(_session: Session, _subject_id: str) -> None:
    return None  # nothing is kept about a live lead


def _erase(session: Session, subject_id: str) -> None:
    email = session.execute(
        select(lead_profiles.c.email).where(lead_profiles.c.subject_id == subject_id)
    ).scalar_one_or_none()
    if email is None or session.get(ErasedAddress, subject_id) is not None:
        return
    session.add(
        ErasedAddress(subject_id=subject_id, email_sha256=email_sha256(email), erased_at=utcnow())
    )
    session.flush()


PERSONAL_DATA = PersonalData("consent_sync", _export, _erase)
