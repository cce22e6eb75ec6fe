"""Read-only views of the ledger's tables, for other packages' SQL.

A feature package that must join consent in SQL (scoring gates every lead it ranks on
``permitted``; the console counts grants per week) selects from these instead of the
ledger's tables, which stay private (``consent_ledger.models``; the import contract in
``pyproject.toml`` enforces it). Each is a named subquery over one table: it can be
joined, filtered and ordered like a table, but not written to, and both SQLite and
PostgreSQL flatten it into the outer query, so the plans use the tables' indexes as a
direct join would.

Columns are the tables' own, under the same names; personal data (email, name) only
in :data:`lead_profiles`.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.sql import ColumnElement

from consent_ledger.models import (
    ConsentEvent,
    ConsentState,
    EmailDomain,
    NoticeVersion,
    Purpose,
    Subject,
    SubjectProfile,
    Topic,
)

__all__ = [
    "consent_states",
    "email_domain",
    "lead_profiles",
    "leads",
    "ledger_entries",
    "notice_versions",
    "purposes",
    "topics",
]

_subjects = cast(Table, Subject.__table__)
_profiles = cast(Table, SubjectProfile.__table__)
_states = cast(Table, ConsentState.__table__)
_events = cast(Table, ConsentEvent.__table__)

leads = select(
    _subjects.c.id.label("subject_id"),
    _subjects.c.locale,
    _subjects.c.jurisdiction,
    _subjects.c.created_at,
    _subjects.c.erased_at,
).subquery("leads")
"""Every lead: its pseudonymous id, locale, jurisdiction, when it was made and erased."""

lead_profiles = select(
    _profiles.c.subject_id,
    _profiles.c.email,
    _profiles.c.name,
    _profiles.c.created_at,
    _profiles.c.updated_at,
).subquery("lead_profiles")
"""A lead's personal data (normalised email and name); gone after erasure."""

consent_states = select(
    _states.c.subject_id,
    _states.c.purpose_key,
    _states.c.status,
    _states.c.permitted,
    _states.c.since,
    _states.c.notice_sha256,
    _states.c.last_seq,
    _states.c.last_occurred_at,
).subquery("consent_states")
"""The current consent of each (lead, purpose) with an entry, as every append keeps it.
A pair without a row has no entry: opt-in purposes are then not permitted, opt-out ones
only in their jurisdictions (use :meth:`ConsentLedger.consent` for the full rule)."""

ledger_entries = select(
    _events.c.seq,
    _events.c.subject_id,
    _events.c.purpose_key,
    _events.c.action,
    _events.c.confirmation_required,
    _events.c.notice_sha256,
    _events.c.source,
    _events.c.source_ref,
    _events.c.jurisdiction,
    _events.c.method,
    _events.c.locale,
    _events.c.occurred_at,
    _events.c.recorded_at,
    _events.c.hash,
).subquery("ledger_entries")
"""The hash-chained entries (no evidence bodies: those are personal data)."""


def _whole(model: type[object]) -> list[ColumnElement[object]]:
    table = cast(Table, model.__table__)  # type: ignore[attr-defined]
    return list(table.columns)


purposes = select(*_whole(Purpose)).subquery("purposes")
"""The site's purposes (key, title, category, mechanism, double opt-in, ...)."""
topics = select(*_whole(Topic)).subquery("topics")
"""The topics of each purpose."""
notice_versions = select(*_whole(NoticeVersion)).subquery("notice_versions")
"""Every notice text ever shown, per purpose, locale and version (immutable)."""


def email_domain(email: ColumnElement[str]) -> ColumnElement[str]:
    """The domain part of an email column, written as the ledger's index on it is (so
    a query on a lead's domain uses that index)."""
    return cast(ColumnElement[str], EmailDomain(email))
