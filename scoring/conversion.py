"""The conversion probability shown beside the rule score, from the published model.

Shown only while a model is published, and only for a lead whose consent for the
purpose that model was trained under is live now (SPEC rule 3): otherwise nothing.
The probability comes with the features that moved it most
(:meth:`scoring.predictive.TrainedModel.explain`), from the lead's kept answers and
behaviour up to now (:mod:`scoring.features`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Connection

from scoring import consent, features
from scoring.models import PredictiveModelVersion
from scoring.predictive import (
    FeatureEncoder,
    ModelCard,
    ReliabilityBin,
    TrainedModel,
)
from zeroparty.db import utcnow

TOP_FEATURES = 5
_PARSED: dict[str, TrainedModel] = {}


@dataclass(frozen=True, slots=True)
class PublishedModel:
    id: int
    purpose: str
    model: TrainedModel


@dataclass(frozen=True, slots=True)
class Prediction:
    probability: float
    model_id: int
    top: tuple[tuple[str, float], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "probability": round(self.probability, 4),
            "model_version": self.model_id,
            "top_features": [
                {"feature": name, "contribution": round(value, 4)} for name, value in self.top
            ],
        }


def model_from_json(raw: str | bytes) -> TrainedModel:
    """A :class:`TrainedModel` back from :meth:`TrainedModel.as_json`."""
    data = orjson.loads(raw)
    card = data["card"]
    held = card["held_out"]
    return TrainedModel(
        FeatureEncoder(
            tuple(data["numeric"]),
            tuple(float(v) for v in data["means"]),
            tuple(float(v) for v in data["scales"]),
            tuple((name, value) for name, value in data["categories"]),
        ),
        tuple(float(w) for w in data["weights"]),
        float(data["intercept"]),
        ModelCard(
            trained_at=datetime.fromisoformat(card["trained_at"]),
            purpose=card["consent_purpose"],
            leads_seen=card["leads_seen"],
            excluded_without_consent=card["excluded_without_consent"],
            excluded_without_outcome=card["excluded_without_outcome"],
            train_rows=card["train_rows"],
            held_out_rows=card["held_out_rows"],
            held_out_won=card["held_out_won"],
            won_rate=card["won_rate"],
            features=tuple(card["features"]),
            l2=card["l2"],
            seed=card["seed"],
            auc=held["auc"],
            rule_auc=held["rule_score_auc"],
            brier=held["brier"],
            calibration_error=held["expected_calibration_error"],
            reliability=tuple(
                ReliabilityBin(b["leads"], b["mean_predicted"], b["observed"])
                for b in held["reliability_by_decile"]
            ),
            note=card["note"],
        ),
    )


def published_model(connection: Connection) -> PublishedModel | None:
    """The model in force: the latest published training (parsed once per process)."""
    row = connection.execute(
        select(
            PredictiveModelVersion.id, PredictiveModelVersion.purpose, PredictiveModelVersion.sha256
        )
        .where(PredictiveModelVersion.published.is_(True))
        .order_by(PredictiveModelVersion.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    model = _PARSED.get(row.sha256)
    if model is None:
        definition = connection.execute(
            select(PredictiveModelVersion.definition).where(PredictiveModelVersion.id == row.id)
        ).scalar_one()
        model = _PARSED[row.sha256] = model_from_json(definition)
    return PublishedModel(row.id, row.purpose, model)


def predict(
    connection: Connection, subject_ids: Collection[str], *, now: datetime | None = None
) -> dict[str, Prediction]:
    """Predictions for those of ``subject_ids`` that may have one (none: no entry)."""
    published = published_model(connection)
    if published is None or not subject_ids:
        return {}
    states = consent.gate_states(connection, list(subject_ids), published.purpose)
    live = {sid for sid, state in states.items() if state.permitted}
    moment = now or utcnow()
    records = features.lead_records(connection, dict.fromkeys(live, moment))
    result: dict[str, Prediction] = {}
    for record in records:
        explanation = published.model.explain(record, top=TOP_FEATURES)
        result[record.lead_id] = Prediction(explanation.probability, published.id, explanation.top)
    return result
