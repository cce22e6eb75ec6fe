"""What a lead downloads: all data held about them (GDPR Art. 15 and 20).

The export is assembled from every personal-data provider the app's ledger was built with
(the ledger's profile and mails, capture's answers, scoring's scores, our topic choices),
plus every ledger entry of the subject with the exact notice text agreed to.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent_ledger.api import ConsentLedger
from consent_ledger.entries import format_timestamp
from consent_ledger.export import iter_export_rows
from consent_ledger.read_model import consent_states, notice_versions
from preference_center.models import TopicSubscription, TopicSubscriptionChange
from preference_center.services import lead_row
from zeroparty.db import utcnow

EXPORT_FORMAT = "zeroparty.subject-export/1"


def _ts(value: Any) -> str | None:
    return format_timestamp(value) if value is not None else None


def _notice_texts(session: Session, hashes: set[str]) -> dict[tuple[str, str], dict[str, Any]]:
    if not hashes:
        return {}
    n = notice_versions.c
    stmt = select(n.purpose_key, n.sha256, n.locale, n.version, n.text).where(
        n.sha256.in_(sorted(hashes))
    )
    return {
        (row.purpose_key, row.sha256): {
            "locale": row.locale,
            "version": row.version,
            "text": row.text,
        }
        for row in session.execute(stmt)
    }


def ledger_entries(session: Session, subject_id: str) -> list[dict[str, Any]]:
    """The subject's entries (with hashes and kept evidence) and the notice agreed to."""
    rows = list(iter_export_rows(session.connection(), subject_id))
    notices = _notice_texts(session, {r["notice_sha256"] for r in rows if r["notice_sha256"]})
    for row in rows:
        sha = row["notice_sha256"]
        row["notice"] = notices.get((row["purpose"], sha)) if sha else None
    return rows


def subject_export(ledger: ConsentLedger, session: Session, subject_id: str) -> dict[str, Any]:
    subject = lead_row(session, subject_id)
    states = session.execute(
        select(consent_states)
        .where(consent_states.c.subject_id == subject_id)
        .order_by(consent_states.c.purpose_key)
    )
    sections = {p.name: p.export(session, subject_id) for p in ledger.personal_data_providers}
    ledger_part = sections.pop("consent_ledger", None) or {}
    subs = session.execute(
        select(TopicSubscription)
        .where(TopicSubscription.subject_id == subject_id)
        .order_by(TopicSubscription.topic_key)
    ).scalars()
    history = session.execute(
        select(TopicSubscriptionChange)
        .where(TopicSubscriptionChange.subject_id == subject_id)
        .order_by(TopicSubscriptionChange.id)
    ).scalars()
    return {
        "format": EXPORT_FORMAT,
        "generated_at": format_timestamp(utcnow()),
        "subject": _subject(subject_id, subject),
        "profile": ledger_part.get("profile"),
        "mails": ledger_part.get("mails", []),
        "consent": [
            {
                "purpose": s.purpose_key,
                "status": s.status,
                "permitted": bool(s.permitted),
                "since": _ts(s.since),
                "notice_sha256": s.notice_sha256,
            }
            for s in states
        ],
        "subscriptions": [
            {"topic": s.topic_key, "subscribed": s.subscribed, "updated_at": _ts(s.updated_at)}
            for s in subs
        ],
        "subscription_history": [
            {
                "topic": h.topic_key,
                "subscribed": h.subscribed,
                "occurred_at": _ts(h.occurred_at),
                "ledger_seq": h.ledger_seq,
            }
            for h in history
        ],
        "answers": sections.pop("capture", None),
        "scores": sections.pop("scoring", None),
        "other": {
            name: section for name, section in sections.items() if name != "preference_center"
        },
        "ledger": ledger_entries(session, subject_id),
    }


def _subject(subject_id: str, subject: Any) -> dict[str, Any]:
    return {
        "id": subject_id,
        "locale": subject.locale,
        "jurisdiction": subject.jurisdiction,
        "created_at": _ts(subject.created_at),
    }
