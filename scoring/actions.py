"""Next best action: what sales (or marketing) should do next with a lead, from the
declarative rules of ``[[scoring.next_action]]``.

A rule names an ``action`` (text for people) and conditions, all of which must hold:
the lead's ``stages``, ``lead_types`` it holds (all of them), intent ``tags`` it holds
(all of them), ``min_score``, ``temperature`` band, and ``unacknowledged`` (its current
hand-off not acknowledged by sales yet). The first rule that matches, in file order, is
the lead's next best action; none matching: no action. Evaluation is a pure function of
what the lead API already reads (:func:`next_action`); :func:`parse` refuses unknown
stages, types, tags and bands, and rules that can never match (shadowed by an earlier
rule without conditions, or asking for more points than the model can give).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from zeroparty.config_errors import ConfigProblems

ACTION_KEYS = {
    "name",
    "action",
    "stages",
    "lead_types",
    "tags",
    "min_score",
    "temperature",
    "unacknowledged",
}


@dataclass(frozen=True, slots=True)
class NextActionRule:
    name: str
    action: str
    stages: tuple[str, ...] = ()
    lead_types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    min_score: float | None = None
    temperature: str | None = None
    unacknowledged: bool = False

    @property
    def unconditional(self) -> bool:
        return not (
            self.stages
            or self.lead_types
            or self.tags
            or self.min_score is not None
            or self.temperature
            or self.unacknowledged
        )

    def matches(self, lead: LeadFacts) -> bool:
        return (
            (not self.stages or lead.stage in self.stages)
            and set(self.lead_types).issubset(lead.lead_types)
            and set(self.tags).issubset(lead.tags)
            and (self.min_score is None or (lead.score or 0.0) >= self.min_score)
            and (self.temperature is None or lead.temperature == self.temperature)
            and (not self.unacknowledged or not lead.acknowledged)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "stages": list(self.stages),
            "lead_types": list(self.lead_types),
            "tags": list(self.tags),
            "min_score": self.min_score,
            "temperature": self.temperature,
            "unacknowledged": self.unacknowledged,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> NextActionRule:
        return cls(
            raw["name"],
            raw["action"],
            tuple(raw["stages"]),
            tuple(raw["lead_types"]),
            tuple(raw["tags"]),
            raw["min_score"],
            raw["temperature"],
            bool(raw["unacknowledged"]),
        )


@dataclass(frozen=True, slots=True)
class LeadFacts:
    """What the rules look at, as the lead API shows it."""

    stage: str
    score: float | None
    lead_types: Collection[str]
    tags: Collection[str]
    temperature: str | None
    acknowledged: bool


def next_action(rules: tuple[NextActionRule, ...], lead: LeadFacts) -> dict[str, str] | None:
    """The first matching rule's action (``{"rule", "action"}``), or ``None``."""
    for rule in rules:
        if rule.matches(lead):
            return {"rule": rule.name, "action": rule.action}
    return None


def _strings(raw: Mapping[str, Any], key: str, where: str, problems: ConfigProblems) -> list[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(f"{where}.{key}", "must be a list of names")
        return []
    return list(value)


def parse(
    tables: list[Mapping[str, Any]],
    *,
    lead_types: Collection[str],
    tags: Collection[str],
    bands: Collection[str],
    max_score: float,
    stages: Collection[str],
    problems: ConfigProblems,
) -> tuple[NextActionRule, ...]:
    """``[[scoring.next_action]]`` checked against the rest of the model (``stages``:
    the lifecycle's)."""
    stage_names = list(stages)
    found: list[NextActionRule] = []
    catch_all: str | None = None
    for index, raw in enumerate(tables):
        where = f"scoring.next_action[{index}]"
        for key in sorted(set(raw) - ACTION_KEYS):
            problems.add(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(ACTION_KEYS))})")
        name, action = raw.get("name"), raw.get("action")
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            problems.add(f"{where}.name", "is required: a name of at most 64 characters")
            name = ""
        if not isinstance(action, str) or not action.strip() or len(action) > 500:
            problems.add(f"{where}.action", "is required: what to do, at most 500 characters")
            action = ""
        stages = _strings(raw, "stages", where, problems)
        for stage in stages:
            if stage not in stage_names:
                problems.add(f"{where}.stages", f"no stage {stage!r} ({', '.join(stage_names)})")
        types = _strings(raw, "lead_types", where, problems)
        for lead_type in types:
            if lead_type not in lead_types:
                problems.add(f"{where}.lead_types", f"no lead type {lead_type!r} in this model")
        wanted_tags = _strings(raw, "tags", where, problems)
        for tag in wanted_tags:
            if tag not in tags:
                problems.add(f"{where}.tags", f"no quiz answer in this file carries tag {tag!r}")
        min_score = raw.get("min_score")
        if min_score is not None:
            if isinstance(min_score, bool) or not isinstance(min_score, int | float):
                problems.add(f"{where}.min_score", "must be a number")
                min_score = None
            elif min_score > max_score:
                problems.add(
                    f"{where}.min_score",
                    f"can never match: the model gives at most {max_score:g} points",
                )
        temperature = raw.get("temperature")
        if temperature is not None and temperature not in bands:
            problems.add(f"{where}.temperature", f"no temperature band {temperature!r}")
            temperature = None
        unacknowledged = raw.get("unacknowledged", False)
        if not isinstance(unacknowledged, bool):
            problems.add(f"{where}.unacknowledged", "must be true or false")
            unacknowledged = False
        rule = NextActionRule(
            str(name),
            str(action),
            tuple(stages),
            tuple(types),
            tuple(wanted_tags),
            None if min_score is None else float(min_score),
            temperature,
            unacknowledged,
        )
        if catch_all is not None:
            problems.add(where, f"can never match: rule {catch_all!r} before it matches every lead")
        elif rule.unconditional:
            catch_all = rule.name
        found.append(rule)
    names = [r.name for r in found if r.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.add("scoring.next_action", f"rule name {name!r} is used more than once")
    return tuple(found)
