"""``[scoring.lifecycle]`` in site.toml, and moving leads when the chain changes.

:func:`parse` checks the table (problems by key path); :func:`migrate`, called when a
model is stored, moves the leads held at stages the new chain drops to the stage
``[scoring.lifecycle.moves]`` names for each (and those at the old first stage to the
new first stage, where they differ), recording every move like any stage
change (actor ``system:lifecycle``, with the reason; the lead keeps its
``stage_since`` and an acknowledgement of that entry, so no SLA clock restarts and no
webhook is sent), or refuses the load, changing nothing, when leads hold a dropped
stage that has no such entry.

    [scoring.lifecycle]
    stages = ["Contact", "Lead", "Prospect", "SQL", "Customer"]
    marketing = "Prospect"      # the MQL-like stage
    sales = "SQL"               # the sales hand-off stage
    by_hand = ["Customer"]      # reached by people only: no threshold, no event

    [scoring.lifecycle.moves]   # stages leads hold that the chain drops
    MQL = "Prospect"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy.orm import Session

from scoring.lifecycle import DEFAULT, MAX_STAGES, Lifecycle
from scoring.models import HandoffAck, ScoredLead, StageChange
from scoring.stages import Actor
from zeroparty.config_errors import ConfigProblems, SiteConfigError
from zeroparty.db import utcnow

# Stage columns hold 16 characters (scoring_leads.stage, scoring_stage_changes, …).
STAGE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,15}$")
KEYS = {"stages", "marketing", "sales", "by_hand", "moves"}
WHERE = "scoring.lifecycle"

_leads, _changes, _acks = (cast(Table, m.__table__) for m in (ScoredLead, StageChange, HandoffAck))


def parse(
    scoring: Mapping[str, Any], problems: ConfigProblems
) -> tuple[Lifecycle, tuple[tuple[str, str], ...]]:
    """The lifecycle ``[scoring.lifecycle]`` declares (:data:`DEFAULT` without one) and
    its moves (old stage, new stage). On a problem the default stands in, so the rest
    of the model is still checked against some chain."""
    table = scoring.get("lifecycle")
    if table is None:
        return DEFAULT, ()
    if not isinstance(table, dict):
        problems.add(WHERE, 'must be a table such as { stages = ["Lead", "MQL", "SQL"] }')
        return DEFAULT, ()
    for key in sorted(set(table) - KEYS):
        problems.add(f"{WHERE}.{key}", f"unknown key (known: {', '.join(sorted(KEYS))})")
    if "stages" not in table:
        # Moves alone: back to the fixed chain, moving the leads at stages it lacks.
        for key in sorted({"marketing", "sales", "by_hand"} & set(table)):
            problems.add(f"{WHERE}.stages", f"is required with {key}")
        return DEFAULT, _moves(table.get("moves", {}), DEFAULT, problems)
    stages = _stages(table.get("stages"), problems)
    if stages is None:
        return DEFAULT, ()
    chain = " → ".join(stages)

    def stage(key: str, default: str | None) -> str | None:
        if key not in table:
            return default if default in stages[1:] else None
        value = table[key]
        if value not in stages:
            problems.add(f"{WHERE}.{key}", f"no stage {value!r} in the chain ({chain})")
            return None
        if value == stages[0]:
            problems.add(f"{WHERE}.{key}", f"{value!r} is where every lead starts")
            return None
        return str(value)

    marketing, sales = stage("marketing", "MQL"), stage("sales", "SQL")
    if marketing and sales and stages.index(marketing) > stages.index(sales):
        problems.add(
            f"{WHERE}.marketing",
            f"the marketing stage ({marketing}) must come before the sales hand-off ({sales})",
        )
    by_hand = table.get("by_hand", [])
    if not isinstance(by_hand, list):
        problems.add(f"{WHERE}.by_hand", "must be a list of stage names")
        by_hand = []
    for index, name in enumerate(by_hand):
        if name not in stages[1:]:
            problems.add(
                f"{WHERE}.by_hand[{index}]", f"no stage {name!r} after the first in ({chain})"
            )
    hand = tuple(s for s in stages if s in by_hand)
    lifecycle = Lifecycle(stages, marketing, sales, hand, hand)
    return lifecycle, _moves(table.get("moves", {}), lifecycle, problems)


def _stages(raw: object, problems: ConfigProblems) -> tuple[str, ...] | None:
    where = f"{WHERE}.stages"
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_STAGES:
        problems.add(where, f"must be a list of 2 to {MAX_STAGES} stage names, in order")
        return None
    found: list[str] = []
    bad = False
    for index, name in enumerate(raw):
        if not isinstance(name, str) or not STAGE_RE.match(name):
            problems.add(
                f"{where}[{index}]",
                "a stage name is a letter, then letters, digits, '_' or '-' (at most 16)",
            )
            bad = True
            continue
        earlier = next((s for s in found if s.casefold() == name.casefold()), None)
        if earlier == name:
            path = " → ".join([*found[found.index(name) :], name])
            problems.add(
                f"{where}[{index}]",
                f"a cycle: the chain comes back to {name} ({path}); stages run one way "
                "(sales moves a lead back with a recycle)",
            )
            bad = True
        elif earlier is not None:
            problems.add(
                f"{where}[{index}]",
                f"duplicate stage name: {name!r} is {earlier!r} (names ignore case)",
            )
            bad = True
        found.append(name)
    return None if bad else tuple(found)


def _moves(
    raw: object, lifecycle: Lifecycle, problems: ConfigProblems
) -> tuple[tuple[str, str], ...]:
    where = f"{WHERE}.moves"
    if not isinstance(raw, dict):
        problems.add(where, 'must be a table such as { MQL = "Prospect" }')
        return ()
    found: list[tuple[str, str]] = []
    for old, new in raw.items():
        if not STAGE_RE.match(old):
            problems.add(f"{where}.{old}", "not a stage name")
        elif old in lifecycle.stages:
            problems.add(
                f"{where}.{old}", f"{old} is in the chain: only stages it drops move elsewhere"
            )
        elif not isinstance(new, str) or new not in lifecycle.stages:
            problems.add(f"{where}.{old}", f"no stage {new!r} in the chain ({lifecycle.chain()})")
        else:
            found.append((old, new))
    return tuple(found)


def held_stages(session: Session) -> dict[str, int]:
    """How many leads hold each stage now."""
    rows = session.execute(select(_leads.c.stage, func.count()).group_by(_leads.c.stage))
    return {str(stage): int(count) for stage, count in rows}


def migrate(
    session: Session,
    before: Lifecycle | None,
    after: Lifecycle,
    moves: tuple[tuple[str, str], ...],
) -> list[str]:
    """Move the leads at stages ``after`` drops, as ``moves`` says; raise
    :class:`SiteConfigError` (nothing moved) for a held stage without a move. A new
    first stage takes the leads at the old first one (they earned no stage; thresholds
    move them on when the new model rescores them), unless ``moves`` sends a dropped
    old first stage elsewhere. Returns the change lines (none when the chain did not
    change)."""
    before = before or DEFAULT
    if before == after:
        return []
    held = held_stages(session)
    mapping = dict(moves)
    if before.start != after.start:
        mapping.setdefault(before.start, after.start)
    dropped = {
        stage: count
        for stage, count in held.items()
        if stage not in after.stages or (stage == before.start and stage in mapping)
    }
    missing = sorted(stage for stage in dropped if stage not in mapping)
    if missing:
        raise SiteConfigError(
            [
                (
                    f"{WHERE}.moves",
                    f"{dropped[stage]:,} lead(s) are at stage {stage}, which the chain "
                    f"({after.chain()}) does not have: name the stage they move to "
                    f'({stage} = "…")',
                )
                for stage in missing
            ]
        )
    now = utcnow()
    # The old first stage first: it may stay in the chain and receive a dropped stage's
    # leads, which must not move on with it.
    for old in sorted(dropped, key=lambda stage: (stage != before.start, before.rank(stage))):
        new = mapping[old]
        if old in after.stages:
            reason = (
                f"lifecycle changed to {after.chain()}: its first stage is {new}, "
                f"moved from {old}, the first stage before"
            )
        elif old == before.start and old not in dict(moves):
            reason = (
                f"lifecycle changed to {after.chain()}: stage {old} (the first stage "
                f"before) is not in it, moved to its first stage, {new}"
            )
        else:
            reason = (
                f"lifecycle changed to {after.chain()}: stage {old} is not in it, "
                f"moved to {new} (scoring.lifecycle.moves)"
            )
        session.execute(
            insert(_changes).from_select(
                ["subject_id", "from_stage", "to_stage", "actor", "reason", "score", "created_at"],
                select(
                    _leads.c.subject_id,
                    _leads.c.stage,
                    literal(new),
                    literal(Actor.LIFECYCLE.value),
                    literal(reason),
                    _leads.c.score,
                    literal(now, _changes.c.created_at.type),
                ).where(_leads.c.stage == old),
            )
        )
        # The entry into the stage is the same, renamed: an acknowledgement of it carries
        # over (the SLA clock stays stopped), the old row stays as it was.
        session.execute(
            insert(_acks).from_select(
                ["subject_id", "stage", "entered_at", "acked_at", "actor"],
                select(
                    _acks.c.subject_id,
                    literal(new),
                    _acks.c.entered_at,
                    _acks.c.acked_at,
                    _acks.c.actor,
                )
                .join(
                    _leads,
                    (_leads.c.subject_id == _acks.c.subject_id)
                    & (_leads.c.stage == _acks.c.stage)
                    & (_leads.c.stage_since == _acks.c.entered_at),
                )
                .where(_leads.c.stage == old),
            )
        )
        session.execute(update(_leads).where(_leads.c.stage == old).values(stage=new))
    line = f"lifecycle: {after.chain()} (was {before.chain()})"
    if dropped:
        order = sorted(dropped, key=lambda stage: (stage != before.start, before.rank(stage)))
        detail = ", ".join(f"{old} → {mapping[old]}: {dropped[old]:,}" for old in order)
        line += f"; {sum(dropped.values()):,} lead(s) move ({detail})"
    else:
        line += "; no lead moves"
    return [line]
