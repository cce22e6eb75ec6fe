"""The lifecycle: the stages a lead moves through, their order, and their roles.

A lifecycle is a chain of stage names. A known lead starts at the first stage (where a
withdrawal, a recycle or the inactivity rule also puts it back); thresholds, events and
people move it forward along the chain. Two stages have a role others read:

- ``marketing``: the MQL-like stage, where marketing's qualification ends (the
  dashboard's "marketing" count, the default hand-off list);
- ``sales``: the sales hand-off stage (the SLA page's default, the funnel's last stage,
  the default hand-off list).

``no_threshold`` and ``no_event`` name stages that thresholds, resp. events, may not
reach (only people move a lead there). :data:`DEFAULT` is the chain zeroparty always
had: Visitor → Lead → MQL → SQL → Opportunity → Customer, Visitor being the anonymous
stage before a lead is known (no lead is ever stored at it), MQL the marketing stage
and SQL the sales hand-off. A model without ``[scoring.lifecycle]`` uses it and keeps
the hash it had before lifecycles could be chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Stages in one chain at most (the accounts' rank expression has a place for each).
MAX_STAGES = 20


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """A chain of stages (see the module's text). Ranks start at 1 for the first stage;
    0 is the anonymous stage, and any name the chain does not have."""

    stages: tuple[str, ...]
    marketing: str | None = None
    sales: str | None = None
    no_threshold: tuple[str, ...] = ()
    no_event: tuple[str, ...] = ()
    anonymous: str | None = None
    _index: dict[str, int] = field(default_factory=dict, compare=False, repr=False, hash=False)
    _folded: dict[str, str] = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        self._index.update({stage: rank for rank, stage in enumerate(self.stages, start=1)})
        self._folded.update({stage.casefold(): stage for stage in self.stages})

    @property
    def start(self) -> str:
        """Where a known lead starts, and goes back to."""
        return self.stages[0]

    @property
    def beyond_start(self) -> tuple[str, ...]:
        return self.stages[1:]

    @property
    def threshold_stages(self) -> tuple[str, ...]:
        """The stages a score may reach by itself."""
        return tuple(s for s in self.stages[1:] if s not in self.no_threshold)

    @property
    def event_stages(self) -> tuple[str, ...]:
        """The stages an event may move a lead to."""
        return tuple(s for s in self.stages[1:] if s not in self.no_event)

    @property
    def funnel(self) -> tuple[str, ...]:
        """The stages from the anonymous one (if any) to the sales hand-off (to the
        last stage without one)."""
        end = len(self.stages) if self.sales is None else self.stages.index(self.sales) + 1
        return (*([self.anonymous] if self.anonymous else []), *self.stages[:end])

    def rank(self, stage: str) -> int:
        """The place of ``stage`` in the chain (1 for the first); 0 if not in it."""
        return self._index.get(stage, 0)

    def parse(self, raw: object) -> str | None:
        """The stage named ``raw`` (any case), or ``None``."""
        if not isinstance(raw, str):
            return None
        return self._folded.get(raw.strip().casefold())

    def chain(self) -> str:
        return " → ".join(self.stages)

    @property
    def is_default(self) -> bool:
        return self == DEFAULT

    def as_json(self) -> dict[str, Any]:
        return {
            "stages": list(self.stages),
            "marketing": self.marketing,
            "sales": self.sales,
            "no_threshold": list(self.no_threshold),
            "no_event": list(self.no_event),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lifecycle:
        return cls(
            tuple(data["stages"]),
            data.get("marketing"),
            data.get("sales"),
            tuple(data.get("no_threshold", ())),
            tuple(data.get("no_event", ())),
        )


DEFAULT = Lifecycle(
    ("Lead", "MQL", "SQL", "Opportunity", "Customer"),
    marketing="MQL",
    sales="SQL",
    no_threshold=("Customer",),
    anonymous="Visitor",
)
