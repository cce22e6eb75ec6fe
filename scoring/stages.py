"""The stage names of the default lifecycle (Visitor → Lead → MQL → SQL → Opportunity →
Customer; :data:`scoring.lifecycle.DEFAULT` orders them, and site.toml may choose
others), and who or what moves a lead."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    VISITOR = "Visitor"
    LEAD = "Lead"
    MQL = "MQL"
    SQL = "SQL"
    OPPORTUNITY = "Opportunity"
    CUSTOMER = "Customer"


class Actor(StrEnum):
    """Who or what moved a lead, besides a named API key or staff member."""

    THRESHOLD = "system:threshold"
    CONSENT = "system:consent"
    INACTIVITY = "system:inactivity"
    EVENT = "system:event"
    LIFECYCLE = "system:lifecycle"
