"""Lifecycle stages: Visitor → Lead → MQL → SQL → Opportunity → Customer."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    VISITOR = "Visitor"
    LEAD = "Lead"
    MQL = "MQL"
    SQL = "SQL"
    OPPORTUNITY = "Opportunity"
    CUSTOMER = "Customer"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @classmethod
    def parse(cls, raw: object) -> Stage | None:
        """The stage named ``raw`` (case-insensitive), or ``None``."""
        if not isinstance(raw, str):
            return None
        return _BY_LOWER.get(raw.strip().lower())


_ORDER = list(Stage)
_BY_LOWER = {stage.value.lower(): stage for stage in Stage}

# Stages a score can reach by itself; later ones are set by sales.
THRESHOLD_STAGES = (Stage.MQL, Stage.SQL, Stage.OPPORTUNITY)


class Actor(StrEnum):
    """Who or what moved a lead, besides a named API key or staff member."""

    THRESHOLD = "system:threshold"
    CONSENT = "system:consent"
    INACTIVITY = "system:inactivity"
    EVENT = "system:event"
