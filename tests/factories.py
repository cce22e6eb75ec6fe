"""Helpers that write through the real services, for tests that need data."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentRecord
from consent_ledger.entries import LedgerEntry
from consent_ledger.models import NoticeVersion
from zeroparty.db import Database
from zeroparty.wiring import build_ledger


def notice_hash(database: Database, purpose: str, locale: str = "en") -> str:
    with database.read() as session:
        stmt = (
            select(NoticeVersion.sha256)
            .where(NoticeVersion.purpose_key == purpose, NoticeVersion.locale == locale)
            .order_by(NoticeVersion.version.desc())
        )
        return session.execute(stmt).scalars().first() or ""


def record(
    database: Database,
    email: str,
    purpose: str,
    action: ConsentAction = ConsentAction.GRANTED,
    *,
    occurred_at: datetime | None = None,
    method: ConsentMethod = ConsentMethod.CHECKBOX,
    jurisdiction: str | None = None,
    evidence: dict[str, str | int | bool | None] | None = None,
) -> LedgerEntry:
    notice = notice_hash(database, purpose) if action is ConsentAction.GRANTED else None
    with database.write() as session:
        return build_ledger(database).record_by_email(
            session,
            ConsentRecord(
                email=email,
                purpose=purpose,
                action=action,
                source=ConsentSource.FORM,
                method=method,
                notice_sha256=notice,
                occurred_at=occurred_at,
                jurisdiction=jurisdiction,
                evidence=evidence
                if evidence is not None
                else {"ip": "198.51.100.23", "user_agent": "pytest"},
            ),
        )
