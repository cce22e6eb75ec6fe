"""Helpers for the predictive score's tests: leads with answers, events and outcomes,
written through the real services (the ledger, the lead signal, event intake)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from consent_ledger.subjects import find_subject_id
from scoring import outcomes, services
from tests.scoring.conftest import grant
from zeroparty import lead_signals
from zeroparty.db import Database, utcnow
from zeroparty.wiring import build_ledger


@dataclass(frozen=True, slots=True)
class Lead:
    """A lead to make: ``answers`` are contact-form fields, ``events`` event types
    (sent ten days ago), ``outcome`` won/lost decided ``decided_days_ago``."""

    email: str
    answers: dict[str, str] = field(default_factory=dict)
    events: Sequence[str] = ()
    outcome: outcomes.Outcome | None = None
    decided_days_ago: float = 1.0
    later_events: Sequence[str] = ()  # sent after the decision (not learnt from)


def _subject(session: Session, email: str) -> str:
    subject_id = find_subject_id(session, email)
    assert subject_id is not None
    return subject_id


def make_lead(database: Database, lead: Lead, *, now: datetime | None = None) -> str:
    """Grant profiling 30 days ago, keep the answers (20 days ago), the events (10 days
    ago; ``later_events`` after the decision) and record the outcome."""
    now = now or utcnow()
    grant(database, lead.email, occurred_at=now - timedelta(days=30))
    decided_at = now - timedelta(days=lead.decided_days_ago)
    with database.write() as session:
        subject_id = _subject(session, lead.email)
        if lead.answers:
            build_ledger(database).publish_signals(
                session,
                [
                    lead_signals.LeadSignal(
                        subject_id,
                        now - timedelta(days=20),
                        "contact@v1",
                        tuple(
                            lead_signals.LeadInput(
                                lead_signals.InputKind.FIELD, name, (value,), ("profiling",)
                            )
                            for name, value in lead.answers.items()
                        ),
                    ),
                ],
            )
        batch = [(t, now - timedelta(days=10)) for t in lead.events] + [
            (t, decided_at + timedelta(hours=1)) for t in lead.later_events
        ]
        if batch:
            services.ingest_events(
                session,
                [
                    services.EventIn(i, uuid.uuid4().hex, lead.email, t, at)
                    for i, (t, at) in enumerate(batch)
                ],
            )
        if lead.outcome is not None:
            outcomes.record_outcome(session, subject_id, lead.outcome, decided_at, actor="test")
    return subject_id


def clicking_leads(count: int, prefix: str = "c") -> list[Lead]:
    """Leads whose outcome a rule-blind signal decides: the won ones clicked emails
    (``email_clicked`` scores nothing in the demo rules), the lost ones did not; a
    pricing page view, which the rules score, is spread evenly over both."""
    leads = []
    for n in range(count):
        won = n % 2 == 0
        events = ["email_clicked", "email_clicked"] if won else []
        if n % 4 in (0, 1):
            events.append("pricing_page_viewed")
        leads.append(
            Lead(
                f"{prefix}{n}@example.com",
                {"industry": "software" if n % 3 else "retail"},
                events,
                outcomes.Outcome.WON if won else outcomes.Outcome.LOST,
            )
        )
    return leads


def rule_following_leads(count: int, prefix: str = "r") -> list[Lead]:
    """Leads won exactly when the rules score them higher (a pricing page view)."""
    return [
        Lead(
            f"{prefix}{n}@example.com",
            {"industry": "software"},
            ["pricing_page_viewed"] if n % 2 == 0 else [],
            outcomes.Outcome.WON if n % 2 == 0 else outcomes.Outcome.LOST,
        )
        for n in range(count)
    ]
