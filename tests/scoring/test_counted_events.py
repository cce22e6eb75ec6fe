"""A full rescore counts events in one pass over a batch of leads
(``scoring.counted_events``): its points are exactly the engine's over every event of
each lead, on the database's own order of times and ids, over random models and events
(ties on time, ids that sort differently by locale, windows, minimum and maximum counts,
decay, rules sharing a type or a name)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, insert, select

from scoring import services
from scoring.counted_events import counted_events
from scoring.engine import EventFact, counted_points, score_lead
from scoring.models import LeadEvent, ScorePoint
from scoring.rules import BehaviourRule, ScoringModel
from scoring.stages import Stage
from zeroparty.db import Database

NOW = datetime(2026, 12, 5, 9, 30, 15, 123456, tzinfo=UTC)
TYPES = ("x", "y", "z", "unscored")
# The API's id alphabet: "." and "_" sort before/after letters by code point, not in a
# locale's collation; "a" and "a.1" share a prefix.
ID_PARTS = ("a", "A", "a.1", "a_1", "B-2", "b:3", "0", "Z", "z9")
_events = cast(Table, LeadEvent.__table__)
_points = cast(Table, ScorePoint.__table__)


def _model(rng: random.Random) -> ScoringModel:
    rules = tuple(
        BehaviourRule(
            name=rng.choice(("a", "b", "c", "d")),
            event=rng.choice(TYPES[:3]),
            points=rng.choice((5.0, 12.5, 7.333, 20.0)),
            min_count=rng.randint(1, 3),
            max_count=rng.randint(1, 4),
            window_days=rng.choice((None, 0, 1.5, 30, 90)),
            half_life_days=rng.choice((None, None, 7.0, 45.5)),
        )
        for _ in range(rng.randint(1, 5))
    )
    return ScoringModel("profiling", ((Stage.MQL, 50.0),), behaviour=rules)


def _events_of(rng: random.Random, round_: int, lead: int) -> list[EventFact]:
    # A few shared instants make ties on time, broken by id.
    instants = [NOW - timedelta(days=rng.uniform(-1, 120)) for _ in range(4)]
    return [
        EventFact(
            f"{rng.choice(ID_PARTS)}{round_}-{lead}-{n}{rng.choice(ID_PARTS)}",
            rng.choice(TYPES),
            rng.choice(instants)
            if rng.random() < 0.4
            else NOW - timedelta(days=rng.uniform(-1, 120)),
            rng.randint(1, 9),
        )
        for n in range(rng.randint(0, 12))
    ]


def test_counted_points_are_the_engines_over_every_event(database: Database) -> None:
    rng = random.Random(17)
    for round_ in range(25):
        model = _model(rng)
        leads = {f"r{round_}-lead{n:02d}": _events_of(rng, round_, n) for n in range(30)}
        rows = [
            {
                "id": e.event_id,
                "subject_id": sid,
                "type": e.type,
                "occurred_at": e.occurred_at,
                "received_at": NOW,
                "properties": "{}",
                "consent_seq": e.consent_seq,
            }
            for sid, events in leads.items()
            for e in events
        ]
        with database.write() as session:
            if rows:
                session.execute(insert(_events), rows)
            ids = sorted(leads)
            counted = counted_events(session, model, ids, NOW)
        for sid, events in leads.items():
            expected = score_lead(model, [], events, NOW)
            assert counted_points(model, counted.get(sid, ()), NOW) == expected, (round_, sid)


def test_leads_of_a_batch_outside_it_are_not_read(database: Database) -> None:
    rule = BehaviourRule("pricing", "x", 20, max_count=5)
    model = ScoringModel("profiling", ((Stage.MQL, 50.0),), behaviour=(rule,))
    with database.write() as session:
        session.execute(
            insert(_events),
            [
                {
                    "id": f"e-{sid}",
                    "subject_id": sid,
                    "type": "x",
                    "occurred_at": NOW,
                    "received_at": NOW,
                    "properties": "{}",
                    "consent_seq": 1,
                }
                for sid in ("a", "b", "c")
            ],
        )
        # "b" lies between the batch's first and last ids but is not in the batch.
        counted = counted_events(session, model, ["a", "c"], NOW)
    assert sorted(counted) == ["a", "c"]


def test_points_stored_many_at_once_read_back_as_given(database: Database) -> None:
    """Many rows (a full rescore's batch; COPY on PostgreSQL) and few (an INSERT)."""
    for count in (3, services._COPY_POINTS_FROM + 20):
        rows = [
            {
                "subject_id": f"lead-{count}-{n % 7}",
                "rule": "webinar",
                "kind": "behaviour",
                "points": round(20 * 0.5 ** (n / 13), 2),
                "source": f"event:e{n}\t\\N \\ \n",
                "occurred_at": NOW - timedelta(days=n, microseconds=n),
                "consent_seq": n,
            }
            for n in range(count)
        ]
        with database.write() as session:
            services._insert_points(session.connection(), rows)
        with database.read() as session:
            stored = session.execute(
                select(
                    _points.c.subject_id,
                    _points.c.rule,
                    _points.c.kind,
                    _points.c.points,
                    _points.c.source,
                    _points.c.occurred_at,
                    _points.c.consent_seq,
                )
                .where(_points.c.subject_id.like(f"lead-{count}-%"))
                .order_by(_points.c.id)
            ).all()
        assert [dict(r._mapping) for r in stored] == rows
