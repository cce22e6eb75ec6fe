"""What a newly loaded model would do to the leads scored so far: the preview that
``zeroparty site load FILE --check`` prints before anything changes (and a real load
prints too, as what ``zeroparty score`` or the scheduled pass will then do).

Read from the stored scores, in one statement over the permissioned scored leads (no
rescoring: a changed rule changes scores, which only a rescore computes, and the preview
says so). Thresholds only move leads forward, so the preview counts forward moves per
(from, to) stage, leaving out recycled leads still at or below their recycle score.
"""

from __future__ import annotations

from collections import Counter
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from consent_ledger.read_model import consent_states
from scoring.models import ScoredLead
from scoring.rules import ScoringModel

_leads = cast(Table, ScoredLead.__table__)
_cs = consent_states


def stage_moves(connection: Connection, model: ScoringModel) -> Counter[tuple[str, str]]:
    """Per (current stage, stage reached), how many permissioned leads ``model``'s
    thresholds would move forward by their stored scores."""
    rows = connection.execute(
        select(_leads.c.stage, _leads.c.score, _leads.c.recycled_score).join(
            _cs,
            (_cs.c.subject_id == _leads.c.subject_id)
            & (_cs.c.purpose_key == model.purpose)
            & _cs.c.permitted,
        )
    )
    moves: Counter[tuple[str, str]] = Counter()
    rank = model.lifecycle.rank
    for stage, score, recycled in rows:
        current, reached = str(stage), model.stage_for(score)
        if rank(reached) > rank(current) and (recycled is None or score > recycled):
            moves[(current, reached)] += 1
    return moves


def describe(moves: Counter[tuple[str, str]], model: ScoringModel, rules_changed: bool) -> str:
    """The preview in one line for people."""
    total = sum(moves.values())
    rank = model.lifecycle.rank
    detail = ", ".join(
        f"{old} → {new}: {count:,}"
        for (old, new), count in sorted(moves.items(), key=lambda m: (rank(m[0][0]), rank(m[0][1])))
    )
    line = f"scoring preview: by their current scores, {total:,} lead(s) would move forward"
    line += f" ({detail})" if detail else ""
    if rules_changed:
        line += "; rules changed too, so rescoring changes scores beyond this"
    return line
