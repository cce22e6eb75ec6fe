"""What the predictive score knows of a lead: features from scoring's own tables.

A lead's features are its kept answers and its behaviour, as the rule score sees them
(answers only where collected for a purpose the lead still permits, events only where
consent was live when they happened), up to a cut-off: for a lead with an outcome, the
moment the outcome was decided (nothing learnt after the fact); otherwise now.

- ``events:TYPE``: how many events of that type, a number;
- ``field:NAME`` and ``quiz:QUESTION``: the answer, a category (case-folded). A field
  with several answers gives ``field:NAME=VALUE`` = 1 per answer instead.

Values seen fewer than five times in training never become features
(:class:`scoring.predictive.FeatureEncoder`), so a free-text answer that names one
lead (a company, a title) is not in the model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from scoring import engine, services
from scoring.predictive import LeadRecord
from scoring.rules import ScoringModel
from zeroparty.lead_signals import InputKind

MAX_VALUE = 100


def _prefix(kind: str) -> str:
    return "quiz" if kind == InputKind.QUIZ_ANSWER else "field"


def record_from_facts(
    subject_id: str,
    attributes: Sequence[engine.AttributeFact],
    events: Sequence[engine.EventFact],
    cutoff: datetime,
    *,
    outcome: int | None = None,
    model: ScoringModel | None = None,
) -> LeadRecord:
    """The lead's features from the facts before ``cutoff``; with ``model``, also the
    rule score those same facts give at ``cutoff`` (the comparison the model must beat)."""
    before_attrs = [a for a in attributes if a.occurred_at <= cutoff]
    before_events = [e for e in events if e.occurred_at < cutoff]
    numeric: dict[str, float] = defaultdict(float)
    for event in before_events:
        numeric[f"events:{event.type}"] += 1.0
    values: dict[str, list[str]] = defaultdict(list)
    for attribute in before_attrs:
        key = f"{_prefix(attribute.kind)}:{attribute.name}"
        values[key].append(attribute.value.strip().casefold()[:MAX_VALUE])
    categorical: dict[str, str] = {}
    for key, answers in values.items():
        if len(answers) == 1:
            categorical[key] = answers[0]
        else:
            for answer in sorted(set(answers)):
                numeric[f"{key}={answer}"] = 1.0
    rule_score = (
        engine.total(engine.score_lead(model, before_attrs, before_events, cutoff))
        if model is not None
        else 0.0
    )
    return LeadRecord(subject_id, dict(numeric), categorical, outcome, rule_score)


def lead_records(
    connection: Connection,
    cutoffs: Mapping[str, datetime],
    *,
    outcomes: Mapping[str, int] | None = None,
    model: ScoringModel | None = None,
) -> list[LeadRecord]:
    """Records for the leads of ``cutoffs`` (the caller checked their consent)."""
    ids = sorted(cutoffs)
    if not ids:
        return []
    attributes, events = services._facts(connection, ids)
    return [
        record_from_facts(
            sid,
            attributes.get(sid, []),
            events.get(sid, []),
            cutoffs[sid],
            outcome=(outcomes or {}).get(sid),
            model=model,
        )
        for sid in ids
    ]
