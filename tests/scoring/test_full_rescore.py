"""``zeroparty score`` (``scoring.rescore.rescore_all``, through
``scoring.services.rescore_in_full``) writes exactly what rescoring each lead writes
(``scoring.services.rescore_leads``): the same points in the same order, scores, stages,
moves and hand-offs, and reports the same figures; over random answers, BANT values and
events, a first pass and a later one."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from scoring import services
from scoring.rescore import rescore_all
from tests.scoring.conftest import grant
from zeroparty.db import Database, utcnow

TYPES = (
    "pricing_page_viewed",
    "case_study_downloaded",
    "webinar_attended",
    "email_opened",
    "feature_used",
    "usage_limit_reached",
    "email_clicked",
)
FIELDS = (
    ("company_size", ("51-200", "11-50", "1001+")),
    ("job_title", ("VP Sales", "Engineer", "Head of IT")),
    ("industry", ("software", "farming")),
)
SNAPSHOT = {
    "points": "SELECT subject_id, rule, kind, points, source, occurred_at, consent_seq "
    "FROM scoring_points ORDER BY subject_id, id",
    "leads": "SELECT subject_id, stage, score, model_id, scored_at, stage_since, "
    "recycled_score, lead_types FROM scoring_leads ORDER BY subject_id",
    "moves": "SELECT subject_id, from_stage, to_stage, actor, reason, score, created_at "
    "FROM scoring_stage_changes ORDER BY subject_id, id",
    "hand-offs": "SELECT subject_id, stage, created_at FROM scoring_webhooks "
    "ORDER BY subject_id, created_at",
}
WRITTEN = ("scoring_points", "scoring_stage_changes", "scoring_webhooks", "scoring_leads")
# The demo model with decay, a rule counting several events and lead types (earned by
# score and by a rule that scored).
VARIED = (
    (
        'name = "webinar"\nevent = "webinar_attended"\npoints = 15\nwindow_days = 180\n',
        'name = "webinar"\nevent = "webinar_attended"\npoints = 15\nwindow_days = 180\n'
        "half_life_days = 30\n",
    ),
    (
        'name = "pricing-page"\nevent = "pricing_page_viewed"\npoints = 20\n',
        'name = "pricing-page"\nevent = "pricing_page_viewed"\npoints = 20\n'
        "max_count = 3\nhalf_life_days = 12.5\n",
    ),
    (
        '[[scoring.quiz]]\nname = "terabytes"',
        '[[scoring.lead_type]]\nname = "IQL"\nmin_score = 30\n\n'
        '[[scoring.lead_type]]\nname = "webinar-goer"\nrules = ["webinar"]\n\n'
        '[[scoring.quiz]]\nname = "terabytes"',
    ),
)


def _seed(database: Database, rng: random.Random) -> list[str]:
    """30 leads with a live profiling grant, and their answers, BANT values, events."""
    seqs = {grant(database, f"full{n:02d}@example.com"): n for n in range(30)}
    now = utcnow()
    with database.write() as session:
        ids = dict(
            session.execute(
                text(
                    "SELECT c.last_seq, c.subject_id FROM consent_state c "
                    "WHERE c.purpose_key = 'profiling' AND c.permitted"
                )
            ).all()
        )
        for seq, sid in ids.items():
            if seq not in seqs:
                continue
            instants = [now - timedelta(days=rng.uniform(0, 200)) for _ in range(3)]
            for n in range(rng.randint(0, 14)):
                session.execute(
                    text(
                        "INSERT INTO scoring_events (id, subject_id, type, occurred_at, "
                        "received_at, properties, consent_seq) "
                        "VALUES (:id, :sid, :type, :at, :at, '{}', :seq)"
                    ),
                    {
                        "id": f"{rng.choice('aAb_.')}{sid[:6]}-{n}",
                        "sid": sid,
                        "type": rng.choice(TYPES),
                        "at": rng.choice(instants)
                        if rng.random() < 0.3
                        else now - timedelta(days=rng.uniform(0, 200)),
                        "seq": seq,
                    },
                )
            for name, values in FIELDS:
                if rng.random() < 0.6:
                    session.execute(
                        text(
                            "INSERT INTO scoring_attributes (subject_id, kind, name, value, "
                            "purposes, source_ref, occurred_at, consent_seq) "
                            "VALUES (:sid, 'field', :name, :value, :purposes, 'form:contact', "
                            ":at, :seq)"
                        ),
                        {
                            "sid": sid,
                            "name": name,
                            "value": rng.choice(values),
                            # An answer collected for a purpose not permitted counts nothing.
                            "purposes": rng.choice(('["profiling"]', '["newsletter"]')),
                            "at": now - timedelta(days=rng.uniform(0, 50)),
                            "seq": seq,
                        },
                    )
            if rng.random() < 0.3:
                session.execute(
                    text(
                        "INSERT INTO scoring_qualification (subject_id, field, value, actor, "
                        "recorded_at, consent_seq) "
                        "VALUES (:sid, 'authority', 'decision_maker', 'sales', :at, :seq)"
                    ),
                    {"sid": sid, "at": now - timedelta(days=3), "seq": seq},
                )
    return sorted(ids.values())


def _snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    with database.read() as session:
        return {
            name: [tuple(row) for row in session.execute(text(sql))]
            for name, sql in SNAPSHOT.items()
        }


@pytest.mark.parametrize("model", ["demo", "varied"])
def test_full_rescore_writes_what_rescoring_each_lead_writes(
    database: Database, load_model: Callable[..., list[str]], model: str
) -> None:
    if model == "varied":
        assert any("version 2" in change for change in load_model(*VARIED))
    ids = _seed(database, random.Random(17))
    with database.read() as session:
        before = [tuple(r) for r in session.execute(text("SELECT * FROM scoring_leads"))]
        columns = list(session.execute(text("SELECT * FROM scoring_leads LIMIT 0")).keys())
    first = utcnow()
    later = first + timedelta(days=40)
    full = []
    for now in (first, later):
        report = rescore_all(database, now=now)
        full.append((report, _snapshot(database)))
    # The same leads from the same start, rescored one call per pass.
    with database.write() as session:
        for table in WRITTEN:
            session.execute(text(f"DELETE FROM {table}"))
        if before:
            session.execute(
                text(
                    f"INSERT INTO scoring_leads ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                ),
                [dict(zip(columns, row, strict=True)) for row in before],
            )
    for now, (report, written) in zip((first, later), full, strict=True):
        with database.write() as session:
            active = services.require_model(session)
            scored = services.rescore_leads(session, active, ids, now=now)
        assert _snapshot(database) == written
        assert report.leads == len(ids)
        assert report.points == sum(len(lead.points) for lead in scored.values())
        assert report.moved == sum(lead.moved for lead in scored.values())
    # The data exercises points, moves (demo) and lead types (varied).
    assert full[0][0].points > 0
    if model == "demo":
        assert full[0][0].moved > 0
    else:
        assert any(lead[-1] for lead in full[0][1]["leads"])
