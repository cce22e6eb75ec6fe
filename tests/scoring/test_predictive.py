"""The predictive score's core (``scoring/predictive.py``): pure, no database.

Learns a known signal, refuses a model no better than the rules, is deterministic for a
seed, explains every score exactly, and never reads a lead without live consent.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.predictive_data import SyntheticLeads, generate, oracle_auc
from scoring.predictive import (
    EXCLUSION_NOTE,
    InsufficientData,
    LeadRecord,
    TrainedModel,
    publication,
    rank_auc,
    train,
)

WHEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@cache
def leads(count: int = 4000, seed: int = 3) -> SyntheticLeads:
    return generate(count, seed, consent_rate=0.9, decided_rate=0.9)


@cache
def model(seed: int = 0) -> TrainedModel:
    data = leads()
    return train(
        data.records, purpose="profiling", permitted=data.permitted, seed=seed, trained_at=WHEN
    )


def test_a_known_signal_is_learned_and_beats_the_rules() -> None:
    card = model().card
    assert card.auc > 0.72
    assert card.auc == pytest.approx(oracle_auc(leads()), abs=0.04)
    assert card.auc > card.rule_auc + 0.03
    decision = publication(card)
    assert decision.publish, decision.reason
    weights = dict(zip(model().encoder.names, model().weights, strict=True))
    assert weights["goal=replace-bi"] > 0.4 > -0.4 > weights["goal=browsing"]
    assert weights["job_level=Student"] < -0.6
    assert weights["pricing_page_views"] > 0.1
    assert all(abs(w) < 0.25 for n, w in weights.items() if n.startswith("industry="))


def test_calibration_on_held_out_leads() -> None:
    card = model().card
    base_rate_brier = card.won_rate * (1 - card.won_rate)
    assert card.brier < base_rate_brier
    assert card.calibration_error < 0.06
    assert len(card.reliability) == 10
    assert sum(b.leads for b in card.reliability) == card.held_out_rows
    predicted = [b.mean_predicted for b in card.reliability]
    assert predicted == sorted(predicted)


def test_a_model_no_better_than_the_rules_is_refused() -> None:
    data = leads()
    # Rules that know the true log-odds: no model can rank better on the same leads.
    oracle_rules = [
        dataclasses.replace(r, rule_score=data.true_logits[r.lead_id]) for r in data.records
    ]
    trained = train(oracle_rules, purpose="profiling", permitted=data.permitted, trained_at=WHEN)
    assert trained.card.auc <= trained.card.rule_auc
    decision = publication(trained.card)
    assert not decision.publish
    assert "not better than the rule score" in decision.reason


def test_too_few_held_out_outcomes_are_refused() -> None:
    data = generate(120, 5)
    trained = train(data.records, purpose="profiling", permitted=data.permitted, trained_at=WHEN)
    decision = publication(trained.card, min_per_class=40)
    assert not decision.publish
    assert "too few held-out outcomes" in decision.reason


def test_one_kind_of_outcome_cannot_be_trained_on() -> None:
    records = [dataclasses.replace(r, outcome=1) for r in generate(200, 1).records]
    with pytest.raises(InsufficientData):
        train(records, purpose="profiling", permitted=lambda _id: True)


def test_the_same_seed_gives_the_same_model_and_another_seed_another_split() -> None:
    data = leads()
    again = train(data.records, purpose="profiling", permitted=data.permitted, trained_at=WHEN)
    assert again.weights == model().weights
    assert again.intercept == model().intercept
    assert again.card == model().card
    shuffled = list(data.records)
    random.Random(9).shuffle(shuffled)
    reordered = train(shuffled, purpose="profiling", permitted=data.permitted, trained_at=WHEN)
    assert reordered.card.held_out_rows == model().card.held_out_rows  # split by lead id
    assert reordered.weights == pytest.approx(model().weights, abs=1e-9)
    other = model(seed=1)
    assert (
        other.card.held_out_rows != model().card.held_out_rows or other.weights != model().weights
    )


def test_explanations_sum_to_the_logit() -> None:
    trained = model()
    sample = leads().records[:200]
    logits = trained.logits(sample)
    probabilities = trained.probabilities(sample)
    for record, logit, probability in zip(sample, logits, probabilities, strict=True):
        explanation = trained.explain(record)
        total = explanation.intercept + sum(value for _, value in explanation.contributions)
        assert total == pytest.approx(explanation.logit, abs=1e-9)
        assert explanation.logit == pytest.approx(float(logit), abs=1e-9)
        assert explanation.probability == pytest.approx(float(probability), abs=1e-12)
        sizes = [abs(value) for _, value in explanation.top]
        assert sizes == sorted(sizes, reverse=True)
        assert len(explanation.top) == 5


def test_unseen_values_and_missing_features_score_as_the_reference() -> None:
    trained = model()
    blank = LeadRecord("new", {}, {"company_size": "10000+", "colour": "blue"}, None)
    explanation = trained.explain(blank)
    assert all(not name.startswith(("company_size=", "colour")) for name, _ in explanation.top)
    assert 0.0 < explanation.probability < 1.0


def test_the_model_card_names_purpose_data_and_metrics() -> None:
    card = model().card.as_json()
    assert card["consent_purpose"] == "profiling"
    assert card["trained_at"] == WHEN.isoformat()
    data = leads()
    assert card["leads_seen"] == len(data.records)
    assert card["excluded_without_consent"] == len(data.records) - len(data.consented)
    assert card["train_rows"] + card["held_out_rows"] + card["excluded_without_outcome"] + card[
        "excluded_without_consent"
    ] == len(data.records)
    assert "pricing_page_views" in card["features"]
    assert set(card["held_out"]) >= {"auc", "rule_score_auc", "brier", "reliability_by_decile"}
    assert card["note"] == EXCLUSION_NOTE
    assert "withdrew" in card["note"]
    exported = model().as_json()
    assert exported["weights"] == list(model().weights)


# --- consent ------------------------------------------------------------------------------------


class Unreadable:
    """A lead without consent: anything but its id fails the test when read."""

    def __init__(self, lead_id: str) -> None:
        self.lead_id = lead_id

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"training read {name!r} of a lead without consent")


@settings(max_examples=30, deadline=None)
@given(withheld=st.sets(st.integers(0, 599), max_size=300), seed=st.integers(0, 3))
def test_training_never_reads_a_lead_without_consent(withheld: set[int], seed: int) -> None:
    base = generate(600, 11).records
    mixed = [
        cast(LeadRecord, Unreadable(r.lead_id)) if i in withheld else r for i, r in enumerate(base)
    ]
    consented = {r.lead_id for i, r in enumerate(base) if i not in withheld}
    kept = [r for i, r in enumerate(base) if i not in withheld]
    try:
        from_mixed = train(
            mixed, purpose="profiling", permitted=consented.__contains__, seed=seed, trained_at=WHEN
        )
    except InsufficientData:
        with pytest.raises(InsufficientData):
            train(kept, purpose="profiling", permitted=lambda _id: True, seed=seed)
        return
    from_kept = train(
        kept, purpose="profiling", permitted=lambda _id: True, seed=seed, trained_at=WHEN
    )
    assert from_mixed.weights == from_kept.weights
    assert from_mixed.card.excluded_without_consent == len(withheld)
    assert (
        from_mixed.card.train_rows + from_mixed.card.held_out_rows
        == from_kept.card.train_rows + from_kept.card.held_out_rows
    )


def test_a_withdrawal_removes_the_lead_from_the_next_training() -> None:
    data = generate(800, 13)
    first = train(data.records, purpose="profiling", permitted=data.permitted, trained_at=WHEN)
    withdrawn = {r.lead_id for r in data.records[:50]}
    still = data.consented - withdrawn
    records = [
        cast(LeadRecord, Unreadable(r.lead_id)) if r.lead_id in withdrawn else r
        for r in data.records
    ]
    second = train(records, purpose="profiling", permitted=still.__contains__, trained_at=WHEN)
    assert second.card.excluded_without_consent == first.card.excluded_without_consent + 50
    assert second.weights != first.weights


# --- the AUC ------------------------------------------------------------------------------------


def pairwise_auc(scores: list[float], labels: list[int]) -> float:
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for (p, lp), (n, ln) in itertools.product(zip(scores, labels, strict=True), repeat=2)
        if lp == 1 and ln == 0
    ]
    return sum(pairs) / len(pairs)


@given(
    st.lists(
        st.tuples(st.integers(-3, 3).map(float), st.integers(0, 1)), min_size=2, max_size=40
    ).filter(lambda xs: len({y for _, y in xs}) == 2)
)
def test_rank_auc_is_the_pairwise_probability_with_ties_as_half(
    pairs: list[tuple[float, int]],
) -> None:
    scores, labels = [s for s, _ in pairs], [y for _, y in pairs]
    assert rank_auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels), abs=1e-12)


def test_rank_auc_edges() -> None:
    assert rank_auc([1, 1, 2, 2], [0, 1, 0, 1]) == 0.5
    assert rank_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert rank_auc(np.zeros(6), [0, 1, 0, 1, 0, 1]) == 0.5
    with pytest.raises(InsufficientData):
        rank_auc([0.1, 0.2], [1, 1])
    assert not math.isnan(rank_auc([1e300, -1e300], [1, 0]))
