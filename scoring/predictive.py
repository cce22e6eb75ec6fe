"""The predictive score's core: a small, explainable model of which leads convert.

Pure: no database, no clock unless given one. Input is one :class:`LeadRecord` per lead
(numeric features such as behaviour counts, categorical ones such as fit attributes and
quiz answers, the recorded outcome, won 1 / lost 0, and the rule score the lead had);
output is a :class:`TrainedModel` (L2-regularised logistic regression fitted by Newton's
method, categorical values one-hot encoded, numeric ones standardised) with its
:class:`ModelCard`: when, on how many leads, which features, how good on held-out leads
(rank AUC with ties, Brier score, a reliability table by decile), beside the rule
score's AUC on the same held-out leads, and the consent purpose the training relied on.

Consent (SPEC rule 3, issue #9): :func:`train` asks ``permitted(lead_id)`` first and
reads nothing else of a record it answers ``False`` for, so a lead who withdrew (or
never consented) is not in the next training at all; the card counts them as excluded.
:func:`publication` refuses a model that does not rank held-out leads better than the
rule score does.

The split is by a seeded hash of the lead id, so a lead stays on its side of the split
as data grows, and the same records and seed always give the same model.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_L2 = 1e-3
DEFAULT_HELD_OUT = 0.25
DEFAULT_MIN_CATEGORY_COUNT = 5
MIN_PER_CLASS = 10  # held-out wins and losses needed for an AUC worth comparing
EXCLUSION_NOTE = (
    "Only leads with live consent for the purpose above at training time were used; "
    "leads who withdrew or never consented are excluded from every training."
)


class InsufficientData(ValueError):
    """Too few consented leads with outcomes (or only one kind of outcome) to train."""


@dataclass(frozen=True, slots=True)
class LeadRecord:
    """What the model may know about one lead, and how it turned out."""

    lead_id: str
    numeric: Mapping[str, float]
    categorical: Mapping[str, str]
    outcome: int | None  # 1 won, 0 lost, None not decided yet (not trained on)
    rule_score: float = 0.0


# --- encoding ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeatureEncoder:
    """Numeric features standardised (missing counts as 0 before scaling); categorical
    values one-hot, for values seen at least ``min_count`` times in training (others,
    and values never seen, encode as all zeros: the reference)."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    categories: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return self.numeric + tuple(f"{name}={value}" for name, value in self.categories)

    @classmethod
    def fit(cls, records: Sequence[LeadRecord], min_count: int) -> FeatureEncoder:
        numeric = tuple(sorted({name for r in records for name in r.numeric}))
        raw = np.array(
            [[float(r.numeric.get(name, 0.0)) for name in numeric] for r in records],
            dtype=np.float64,
        ).reshape(len(records), len(numeric))
        means = raw.mean(axis=0) if len(records) else np.zeros(len(numeric))
        scales = raw.std(axis=0) if len(records) else np.ones(len(numeric))
        scales = np.where(scales > 0, scales, 1.0)
        counts = Counter((name, value) for r in records for name, value in r.categorical.items())
        categories = tuple(sorted(pair for pair, n in counts.items() if n >= min_count))
        return cls(numeric, tuple(means.tolist()), tuple(scales.tolist()), categories)

    def encode(self, records: Sequence[LeadRecord]) -> FloatArray:
        # A plain loop: measured faster than building index arrays for numpy here.
        matrix = np.zeros((len(records), len(self.numeric) + len(self.categories)))
        column = {pair: len(self.numeric) + i for i, pair in enumerate(self.categories)}
        for row, record in enumerate(records):
            for i, name in enumerate(self.numeric):
                value = float(record.numeric.get(name, 0.0))
                matrix[row, i] = (value - self.means[i]) / self.scales[i]
            for pair in record.categorical.items():
                index = column.get(pair)
                if index is not None:
                    matrix[row, index] = 1.0
        return matrix


# --- the regression ---------------------------------------------------------------------------


def _sigmoid(z: FloatArray) -> FloatArray:
    result: FloatArray = np.exp(-np.logaddexp(0.0, -z))  # no overflow for large |z|
    return result


def fit_logistic(
    x: FloatArray, y: FloatArray, l2: float = DEFAULT_L2, *, max_iter: int = 100, tol: float = 1e-10
) -> tuple[FloatArray, float]:
    """Weights and intercept minimising mean log-loss + ``l2``/2 · ‖weights‖².

    Newton's method (the objective is strictly convex for ``l2`` > 0, so it converges
    to the one optimum, in a few iterations for the few dozen features a lead has);
    the intercept is not penalised."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    penalty = np.full(d + 1, l2)
    penalty[d] = 0.0
    beta = np.zeros(d + 1)
    for _ in range(max_iter):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (p - y) / n + penalty * beta
        hessian = (design.T * (p * (1.0 - p))) @ design / n + np.diag(penalty)
        hessian[d, d] += 1e-12  # a constant column alone is still invertible
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return beta[:d].copy(), float(beta[d])


# --- metrics ----------------------------------------------------------------------------------


def rank_auc(scores: Sequence[float] | FloatArray, labels: Sequence[int] | FloatArray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the chance that a random won lead scores
    above a random lost one, ties counting one half (average ranks)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    positives = float(y.sum())
    negatives = float(len(y) - positives)
    if positives == 0 or negatives == 0:
        raise InsufficientData("AUC needs both won and lost leads")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    average_rank = upper - (counts - 1) / 2.0  # 1-based rank, ties averaged
    ranks = average_rank[inverse]
    u = float(ranks[y == 1].sum()) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    leads: int
    mean_predicted: float
    observed_rate: float


def reliability_table(
    probabilities: FloatArray, labels: FloatArray, bins: int = 10
) -> tuple[ReliabilityBin, ...]:
    """Held-out leads in ``bins`` groups of (nearly) equal size by predicted
    probability (deciles), each with its mean prediction and observed win rate."""
    order = np.argsort(probabilities, kind="stable")
    table = []
    for part in np.array_split(order, min(bins, len(order))):
        if len(part):
            table.append(
                ReliabilityBin(
                    len(part),
                    float(probabilities[part].mean()),
                    float(labels[part].mean()),
                )
            )
    return tuple(table)


# --- model, card, explanation -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelCard:
    trained_at: datetime
    purpose: str
    leads_seen: int
    excluded_without_consent: int
    excluded_without_outcome: int
    train_rows: int
    held_out_rows: int
    held_out_won: int
    won_rate: float
    features: tuple[str, ...]
    l2: float
    seed: int
    auc: float
    rule_auc: float
    brier: float
    calibration_error: float  # expected calibration error over the reliability table
    reliability: tuple[ReliabilityBin, ...]
    note: str = EXCLUSION_NOTE

    def as_json(self) -> dict[str, Any]:
        return {
            "trained_at": self.trained_at.isoformat(),
            "consent_purpose": self.purpose,
            "leads_seen": self.leads_seen,
            "excluded_without_consent": self.excluded_without_consent,
            "excluded_without_outcome": self.excluded_without_outcome,
            "train_rows": self.train_rows,
            "held_out_rows": self.held_out_rows,
            "held_out_won": self.held_out_won,
            "won_rate": self.won_rate,
            "features": list(self.features),
            "l2": self.l2,
            "seed": self.seed,
            "held_out": {
                "auc": self.auc,
                "rule_score_auc": self.rule_auc,
                "brier": self.brier,
                "expected_calibration_error": self.calibration_error,
                "reliability_by_decile": [
                    {
                        "leads": b.leads,
                        "mean_predicted": b.mean_predicted,
                        "observed": b.observed_rate,
                    }
                    for b in self.reliability
                ],
            },
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """``logit = intercept + sum(contribution for every feature)``; ``top`` holds the
    largest contributions by size (coefficient times encoded value), strongest first.

    A numeric feature's contribution is measured from the training leads' average (it
    is standardised), a categorical one's from the reference of its field (a value
    not one-hot encoded): "+0.57 job_level=VP" reads "being a VP adds 0.57 to the
    log-odds", "-0.17 webinars_attended" "fewer webinars than the average lead"."""

    probability: float
    logit: float
    intercept: float
    contributions: tuple[tuple[str, float], ...]
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class TrainedModel:
    encoder: FeatureEncoder
    weights: tuple[float, ...]
    intercept: float
    card: ModelCard

    def logits(self, records: Sequence[LeadRecord]) -> FloatArray:
        result: FloatArray = (
            self.encoder.encode(records) @ np.asarray(self.weights) + self.intercept
        )
        return result

    def probabilities(self, records: Sequence[LeadRecord]) -> FloatArray:
        return _sigmoid(self.logits(records))

    def explain(self, record: LeadRecord, top: int = 5) -> Explanation:
        encoded = self.encoder.encode([record])[0]
        parts = encoded * np.asarray(self.weights)
        logit = float(parts.sum()) + self.intercept
        contributions = tuple(zip(self.encoder.names, parts.tolist(), strict=True))
        strongest = sorted((c for c in contributions if c[1] != 0.0), key=lambda c: -abs(c[1]))
        probability = float(_sigmoid(np.array([logit]))[0])
        return Explanation(
            probability, logit, self.intercept, contributions, tuple(strongest[:top])
        )

    def as_json(self) -> dict[str, Any]:
        """Everything needed to score with this model elsewhere, and its card."""
        return {
            "numeric": list(self.encoder.numeric),
            "means": list(self.encoder.means),
            "scales": list(self.encoder.scales),
            "categories": [list(pair) for pair in self.encoder.categories],
            "weights": list(self.weights),
            "intercept": self.intercept,
            "card": self.card.as_json(),
        }


# --- training ---------------------------------------------------------------------------------


def held_out(lead_id: str, seed: int, fraction: float) -> bool:
    """Whether ``lead_id`` is on the held-out side: a seeded hash, stable as data grows."""
    digest = hashlib.blake2b(f"{seed}:{lead_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


@dataclass(slots=True)
class _Selection:
    leads: list[LeadRecord] = field(default_factory=list)
    seen: int = 0
    without_consent: int = 0
    without_outcome: int = 0


def _consented(records: Iterable[LeadRecord], permitted: Callable[[str], bool]) -> _Selection:
    """The records to learn from. Nothing of a record but its ``lead_id`` is read before
    ``permitted`` says yes (the property tests hand in records that fail when read)."""
    selection = _Selection()
    for record in records:
        selection.seen += 1
        if not permitted(record.lead_id):
            selection.without_consent += 1
            continue
        if record.outcome is None:
            selection.without_outcome += 1
            continue
        selection.leads.append(record)
    return selection


def train(
    records: Iterable[LeadRecord],
    *,
    purpose: str,
    permitted: Callable[[str], bool],
    seed: int = 0,
    held_out_fraction: float = DEFAULT_HELD_OUT,
    l2: float = DEFAULT_L2,
    min_category_count: int = DEFAULT_MIN_CATEGORY_COUNT,
    trained_at: datetime | None = None,
) -> TrainedModel:
    """Fit on the consented leads with outcomes; evaluate on the held-out ones.

    ``permitted(lead_id)`` must say whether the lead has live consent for ``purpose``
    now (the caller asks the ledger's kept state); a record it refuses is not read.
    Raises :class:`InsufficientData` when either side of the split lacks won or lost
    leads."""
    selection = _consented(records, permitted)
    train_set: list[LeadRecord] = []
    test_set: list[LeadRecord] = []
    for record in selection.leads:
        (test_set if held_out(record.lead_id, seed, held_out_fraction) else train_set).append(
            record
        )
    for name, part in (("training", train_set), ("held-out", test_set)):
        outcomes = {r.outcome for r in part}
        if outcomes != {0, 1}:
            raise InsufficientData(f"the {name} leads need both won and lost outcomes")
    encoder = FeatureEncoder.fit(train_set, min_category_count)
    y_train = np.array([r.outcome for r in train_set], dtype=np.float64)
    weights, intercept = fit_logistic(encoder.encode(train_set), y_train, l2)
    y_test = np.array([r.outcome for r in test_set], dtype=np.float64)
    logits = encoder.encode(test_set) @ weights + intercept
    probabilities = _sigmoid(logits)
    table = reliability_table(probabilities, y_test)
    calibration_error = sum(b.leads * abs(b.mean_predicted - b.observed_rate) for b in table)
    card = ModelCard(
        trained_at=trained_at or datetime.now(UTC),
        purpose=purpose,
        leads_seen=selection.seen,
        excluded_without_consent=selection.without_consent,
        excluded_without_outcome=selection.without_outcome,
        train_rows=len(train_set),
        held_out_rows=len(test_set),
        held_out_won=int(y_test.sum()),
        won_rate=float(np.concatenate([y_train, y_test]).mean()),
        features=encoder.names,
        l2=l2,
        seed=seed,
        auc=rank_auc(logits, y_test),
        rule_auc=rank_auc([r.rule_score for r in test_set], y_test),
        brier=float(np.mean((probabilities - y_test) ** 2)),
        calibration_error=calibration_error / len(test_set),
        reliability=table,
    )
    return TrainedModel(encoder, tuple(weights.tolist()), intercept, card)


@dataclass(frozen=True, slots=True)
class Publication:
    publish: bool
    reason: str


def publication(
    card: ModelCard, *, min_per_class: int = MIN_PER_CLASS, margin: float = 0.0
) -> Publication:
    """Publish only a model that ranks held-out leads better than the rule score does
    (AUC above the rules' by more than ``margin``), judged on enough held-out wins and
    losses to mean something."""
    wins = card.held_out_won
    losses = card.held_out_rows - wins
    if min(wins, losses) < min_per_class:
        return Publication(
            False,
            f"too few held-out outcomes to judge ({wins} won, {losses} lost; "
            f"at least {min_per_class} of each needed)",
        )
    if card.auc <= card.rule_auc + margin:
        return Publication(
            False,
            f"refused: held-out AUC {card.auc:.3f} is not better than the rule "
            f"score's {card.rule_auc:.3f} on the same leads",
        )
    return Publication(
        True, f"held-out AUC {card.auc:.3f} beats the rule score's {card.rule_auc:.3f}"
    )
