"""The hand-off SLA: the clock starts when a lead enters a stage, sales acknowledges,
leads about to breach and breached are listed, attainment is reported per week. Every
timing test passes its own clock (``now``) into the services: no sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from consent_ledger.subjects import find_subject_id
from scoring import sla
from scoring.models import ScoredLead
from scoring.personal import export_scoring
from tests.scoring.conftest import rows, withdraw
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database, utcnow

FIT = {"company_size": "51-200", "job_title": "Director of Sales"}
HOUR = timedelta(hours=1)


@pytest.fixture
def sql_lead(
    api: TestClient, database: Database, submit: Callable[..., Any]
) -> Callable[[str], tuple[str, datetime]]:
    """Moves a new lead to SQL through the API; returns its id and the clock's start."""

    def make(email: str) -> tuple[str, datetime]:
        submit(email, **FIT)
        moved = api.post("/api/leads/stage", json={"email": email, "stage": "SQL"})
        assert moved.status_code == 200, moved.text
        return _entered(database, email)

    return make


def _entered(database: Database, email: str) -> tuple[str, datetime]:
    with database.read() as session:
        subject_id = find_subject_id(session, email)
        assert subject_id is not None
        lead = session.get(ScoredLead, subject_id)
        assert lead is not None
        return subject_id, lead.stage_since


def _pending(
    database: Database, now: datetime, state: sla.SlaState | None = None
) -> list[sla.PendingHandoff]:
    with database.read() as session:
        return sla.pending(session, now=now, state=state, limit=100).handoffs


def _acks(database: Database) -> int:
    return len(rows(database, "SELECT id FROM scoring_handoff_acks"))


# SQL = "24h" in the demo: due soon from 18h (a quarter left), breached after 24h.
TIMING = [
    (timedelta(0), None),
    (17 * HOUR + timedelta(minutes=59), None),
    (18 * HOUR, sla.SlaState.DUE_SOON),
    (24 * HOUR, sla.SlaState.DUE_SOON),
    (24 * HOUR + timedelta(microseconds=1), sla.SlaState.BREACHED),
    (30 * 24 * HOUR, sla.SlaState.BREACHED),
]


@pytest.mark.parametrize(("elapsed", "expected"), TIMING)
def test_breach_timing_follows_the_stage_clock(
    database: Database,
    sql_lead: Callable[[str], tuple[str, datetime]],
    elapsed: timedelta,
    expected: sla.SlaState | None,
) -> None:
    subject_id, entered = sql_lead("ann@acme-corp.com")
    now = entered + elapsed
    [running] = _pending(database, now)
    assert running.subject_id == subject_id
    assert running.due_at == entered + 24 * HOUR
    assert running.state is expected
    for state in sla.SlaState:
        listed = [p.subject_id for p in _pending(database, now, state)]
        assert listed == ([subject_id] if state is expected else [])


def test_a_threshold_move_into_mql_starts_a_72h_clock(
    database: Database, submit: Callable[..., Any], events: Callable[..., Any]
) -> None:
    submit("ann@acme-corp.com", **FIT)
    assert _pending(database, utcnow()) == []  # a Lead: no SLA
    events("ann@acme-corp.com", "pricing_page_viewed", "webinar_attended")  # 70: MQL
    _, entered = _entered(database, "ann@acme-corp.com")
    [running] = _pending(database, entered + HOUR)
    assert (running.stage, running.due_at) == ("MQL", entered + 72 * HOUR)
    assert [p.subject_id for p in _pending(database, entered + 73 * HOUR, sla.SlaState.BREACHED)]


def test_an_acknowledgement_stops_the_clock(
    api: TestClient, database: Database, sql_lead: Callable[[str], tuple[str, datetime]]
) -> None:
    subject_id, entered = sql_lead("ann@acme-corp.com")
    response = api.post("/api/leads/ack", json={"email": "ann@acme-corp.com"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stage"] == "SQL"
    assert body["within_sla"] is True
    assert body["acknowledged_by"].startswith("api:")
    again = api.post("/api/leads/ack", json={"email": "ann@acme-corp.com"})
    assert again.status_code == 200
    assert again.json()["acknowledged_at"] == body["acknowledged_at"]
    assert _acks(database) == 1
    assert _pending(database, entered + 48 * HOUR) == []
    # A new entry (Opportunity, no SLA there) is a new hand-off to acknowledge.
    api.post("/api/leads/stage", json={"email": "ann@acme-corp.com", "stage": "Opportunity"})
    later = api.post("/api/leads/ack", json={"email": "ann@acme-corp.com"})
    assert later.status_code == 201
    assert later.json()["due_at"] is None
    assert later.json()["within_sla"] is None
    with database.read() as session:
        exported = export_scoring(session, subject_id)
    assert exported is not None
    assert [a["stage"] for a in exported["handoff_acks"]] == ["SQL", "Opportunity"]


def test_attainment_per_week_counts_met_missed_and_open(
    database: Database, sql_lead: Callable[[str], tuple[str, datetime]]
) -> None:
    on_time, entered = sql_lead("on-time@acme-corp.com")
    late, _ = sql_lead("late@acme-corp.com")
    sql_lead("waiting@acme-corp.com")
    with database.write() as session:
        assert sla.acknowledge(session, on_time, actor="t", now=entered + HOUR).within_sla
        ack = sla.acknowledge(session, late, actor="t", now=entered + 30 * HOUR)
        assert ack.within_sla is False
    with database.read() as session:
        [week] = sla.attainment(session, now=entered + 2 * HOUR)
        assert (week.handoffs, week.met, week.missed, week.open) == (3, 1, 1, 1)
        assert week.attainment == 0.5
        assert week.week.weekday() == 0
        [week] = sla.attainment(session, now=entered + 48 * HOUR)
        assert (week.met, week.missed, week.open) == (1, 2, 0)
        assert sla.attainment(session, entered + 24 * 8 * HOUR, now=entered) == []


def test_a_withdrawn_lead_leaves_the_lists_and_the_figures_at_once(
    api: TestClient, database: Database, sql_lead: Callable[[str], tuple[str, datetime]]
) -> None:
    _, entered = sql_lead("ann@acme-corp.com")
    sql_lead("bob@acme-corp.com")
    withdraw(database, "ann@acme-corp.com")
    assert [p.email for p in _pending(database, entered + 25 * HOUR)] == ["bob@acme-corp.com"]
    with database.read() as session:
        [week] = sla.attainment(session, now=entered + 25 * HOUR)
    assert week.handoffs == 1
    refused = api.post("/api/leads/ack", json={"email": "ann@acme-corp.com"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "consent_missing"
    assert _acks(database) == 0


def test_the_sla_list_over_http(
    api: TestClient, database: Database, sql_lead: Callable[[str], tuple[str, datetime]]
) -> None:
    sql_lead("ann@acme-corp.com")
    sql_lead("bob@acme-corp.com")
    assert {lead["state"] for lead in api.get("/api/leads/sla").json()["leads"]} == {"open"}
    with database.write() as session:  # ann entered SQL 25 hours ago, bob 20
        for email, hours in (("ann@acme-corp.com", 25), ("bob@acme-corp.com", 20)):
            subject_id = find_subject_id(session, email)
            session.execute(
                update(ScoredLead)
                .where(ScoredLead.subject_id == subject_id)
                .values(stage_since=utcnow() - hours * HOUR)
            )
    breached = api.get("/api/leads/sla", params={"state": "breached"}).json()["leads"]
    assert [(lead["email"], lead["state"]) for lead in breached] == [
        ("ann@acme-corp.com", "breached")
    ]
    soon = api.get("/api/leads/sla", params={"state": "due_soon"}).json()["leads"]
    assert [lead["email"] for lead in soon] == ["bob@acme-corp.com"]
    page = api.get("/api/leads/sla", params={"limit": "1"}).json()
    assert len(page["leads"]) == 1
    assert page["next_cursor"] == page["leads"][0]["lead_id"]


def test_an_acknowledged_lead_leaves_its_page_short_and_the_cursor_moves_on(
    api: TestClient, database: Database, sql_lead: Callable[[str], tuple[str, datetime]]
) -> None:
    """A page walks ``limit`` leads in stages with an SLA and lists the hand-offs still
    running: an acknowledged one leaves its page short, even empty, and paging lists
    every other once."""
    emails = [f"{name}@acme-corp.com" for name in ("ann", "bob", "cy", "di")]
    ids = {sql_lead(email)[0]: email for email in emails}
    acked = api.post("/api/leads/ack", json={"email": "bob@acme-corp.com"})
    assert acked.status_code == 201, acked.text
    pages: list[dict[str, Any]] = []
    cursor = ""
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        pages.append(api.get("/api/leads/sla", params=params).json())
        if pages[-1]["next_cursor"] is None:
            break
        cursor = pages[-1]["next_cursor"]
    seen = [lead["email"] for page in pages for lead in page["leads"]]
    assert sorted(seen) == sorted(set(emails) - {"bob@acme-corp.com"})
    assert any(page["leads"] == [] and page["next_cursor"] for page in pages)
    assert len(ids) == len(emails)


def _started(database: Database, started: dict[str, datetime]) -> None:
    with database.write() as session:
        for subject_id, at in started.items():
            session.execute(
                update(ScoredLead).where(ScoredLead.subject_id == subject_id).values(stage_since=at)
            )


def test_the_most_urgent_are_the_earliest_due_and_the_counts_are_all(
    api: TestClient,
    database: Database,
    submit: Callable[..., Any],
    events: Callable[..., Any],
    sql_lead: Callable[[str], tuple[str, datetime]],
) -> None:
    """The console lists of each state the hand-offs due first (the most overdue
    breaches), across stages with different SLAs, not the first by lead id; the counts
    are of every hand-off waiting."""
    now = utcnow()
    # SQL has 24 h, MQL 72 h: a lead's deadline is when its clock started plus its SLA.
    ages = {"a": 30, "b": 100, "c": 50, "d": 26, "e": 19, "f": 2, "g": 1}
    ids: dict[str, str] = {}
    for name in ages:
        ids[name], _ = sql_lead(f"{name}@acme-corp.com")
    submit("mia@acme-corp.com", **FIT)
    events("mia@acme-corp.com", "pricing_page_viewed", "webinar_attended")  # MQL, 72 h
    ids["mia"], _ = _entered(database, "mia@acme-corp.com")
    ages["mia"] = 75  # breached 3 h ago: more recent than b, c and a, earlier than d
    _started(database, {ids[n]: now - timedelta(hours=h) for n, h in ages.items()})
    acked = api.post("/api/leads/ack", json={"email": "c@acme-corp.com"})
    assert acked.status_code == 201, acked.text

    def urgent(state: Any, limit: int) -> list[str]:
        with database.read() as session:
            found = sla.most_urgent(session, now=now, state=state, limit=limit)
        names = {v: k for k, v in ids.items()}
        return [names[h.subject_id] for h in found]

    assert urgent(sla.SlaState.BREACHED, 10) == ["b", "a", "mia", "d"]
    assert urgent(sla.SlaState.BREACHED, 2) == ["b", "a"]
    assert urgent(sla.SlaState.DUE_SOON, 10) == ["e"]
    assert urgent(sla.ON_TIME, 10) == ["f", "g"]
    with database.read() as session:
        counts = sla.pending_counts(session, now=now)
    assert counts == {sla.SlaState.BREACHED: 4, sla.SlaState.DUE_SOON: 1, None: 2}
    withdraw(database, "b@acme-corp.com")
    assert urgent(sla.SlaState.BREACHED, 2) == ["a", "mia"]
    with database.read() as session:
        assert sla.pending_counts(session, now=now)[sla.SlaState.BREACHED] == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "late"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "x"}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_sla_queries_are_422(api: TestClient, params: dict[str, str], field: str) -> None:
    response = api.get("/api/leads/sla", params=params)
    assert response.status_code == 422
    assert field in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 422, "email"),
        ({"email": "not an email"}, 422, "email"),
        ({"email": "ann@acme-corp.com", "stage": "SQL"}, 422, "stage"),
        ({"email": "nobody@acme-corp.com"}, 404, "email"),
        ({"email": "lead@acme-corp.com"}, 409, "email"),  # still a Lead: nothing handed off
    ],
)
def test_bad_acknowledgements_change_nothing(
    api: TestClient,
    database: Database,
    submit: Callable[..., Any],
    body: dict[str, Any],
    status: int,
    field: str,
) -> None:
    submit("lead@acme-corp.com", **FIT)
    response = api.post("/api/leads/ack", json=body)
    assert response.status_code == status
    assert field in response.json()["error"]["fields"]
    assert _acks(database) == 0


def test_sla_routes_need_a_key(app_client: TestClient) -> None:
    assert app_client.post("/api/leads/ack", json={}).status_code == 401
    assert app_client.get("/api/leads/sla").status_code == 401


@pytest.mark.parametrize(
    ("replacement", "where"),
    [
        ('SQL = "24h"\nCustomer = "soon"', "scoring.sla.Customer"),
        ('SQL = "24"', "scoring.sla.SQL"),
        ('SQL = "0m"', "scoring.sla.SQL"),
        ('SQL = "400d"', "scoring.sla.SQL"),
        ('SQL = "24h"\nLead = "1h"', "scoring.sla.Lead"),
    ],
)
def test_a_bad_sla_is_refused_with_its_key(
    load_model: Callable[..., list[str]], replacement: str, where: str
) -> None:
    with pytest.raises(SiteConfigError) as caught:
        load_model(('SQL = "24h"', replacement))
    assert where in str(caught.value)


def test_durations() -> None:
    assert sla.parse_duration("90m") == 5400
    assert sla.parse_duration("1.5h") == 5400
    assert sla.parse_duration("3d") == 3 * 86_400
    assert sla.parse_duration(24) is None
    assert sla.parse_duration("24 hours") is None
