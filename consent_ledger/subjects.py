"""Leads as the ledger sees them: a random id, with personal data kept apart."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    DNS_LABEL_LENGTH_LIMIT,
    EMAIL_MAX_LENGTH,
    LOCAL_PART_MAX_LENGTH,
)
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from consent_ledger.append_sql import append_sql
from consent_ledger.models import Subject, SubjectProfile
from zeroparty.db import Prepared, Transaction, connection_of, driver_cursor, utcnow
from zeroparty.errors import InvalidInput


class InvalidEmail(InvalidInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"email: {reason}", fields={"email": reason})


@lru_cache(maxsize=8192)
def _validated(address: str) -> str:
    # Pure and costly (tens of µs): the same addresses come back again and again.
    # allow_smtputf8=False: a non-ASCII local part could only be delivered with SMTPUTF8,
    # which zeroparty's mail does not send; such an address is refused here, where the
    # person can still type another. Internationalized domains stay allowed: they go on
    # the wire in their IDNA (xn--) form (zeroparty.mail.wire_address).
    return validate_email(
        address, check_deliverability=False, allow_smtputf8=False
    ).normalized.lower()


# An address of plain ASCII in its most common form: dot-atom local part, host-name
# labels of letters, digits and single hyphens (no "--" anywhere, so no Punycode), a
# final label ending with a letter. Such an address is exactly one email-validator
# accepts and normalises to its lower case, when the lengths and special-use names are
# checked too (:func:`_plain_ascii`); anything else goes to email-validator.
_ATEXT = r"a-z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_ADDRESS = re.compile(
    rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    r"[a-z0-9]*[a-z]\Z"
)
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)


def _plain_ascii(address: str) -> str | None:
    """The normal form of a plain ASCII address (see :data:`_PLAIN_ADDRESS`) without
    email-validator's per-character Unicode checks of the domain (tens of µs), or
    ``None``: not plain, let email-validator decide. The same answer, as a property test
    holds (``tests/consent_ledger/test_email_fast_path.py``)."""
    if not address.isascii() or len(address) > EMAIL_MAX_LENGTH:
        return None
    lowered = address.lower()
    if _PLAIN_ADDRESS.match(lowered) is None:
        return None
    local, _, domain = lowered.partition("@")
    if len(local) > LOCAL_PART_MAX_LENGTH or "--" in domain:
        return None
    if any(len(label) > DNS_LABEL_LENGTH_LIMIT for label in domain.split(".")):
        return None
    if any(domain == name or domain.endswith("." + name) for name in _SPECIAL_USE):
        return None
    return lowered


def normalise_email(raw: object) -> str:
    """A valid address in the one spelling leads are matched by.

    Syntax is checked by email-validator without DNS (no network at request time); the
    whole address is lower-cased, because mailbox providers treat local parts
    case-insensitively and one person must map to one lead. The part before the ``@``
    must be ASCII (no SMTPUTF8); the domain may be internationalized.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidEmail("an email address is required")
    if len(raw) > 320:
        raise InvalidEmail("an email address has at most 320 characters")
    address = raw.strip()
    plain = _plain_ascii(address)
    if plain is not None:
        return plain
    try:
        return _validated(address)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc


def new_subject_id() -> str:
    return secrets.token_hex(16)


_subjects = cast(Table, Subject.__table__)
_profiles = cast(Table, SubjectProfile.__table__)
_FIND = Prepared(select(_profiles.c.subject_id).where(_profiles.c.email == bindparam("email")))
_FIND_WITH_SUBJECT = (
    select(_subjects.c.id, _subjects.c.locale, _subjects.c.jurisdiction)
    .join(_profiles, _profiles.c.subject_id == _subjects.c.id)
    .where(_profiles.c.email == bindparam("email"))
)
_DELETE_SUBJECT = delete(_subjects).where(_subjects.c.id == bindparam("sid"))
_UPDATE_SUBJECT = (
    update(_subjects)
    .where(_subjects.c.id == bindparam("sid"))
    .values(jurisdiction=bindparam("jurisdiction"), locale=bindparam("locale"))
)


@dataclass(frozen=True, slots=True)
class SubjectRef:
    """A lead's id and the non-personal facts the ledger records with its entries."""

    id: str
    locale: str | None
    jurisdiction: str | None


def needs_update(known: SubjectRef, locale: str | None, jurisdiction: str | None) -> bool:
    """Whether a known lead takes something from a new record: a jurisdiction other
    than its own, or a locale when it has none."""
    return bool(jurisdiction and jurisdiction != known.jurisdiction) or bool(
        locale and not known.locale
    )


def find_subject_id(session: Transaction, email: str) -> str | None:
    """The subject id for an already-normalised email, or ``None``."""
    connection = connection_of(session)
    rows = _FIND.execute(connection, {"email": email})
    return str(rows[0].subject_id) if rows else None


def ensure_subject(
    session: Transaction,
    email: str,
    *,
    name: str | None = None,
    locale: str | None = None,
    jurisdiction: str | None = None,
) -> SubjectRef:
    """The lead with this normalised email, created if new, in the caller's (write)
    transaction; a known lead takes the jurisdiction given and a locale it lacked.
    Core statements only, so it runs on a plain connection too."""
    connection = connection_of(session)
    row = connection.execute(_FIND_WITH_SUBJECT, {"email": email}).first()
    if row is not None:
        known = SubjectRef(row.id, row.locale, row.jurisdiction)
        if not needs_update(known, locale, jurisdiction):
            return known
        updated = SubjectRef(known.id, known.locale or locale, jurisdiction or known.jurisdiction)
        connection.execute(
            _UPDATE_SUBJECT,
            {"sid": known.id, "jurisdiction": updated.jurisdiction, "locale": updated.locale},
        )
        return updated
    return create_subject(connection, email, name=name, locale=locale, jurisdiction=jurisdiction)


def create_subject(
    session: Transaction,
    email: str,
    *,
    name: str | None = None,
    locale: str | None = None,
    jurisdiction: str | None = None,
) -> SubjectRef:
    """A new lead for a normalised email the caller has just found unknown in this
    (write) transaction. Should another transaction on PostgreSQL have added the same
    email meanwhile, that lead is returned instead (as :func:`ensure_subject` would).

    The hot path of every signup: its statements run on the driver's cursor (one round
    trip on PostgreSQL), like the ledger's appends."""
    connection = connection_of(session)
    sql = append_sql(connection.dialect.name)
    ref = SubjectRef(new_subject_id(), locale, jurisdiction)
    now = sql.bind_time(utcnow())
    with driver_cursor(connection) as cursor:
        if connection.dialect.name == "sqlite":
            cursor.execute(sql.insert_subject, (ref.id, locale, jurisdiction, now))
            cursor.execute(sql.insert_profile, (ref.id, email, name, now, now))
            return ref
        cursor.execute(
            sql.insert_profile, (ref.id, locale, jurisdiction, now, ref.id, email, name, now, now)
        )
        if cursor.fetchone() is not None:
            return ref
    # The profile yielded to a lead another transaction created (its insert waited for
    # that commit): drop the subject row written with it and use that lead.
    connection.execute(_DELETE_SUBJECT, {"sid": ref.id})
    existing = connection.execute(_FIND_WITH_SUBJECT, {"email": email}).one()
    return SubjectRef(existing.id, existing.locale, existing.jurisdiction)


def get_or_create_subject(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    locale: str | None = None,
    jurisdiction: str | None = None,
) -> Subject:
    """:func:`ensure_subject`, returning the lead as an ORM object for callers that go
    on to use it (its attributes as the database has them now)."""
    ref = ensure_subject(session, email, name=name, locale=locale, jurisdiction=jurisdiction)
    return session.get_one(Subject, ref.id, populate_existing=True)
