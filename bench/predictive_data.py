"""Synthetic leads with a known signal, for the predictive score's tests and benchmark.

Each lead gets fit attributes (``company_size``, ``job_level``, ``industry``), a quiz
answer (``goal``) and behaviour counts (``pricing_page_views``, ``webinars_attended``,
``case_studies_downloaded``, ``emails_opened``, each Poisson). Whether it was won is
drawn from a logistic model whose true log-odds are, with nothing else hidden:

    logit = -2.2 + SIZE[company_size] + LEVEL[job_level] + GOAL[goal]
            + 0.30 · pricing_page_views + 0.40 · webinars_attended
            + 0.25 · case_studies_downloaded + 0.05 · emails_opened

``industry`` has no effect at all (a feature the model should learn to ignore). The
best possible AUC is that of the true logit; :func:`oracle_auc` computes it.

Each lead also gets the score the demo site's rules would give it (``rule_score``):
+20 for a company of 51 or more, +15 for a decision maker (C-level, VP, director),
+20 for any pricing-page view, +15 for any webinar, +5 for three or more emails opened.
The rules see the same signal coarsely (thresholds, not amounts; no quiz intent), so a
model that learns the signal should rank leads better than they do.

Consent: a share of the leads (``consent_rate``) has a live consent for profiling; the
others are listed apart, so a test can check that training never touches them.
Everything is drawn from one seeded generator: the same seed gives the same leads.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from scoring.predictive import LeadRecord, rank_auc

SIZE = {"1-10": -0.6, "11-50": -0.2, "51-200": 0.3, "201-1000": 0.7, "1001+": 0.9}
LEVEL = {
    "C-level": 0.8,
    "VP": 0.7,
    "Director": 0.5,
    "Manager": 0.1,
    "Individual": -0.3,
    "Student": -1.2,
}
GOAL = {"replace-bi": 0.9, "evaluate": 0.3, "browsing": -0.8}
INDUSTRIES = ("retail", "health", "finance", "manufacturing", "public", "media")
RATES = {
    "pricing_page_views": 0.8,
    "webinars_attended": 0.4,
    "case_studies_downloaded": 0.6,
    "emails_opened": 2.5,
}
EFFECTS = {
    "pricing_page_views": 0.30,
    "webinars_attended": 0.40,
    "case_studies_downloaded": 0.25,
    "emails_opened": 0.05,
}
INTERCEPT = -2.2
DECISION_MAKERS = frozenset({"C-level", "VP", "Director"})


@dataclass(frozen=True, slots=True)
class SyntheticLeads:
    records: list[LeadRecord]
    consented: frozenset[str]
    true_logits: dict[str, float]

    def permitted(self, lead_id: str) -> bool:
        return lead_id in self.consented


def _poisson(rng: random.Random, rate: float) -> int:
    # Knuth's method: exact, and fine for the small rates used here.
    limit, count, product = math.exp(-rate), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def rule_score(size: str, level: str, counts: dict[str, float]) -> float:
    score = 20.0 if size in ("51-200", "201-1000", "1001+") else 0.0
    score += 15.0 if level in DECISION_MAKERS else 0.0
    score += 20.0 if counts["pricing_page_views"] > 0 else 0.0
    score += 15.0 if counts["webinars_attended"] > 0 else 0.0
    score += 5.0 if counts["emails_opened"] >= 3 else 0.0
    return score


def generate(
    leads: int, seed: int = 7, *, consent_rate: float = 1.0, decided_rate: float = 1.0
) -> SyntheticLeads:
    """``leads`` synthetic leads; ``decided_rate`` of them have an outcome."""
    rng = random.Random(seed)
    records: list[LeadRecord] = []
    consented: set[str] = set()
    true_logits: dict[str, float] = {}
    for i in range(leads):
        lead_id = f"lead-{seed}-{i:07d}"
        size = rng.choice(tuple(SIZE))
        level = rng.choice(tuple(LEVEL))
        goal = rng.choice(tuple(GOAL))
        counts = {name: float(_poisson(rng, rate)) for name, rate in RATES.items()}
        logit = INTERCEPT + SIZE[size] + LEVEL[level] + GOAL[goal]
        logit += sum(EFFECTS[name] * value for name, value in counts.items())
        won = int(rng.random() < 1.0 / (1.0 + math.exp(-logit)))
        decided = rng.random() < decided_rate
        industry = rng.choice(INDUSTRIES)
        categorical = {"company_size": size, "job_level": level, "goal": goal, "industry": industry}
        outcome = won if decided else None
        records.append(
            LeadRecord(lead_id, counts, categorical, outcome, rule_score(size, level, counts))
        )
        true_logits[lead_id] = logit
        if rng.random() < consent_rate:
            consented.add(lead_id)
    return SyntheticLeads(records, frozenset(consented), true_logits)


def oracle_auc(data: SyntheticLeads) -> float:
    """The AUC of the true log-odds over the consented, decided leads: the ceiling."""
    used = [r for r in data.records if r.lead_id in data.consented and r.outcome is not None]
    return rank_auc(
        [data.true_logits[r.lead_id] for r in used], [int(r.outcome or 0) for r in used]
    )
