"""``zeroparty model train``: the predictive score trained on the outcomes sales recorded.

Consent (SPEC rule 3, issue #9): the leads trained on are those with an outcome whose
consent for the rule model's gating purpose is live *now*, read from the ledger's kept
state at training time; nothing else of any other lead is read (they reach
:func:`scoring.predictive.train` as bare ids, which the card counts as excluded). A
lead who withdrew is therefore out of the next training, even if a row of theirs had
survived. The model card names the purpose relied on.

Each lead's features and its rule score come from the same inputs, those from before
the outcome was decided (:mod:`scoring.features`), so the comparison is fair and
nothing learnt after the fact leaks in. Every training is stored, append-only, in
``scoring_predictive_models``; it is published (and shown beside the rule score) only
when :func:`scoring.predictive.publication` says it ranks held-out leads better than
the rule score, on enough held-out wins and losses.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import orjson
from sqlalchemy import Table, insert, select
from sqlalchemy.engine import Connection

from scoring import consent, features
from scoring.models import LeadOutcome, PredictiveModelVersion
from scoring.outcomes import Outcome
from scoring.predictive import (
    DEFAULT_HELD_OUT,
    DEFAULT_MIN_CATEGORY_COUNT,
    MIN_PER_CLASS,
    LeadRecord,
    Publication,
    TrainedModel,
    publication,
    train,
)
from scoring.rules import ScoringModel
from scoring.services import require_model
from zeroparty.db import Database, utcnow

BATCH = 1000

_outcomes = cast(Table, LeadOutcome.__table__)
_models = cast(Table, PredictiveModelVersion.__table__)


@dataclass(frozen=True, slots=True)
class TrainingReport:
    model_id: int
    scoring_model_id: int
    model: TrainedModel
    decision: Publication

    @property
    def published(self) -> bool:
        return self.decision.publish


@dataclass(frozen=True, slots=True)
class _Outcome:
    subject_id: str
    label: int
    decided_at: datetime


def _outcomes_recorded(connection: Connection) -> list[_Outcome]:
    rows = connection.execute(
        select(_outcomes.c.subject_id, _outcomes.c.outcome, _outcomes.c.decided_at).order_by(
            _outcomes.c.subject_id
        )
    )
    return [_Outcome(r.subject_id, Outcome(r.outcome).label, r.decided_at) for r in rows]


def consented(connection: Connection, subject_ids: Sequence[str], purpose: str) -> set[str]:
    """Those of ``subject_ids`` whose consent for ``purpose`` is live now."""
    live: set[str] = set()
    for start in range(0, len(subject_ids), BATCH):
        states = consent.gate_states(connection, subject_ids[start : start + BATCH], purpose)
        live.update(sid for sid, state in states.items() if state.permitted)
    return live


def training_records(
    connection: Connection, model: ScoringModel, permitted: set[str]
) -> Iterator[LeadRecord]:
    """A record per recorded outcome: the lead's pre-decision features and rule score if
    it is in ``permitted``, else its bare id (nothing of it is read)."""
    outcomes = _outcomes_recorded(connection)
    for start in range(0, len(outcomes), BATCH):
        batch = outcomes[start : start + BATCH]
        allowed = [o for o in batch if o.subject_id in permitted]
        built = {
            r.lead_id: r
            for r in features.lead_records(
                connection,
                {o.subject_id: o.decided_at for o in allowed},
                outcomes={o.subject_id: o.label for o in allowed},
                model=model,
            )
        }
        for item in batch:
            yield built.get(item.subject_id) or LeadRecord(item.subject_id, {}, {}, None)


def without_rare_indicators(
    records: Iterable[LeadRecord], min_count: int = DEFAULT_MIN_CATEGORY_COUNT
) -> list[LeadRecord]:
    """The records with the per-answer indicators of several-answer fields
    (``field:NAME=VALUE``) that fewer than ``min_count`` leads share removed, as the
    encoder does for categories: an answer that names one lead is no feature."""
    kept = list(records)
    counts = Counter(
        name for r in kept if r.outcome is not None for name in r.numeric if "=" in name
    )
    rare = {name for name, n in counts.items() if n < min_count}
    if not rare:
        return kept
    return [
        dataclasses.replace(r, numeric={k: v for k, v in r.numeric.items() if k not in rare})
        if r.outcome is not None and rare.intersection(r.numeric)
        else r
        for r in kept
    ]


def train_from_database(
    database: Database,
    *,
    seed: int = 0,
    held_out_fraction: float = DEFAULT_HELD_OUT,
    min_per_class: int = MIN_PER_CLASS,
    now: datetime | None = None,
) -> TrainingReport:
    """Train on the consented leads' outcomes, judge the model against the rule score
    on the held-out ones, store it and publish it if it is better.

    Raises :class:`scoring.predictive.InsufficientData` (nothing stored) when either
    side of the split lacks won or lost leads."""
    now = now or utcnow()
    with database.read() as session:
        connection = session.connection()
        active = require_model(connection)
        purpose = active.model.purpose
        ids = [o.subject_id for o in _outcomes_recorded(connection)]
        permitted = consented(connection, ids, purpose)
        trained = train(
            without_rare_indicators(training_records(connection, active.model, permitted)),
            purpose=purpose,
            permitted=permitted.__contains__,
            seed=seed,
            held_out_fraction=held_out_fraction,
            trained_at=now,
        )
    decision = publication(trained.card, min_per_class=min_per_class)
    definition = orjson.dumps(trained.as_json(), option=orjson.OPT_SORT_KEYS)
    with database.write() as session:
        model_id = session.execute(
            insert(_models)
            .values(
                created_at=now,
                scoring_model_id=active.id,
                purpose=purpose,
                sha256=hashlib.sha256(definition).hexdigest(),
                definition=definition.decode(),
                published=decision.publish,
                decision=decision.reason,
            )
            .returning(_models.c.id)
        ).scalar_one()
    return TrainingReport(model_id, active.id, trained, decision)


def format_report(report: TrainingReport) -> list[str]:
    """What ``zeroparty model train`` prints."""
    card = report.model.card
    lines = [
        f"trained on {card.train_rows + card.held_out_rows:,} leads with outcomes "
        f"({card.train_rows:,} training, {card.held_out_rows:,} held out, "
        f"{card.won_rate:.0%} won), live consent for {card.purpose!r} now; "
        f"excluded: {card.excluded_without_consent:,} without that consent",
        f"held-out AUC {card.auc:.3f}, rule score AUC {card.rule_auc:.3f} on the same leads "
        f"(rule model version {report.scoring_model_id})",
        f"calibration: Brier score {card.brier:.3f}, expected calibration error "
        f"{card.calibration_error:.3f}",
        "reliability by decile (predicted → observed):",
        *(
            f"  {b.leads:>6,} leads  {b.mean_predicted:6.1%} → {b.observed_rate:6.1%}"
            for b in card.reliability
        ),
        f"features: {len(card.features)}",
    ]
    if report.published:
        lines.append(f"model {report.model_id} published: {report.decision.reason}")
    else:
        lines.append(
            f"model {report.model_id} NOT published ({report.decision.reason}); "
            "the model in force, if any, stays"
        )
    return lines
