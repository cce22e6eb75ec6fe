"""Leads as the ledger sees them: a random id, with personal data kept apart."""

from __future__ import annotations

import secrets

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consent_ledger.models import Subject, SubjectProfile
from zeroparty.errors import InvalidInput


class InvalidEmail(InvalidInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"email: {reason}", fields={"email": reason})


def normalise_email(raw: object) -> str:
    """A valid address in the one spelling leads are matched by.

    Syntax is checked by email-validator without DNS (no network at request time); the
    whole address is lower-cased, because mailbox providers treat local parts
    case-insensitively and one person must map to one lead.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidEmail("an email address is required")
    if len(raw) > 320:
        raise InvalidEmail("an email address has at most 320 characters")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    return result.normalized.lower()


def new_subject_id() -> str:
    return secrets.token_hex(16)


def find_subject_id(session: Session, email: str) -> str | None:
    """The subject id for an already-normalised email, or ``None``."""
    stmt = select(SubjectProfile.subject_id).where(SubjectProfile.email == email)
    return session.execute(stmt).scalar_one_or_none()


def get_or_create_subject(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    locale: str | None = None,
    jurisdiction: str | None = None,
) -> Subject:
    """The lead with this normalised email, created if new (in the caller's transaction)."""
    subject_id = find_subject_id(session, email)
    if subject_id is not None:
        subject = session.get_one(Subject, subject_id)
        if jurisdiction and subject.jurisdiction != jurisdiction:
            subject.jurisdiction = jurisdiction
        if locale and not subject.locale:
            subject.locale = locale
        return subject
    subject = Subject(id=new_subject_id(), locale=locale, jurisdiction=jurisdiction)
    try:
        with session.begin_nested():
            session.add(subject)
            session.add(SubjectProfile(subject_id=subject.id, email=email, name=name))
    except IntegrityError:
        # Another transaction created this lead between our look-up and insert.
        existing = find_subject_id(session, email)
        if existing is None:
            raise
        return session.get_one(Subject, existing)
    return subject
