"""Lead scoring: event intake, incremental and full rescoring, accounts, beside bare baselines.

Measured in one run, on the same database and machine:

- **Event intake** through ``POST /api/events`` (the real app, in-process through
  Starlette's test client: API key, JSON parsing and validation, lead look-up, consent
  check per event, insert, incremental rescore of each lead), single events and batches
  of 100, for leads with a live profiling consent. Baseline: the same rows inserted by
  ``executemany`` of one SQLAlchemy Core statement, batches of 100, in the same process.
- **Incremental rescoring**: the latency of scoring one event for one lead (the service
  call: consent check under lock, insert, rescore of the lead, in one transaction).
- **Full rescoring** (``zeroparty score``) of N leads with 10 events each, in a child
  process (wall time and peak memory). Baseline: the same behaviour aggregation (caps,
  minimum counts, windows of the demo model) as one SQL ``GROUP BY`` query, read out
  in the same kind of child process. The baseline writes nothing back and explains
  nothing; zeroparty stores every point with its rule, input and ledger entry.
- **Scheduled pass** (``scoring.upkeep.run_upkeep``, what ``serve`` runs every 10
  minutes) over the N leads just rescored, a day later: every lead with a decaying or
  windowed point is due (``rescore_every`` passed) and rescored incrementally, in
  batches of 1,000, in a child process (wall time and peak memory). No baseline: the
  full rescore above is the alternative it replaces.
- **Accounts page**: the latency (median and p95) of ``list_accounts`` (behind ``GET
  /api/accounts`` and the console's accounts page), first page and a middle page of 100
  accounts, and of ``get_account`` for an account of typical size, over N scored leads
  on company and free-mail domains (plus unconsented profiles), in one transaction
  each. Baseline: the plain indexed SQL query for the same page (one grouped query,
  no committees) or account (its members), run interleaved in the same process.

Run alone: ``python -m bench.bench_scoring [--quick] [--no-postgres] [--leads N]
[--write]`` (``--write`` puts the section into ``BENCHMARKS.md``).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, insert, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bench.databases import (
    PostgresTemplate,
    SqliteTemplate,
    bare_engine,
    postgres_available,
    workdir,
)
from bench.machine import describe, load_average
from bench.measured_process import run_measured
from bench.report import (
    DEFAULT_POSTGRES_URL,
    Options,
    Row,
    ScenarioResult,
    median,
    per_second,
    percentile,
)
from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.entries import LedgerEntry
from consent_ledger.models import Subject, SubjectProfile
from scoring import accounts, services
from scoring.models import LeadAttribute, LeadEvent, Qualification, ScoredLead
from zeroparty.apikeys import create_api_key
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import PROJECT_ROOT, Settings

EVENT_TYPES = ("pricing_page_viewed", "case_study_downloaded", "webinar_attended", "email_opened")
EVENTS_PER_LEAD = 10
TITLE = "Lead scoring"
REPORT = PROJECT_ROOT / "BENCHMARKS.md"

_events = cast(Table, LeadEvent.__table__)
_subjects = cast(Table, Subject.__table__)
_profiles = cast(Table, SubjectProfile.__table__)
_leads = cast(Table, ScoredLead.__table__)
_attributes = cast(Table, LeadAttribute.__table__)
_qualification = cast(Table, Qualification.__table__)

BARE_AGGREGATION = """
SELECT subject_id, SUM(points) FROM (
  SELECT subject_id,
    CASE WHEN SUM(CASE WHEN type = 'pricing_page_viewed' AND occurred_at >= :d90
                       THEN 1 ELSE 0 END) > 0 THEN 20 ELSE 0 END
  + CASE WHEN SUM(CASE WHEN type = 'case_study_downloaded' AND occurred_at >= :d90
                       THEN 1 ELSE 0 END) > 0 THEN 10 ELSE 0 END
  + CASE WHEN SUM(CASE WHEN type = 'webinar_attended' AND occurred_at >= :d180
                       THEN 1 ELSE 0 END) > 0 THEN 15 ELSE 0 END
  + CASE WHEN SUM(CASE WHEN type = 'email_opened' AND occurred_at >= :d30
                       THEN 1 ELSE 0 END) >= 3 THEN 5 ELSE 0 END AS points
  FROM scoring_events GROUP BY subject_id
) per_lead GROUP BY subject_id
"""


def _grant_profiling(
    session: Session, subject_ids: list[str], at: datetime, notice: str
) -> list[LedgerEntry]:
    """A written (imported) ``profiling`` grant for each lead, at ``at``."""
    return ledger.append_many(
        session,
        [
            ledger.EntryDraft(
                i,
                "profiling",
                ConsentAction.GRANTED.value,
                ConsentSource.IMPORT.value,
                ConsentMethod.WRITTEN.value,
                at,
                notice_sha256=notice,
            )
            for i in subject_ids
        ],
    )


def seed_leads(database: Database, count: int, *, batch: int = 2000) -> list[str]:
    """``count`` leads with a live profiling grant (through the real ledger append)."""
    with database.read() as session:
        notice = session.execute(
            text(
                "SELECT sha256 FROM notice_versions WHERE purpose_key = 'profiling' "
                "ORDER BY version DESC LIMIT 1"
            )
        ).scalar_one()
    emails: list[str] = []
    now = utcnow() - timedelta(days=200)
    for start in range(0, count, batch):
        ids = [uuid.uuid4().hex for _ in range(min(batch, count - start))]
        with database.write() as session:
            connection = session.connection()
            connection.execute(
                insert(_subjects), [{"id": i, "locale": "en", "created_at": now} for i in ids]
            )
            connection.execute(
                insert(_profiles),
                [
                    {
                        "subject_id": i,
                        "email": f"{i}@bench.example",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
            _grant_profiling(session, ids, now, notice)
        emails += [f"{i}@bench.example" for i in ids]
    return emails


def seed_events(database: Database, leads: int, per_lead: int, *, batch: int = 20_000) -> int:
    """``per_lead`` stored events for each of the first ``leads`` permissioned leads."""
    with database.read() as session:
        rows = session.execute(
            text(
                "SELECT subject_id, last_seq FROM consent_state WHERE purpose_key = 'profiling' "
                "ORDER BY subject_id LIMIT :n"
            ),
            {"n": leads},
        ).all()
    rng = random.Random(5)
    now = utcnow()
    pending: list[dict[str, object]] = []
    written = 0
    for subject_id, seq in rows:
        for _ in range(per_lead):
            pending.append(
                {
                    "id": uuid.uuid4().hex,
                    "subject_id": subject_id,
                    "type": rng.choice(EVENT_TYPES),
                    "occurred_at": now - timedelta(days=rng.uniform(0, 150)),
                    "received_at": now,
                    "properties": "{}",
                    "consent_seq": seq,
                }
            )
            if len(pending) >= batch:
                with database.write() as session:
                    session.execute(insert(_events), pending)
                written += len(pending)
                pending = []
    if pending:
        with database.write() as session:
            session.execute(insert(_events), pending)
        written += len(pending)
    return written


# Accounts data: company domains of skewed size (a few large accounts, many small ones),
# a quarter of the leads on free-mail domains (gmail.com heaviest) that lie between the
# company domains in index order, a tenth more profiles without profiling consent (not
# members), and the answers and BANT values the buying committees are made of.
ACCOUNT_STAGES = (
    ("Lead", 0.80),
    ("MQL", 0.12),
    ("SQL", 0.05),
    ("Opportunity", 0.02),
    ("Customer", 0.01),
)
ACCOUNT_FREE_MAIL = ("gmail.com",) * 6 + ("outlook.com", "yahoo.com", "web.de", "mailbox.org")
ACCOUNT_TITLES = tuple(
    f"{level} of {area}"
    for level in ("Head", "Director", "VP")
    for area in ("Sales", "Marketing", "IT", "Finance", "Operations")
)


def _company_domain(rng: random.Random, n: int) -> str:
    stem = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
    return f"{stem}{n}.{rng.choice(('com', 'de', 'io', 'example'))}"


def seed_accounts(database: Database, leads: int, *, batch: int = 2000) -> list[str]:
    """``leads`` scored leads with a live profiling grant (through the real ledger
    append) spread over company and free-mail domains, plus unconsented profiles and
    committee answers; returns the company domains, sorted. Scores and stages are
    written directly (the rescore cell measures how they are computed)."""
    rng = random.Random(11)
    with database.read() as session:
        notice = session.execute(
            text(
                "SELECT sha256 FROM notice_versions WHERE purpose_key = 'profiling' "
                "ORDER BY version DESC LIMIT 1"
            )
        ).scalar_one()
    companies = [_company_domain(rng, n) for n in range(max(1, leads // 12))]
    stages, weights = zip(*ACCOUNT_STAGES, strict=True)
    then = utcnow() - timedelta(days=100)
    total = leads + leads // 10
    for start in range(0, total, batch):
        ids = [uuid.uuid4().hex for _ in range(min(batch, total - start))]
        domains = [
            rng.choice(ACCOUNT_FREE_MAIL)
            if rng.random() < 0.25
            else companies[int(len(companies) * rng.random() ** 2)]
            for _ in ids
        ]
        consented = [i for n, i in enumerate(ids, start) if n < leads]
        with database.write() as session:
            connection = session.connection()
            connection.execute(
                insert(_subjects), [{"id": i, "locale": "en", "created_at": then} for i in ids]
            )
            connection.execute(
                insert(_profiles),
                [
                    {"subject_id": i, "email": f"{i}@{d}", "created_at": then, "updated_at": then}
                    for i, d in zip(ids, domains, strict=True)
                ],
            )
            entries = _grant_profiling(session, consented, then, notice)
            if not entries:
                continue
            picked = rng.choices(stages, weights, k=len(entries))
            connection.execute(
                insert(_leads),
                [
                    {
                        "subject_id": e.subject_id,
                        "stage": stage,
                        "score": float(
                            rng.randint(0, 59) if stage == "Lead" else 60 + rng.randint(0, 40)
                        ),
                        "model_id": None,
                        "scored_at": then,
                        "stage_since": then,
                    }
                    for e, stage in zip(entries, picked, strict=True)
                ],
            )
            titled = [e for e in entries if rng.random() < 0.4]
            if titled:
                connection.execute(
                    insert(_attributes),
                    [
                        {
                            "subject_id": e.subject_id,
                            "kind": "field",
                            "name": "job_title",
                            "value": rng.choice(ACCOUNT_TITLES),
                            "purposes": '["profiling"]',
                            "source_ref": "bench",
                            "occurred_at": then,
                            "consent_seq": e.seq,
                        }
                        for e in titled
                    ],
                )
            qualified = [e for e, stage in zip(entries, picked, strict=True) if stage != "Lead"]
            if qualified:
                connection.execute(
                    insert(_qualification),
                    [
                        {
                            "subject_id": e.subject_id,
                            "field": "authority",
                            "value": rng.choice(("decision maker", "influencer", "champion")),
                            "actor": "bench",
                            "recorded_at": then,
                            "consent_seq": e.seq,
                        }
                        for e in qualified
                    ],
                )
    if database.dialect == "postgresql":
        # What autovacuum does to a table this size soon after a bulk load.
        with database.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            for table in (
                "subject_profiles",
                "consent_state",
                "scoring_leads",
                "scoring_attributes",
                "scoring_qualification",
            ):
                connection.exec_driver_sql(f"VACUUM ANALYZE {table}")
    return sorted(set(companies))


ACCOUNTS_PAGE = 100  # the API's default page
DOMAIN_SQL = {
    "sqlite": "substr(p.email, instr(p.email, '@') + 1)",
    "postgresql": "split_part(p.email, '@', 2)",
}
BARE_MEMBERS = """
FROM subject_profiles p
JOIN scoring_leads l ON l.subject_id = p.subject_id
JOIN consent_state c ON c.subject_id = p.subject_id AND c.purpose_key = 'profiling'
 AND c.permitted
"""
BARE_ACCOUNTS_PAGE = (
    """
SELECT {domain} AS domain, count(*), sum(l.score), max(l.score), max(CASE l.stage
  WHEN 'Lead' THEN 1 WHEN 'MQL' THEN 2 WHEN 'SQL' THEN 3 WHEN 'Opportunity' THEN 4
  WHEN 'Customer' THEN 5 ELSE 0 END)"""
    + BARE_MEMBERS
    + """WHERE {domain} > :after AND {domain} NOT IN :free
GROUP BY {domain} ORDER BY {domain} LIMIT :limit
"""
)
BARE_ACCOUNT = (
    "SELECT l.subject_id, l.score, l.stage, p.email"
    + BARE_MEMBERS
    + "WHERE {domain} = :domain ORDER BY l.subject_id"
)


def measure_accounts(url: str, leads: int, quick: bool) -> dict[str, float]:
    """Latency of ``list_accounts`` (first and middle page) and ``get_account``, each
    beside the plain indexed SQL query for the same rows, interleaved in one process."""
    database = Database.from_url(url)
    bare = bare_engine(url, immediate=False)
    try:
        started = time.perf_counter()
        seed_accounts(database, leads)
        figures: dict[str, float] = {"setup_s": time.perf_counter() - started}
        with database.read() as session:
            listed = accounts.list_accounts(session.connection(), stage=None, limit=leads)
            model = services.require_model(session.connection()).model
        sizes = sorted(listed, key=lambda a: (a.members, a.domain))
        typical = sizes[len(sizes) // 2]
        middle = listed[len(listed) // 2].domain
        figures.update(accounts=len(listed), members=typical.members)
        domain = DOMAIN_SQL[database.dialect]
        page_sql = text(BARE_ACCOUNTS_PAGE.format(domain=domain)).bindparams(
            bindparam("free", expanding=True)
        )
        one_sql = text(BARE_ACCOUNT.format(domain=domain))
        free = sorted(accounts.free_mail_domains(model))
        cases: dict[str, tuple[Callable[[Connection], object], Callable[[Connection], object]]] = {
            "first": (
                lambda c: accounts.list_accounts(c, stage=None, limit=ACCOUNTS_PAGE),
                lambda c: c.execute(
                    page_sql, {"after": "", "free": free, "limit": ACCOUNTS_PAGE}
                ).all(),
            ),
            "middle": (
                lambda c: accounts.list_accounts(c, stage=None, limit=ACCOUNTS_PAGE, after=middle),
                lambda c: c.execute(
                    page_sql, {"after": middle, "free": free, "limit": ACCOUNTS_PAGE}
                ).all(),
            ),
            "one": (
                lambda c: accounts.get_account(c, typical.domain),
                lambda c: c.execute(one_sql, {"domain": typical.domain}).all(),
            ),
        }
        repeats = 30 if quick else 200
        for name, (ours, theirs) in cases.items():
            mine: list[float] = []
            plain: list[float] = []
            for _ in range(repeats):  # interleaved: both see the same load on the machine
                t0 = time.perf_counter()
                with database.read() as session:
                    ours(session.connection())
                mine.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with bare.connect() as connection:
                    theirs(connection)
                plain.append(time.perf_counter() - t0)
            figures[f"{name}_p50_ms"] = median(mine) * 1000
            figures[f"{name}_p95_ms"] = percentile(mine, 0.95) * 1000
            figures[f"bare_{name}_p50_ms"] = median(plain) * 1000
            figures[f"bare_{name}_p95_ms"] = percentile(plain, 0.95) * 1000
        return figures
    finally:
        bare.dispose()
        database.dispose()


def _batches(emails: list[str], size: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    at = utcnow().isoformat().replace("+00:00", "Z")
    return [
        {
            "events": [
                {
                    "id": uuid.uuid4().hex,
                    "email": rng.choice(emails),
                    "type": rng.choice(EVENT_TYPES),
                    "occurred_at": at,
                }
                for _ in range(size)
            ]
        }
        for _ in range(count)
    ]


def _bare_events_app(url: str) -> Starlette:
    """The bare stack's ``POST /api/events`` on SQLite (PERF-NOTES): an async endpoint,
    stdlib sqlite3 on the event loop, the leads' ids by email in one statement, the
    same rows inserted by one executemany and committed; no key, no checks, no scoring."""
    path = make_url(url).database
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)

    def stored(raw: str) -> str:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
        return at.strftime("%Y-%m-%d %H:%M:%S.%f")

    async def post(request: Request) -> JSONResponse:
        events = orjson.loads(await request.body())["events"]
        emails = sorted({e["email"] for e in events})
        marks = ",".join("?" * len(emails))
        ids = dict(
            db.execute(
                f"SELECT email, subject_id FROM subject_profiles WHERE email IN ({marks})", emails
            ).fetchall()
        )
        now = stored(utcnow().isoformat())
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO scoring_events (id, subject_id, type, occurred_at, received_at, "
            "properties, consent_seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (e["id"], ids[e["email"]], e["type"], stored(e["occurred_at"]), now, "{}", 1)
                for e in events
            ],
        )
        db.execute("COMMIT")
        return JSONResponse({"accepted": len(events)}, status_code=201)

    return Starlette(routes=[Route("/api/events", post, methods=["POST"])])


def measure_intake(url: str, quick: bool) -> dict[str, float]:
    database = Database.from_url(url)
    key_file = Path(tempfile.gettempdir()) / f"zp-bench-{uuid.uuid4().hex}.key"
    settings = Settings(
        database_url=url, secret_keys=("bench-secret-key-0123456789",), checkpoint_key_file=key_file
    )
    try:
        emails = seed_leads(database, 2000)
        with database.write() as session:
            key = create_api_key(session, f"bench-{uuid.uuid4().hex[:6]}")
        app = create_app(settings, database)
        figures: dict[str, float] = {}
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {key}"
            singles = _batches(emails, 1, 100 if quick else 400)
            started = time.perf_counter()
            latencies = []
            for body in singles:
                t0 = time.perf_counter()
                assert client.post("/api/events", json=body).status_code == 201
                latencies.append(time.perf_counter() - t0)
            figures["single_eps"] = len(singles) / (time.perf_counter() - started)
            figures["single_p50_ms"] = statistics.median(latencies) * 1000
            batches = _batches(emails, 100, 10 if quick else 40)
            started = time.perf_counter()
            for body in batches:
                assert client.post("/api/events", json=body).status_code == 201
            figures["batch_eps"] = 100 * len(batches) / (time.perf_counter() - started)
        if url.startswith("sqlite"):
            # Bare through HTTP (issue 17's baseline): the same kind of batches, the same
            # test client, the bare stack's endpoint.
            with TestClient(_bare_events_app(url)) as bare:
                bodies = _batches(emails, 100, 10 if quick else 40)
                started = time.perf_counter()
                for body in bodies:
                    assert bare.post("/api/events", json=body).status_code == 201
                figures["bare_http_eps"] = 100 * len(bodies) / (time.perf_counter() - started)
        # Bare: the same rows, executemany of one Core insert, batches of 100.
        with database.read() as session:
            subject_ids = [
                r[0]
                for r in session.execute(text("SELECT subject_id FROM subject_profiles LIMIT 2000"))
            ]
        rows = [
            [
                {
                    "id": uuid.uuid4().hex,
                    "subject_id": random.choice(subject_ids),
                    "type": "webinar_attended",
                    "occurred_at": utcnow(),
                    "received_at": utcnow(),
                    "properties": "{}",
                    "consent_seq": 1,
                }
                for _ in range(100)
            ]
            for _ in range(len(batches))
        ]
        started = time.perf_counter()
        for chunk in rows:
            with database.write() as session:
                session.execute(insert(_events), chunk)
        figures["bare_eps"] = 100 * len(rows) / (time.perf_counter() - started)
        started = time.perf_counter()
        for chunk in rows[: max(1, len(rows) // 4)]:
            for row in chunk:
                with database.write() as session:
                    session.execute(insert(_events), {**row, "id": uuid.uuid4().hex})
        figures["bare_single_eps"] = 100 * max(1, len(rows) // 4) / (time.perf_counter() - started)
        # Incremental rescoring: one event, one lead, the service call.
        latencies = []
        for body in _batches(emails, 1, 100 if quick else 300):
            item = body["events"][0]
            event = services.EventIn(0, item["id"], item["email"], item["type"], utcnow())
            t0 = time.perf_counter()
            with database.write() as session:
                services.ingest_events(session, [event])
            latencies.append(time.perf_counter() - t0)
        latencies.sort()
        figures["incremental_p50_ms"] = latencies[len(latencies) // 2] * 1000
        figures["incremental_p99_ms"] = latencies[int(len(latencies) * 0.99) - 1] * 1000
        return figures
    finally:
        database.dispose()
        settings.checkpoint_key_file.unlink(missing_ok=True)


def rescore_child(url: str, mode: str) -> None:
    """Inside the measured child: run the full rescore or the bare aggregation."""
    database = Database.from_url(url)
    try:
        if mode == "zeroparty":
            from scoring.rescore import rescore_all

            report = rescore_all(database)
            print(f"{report.leads} {report.points}")
        elif mode == "upkeep":
            from scoring.upkeep import run_upkeep

            kept = run_upkeep(database, now=utcnow() + timedelta(days=1))
            print(f"{kept.rescored} {kept.changed}")
        else:
            now = utcnow()
            params = {f"d{d}": now - timedelta(days=d) for d in (30, 90, 180)}
            with database.connect() as connection:
                result = connection.execute(text(BARE_AGGREGATION), params)
                count = sum(1 for _ in result)
            print(f"{count} 0")
    finally:
        database.dispose()


def measure_rescore(url: str, leads: int) -> dict[str, float]:
    database = Database.from_url(url)
    try:
        started = time.perf_counter()
        seed_leads(database, leads)
        events = seed_events(database, leads, EVENTS_PER_LEAD)
        setup = time.perf_counter() - started
    finally:
        database.dispose()
    figures: dict[str, float] = {"events": events, "setup_s": setup}
    for mode in ("bare", "zeroparty"):
        run = run_measured(
            [sys.executable, "-m", "bench.bench_scoring", "--child", mode, url],
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            timeout_s=3600,
        )
        if run.returncode != 0:
            raise RuntimeError(f"{mode} rescore failed: {run.stderr[-500:]}")
        figures[f"{mode}_s"] = run.seconds
        figures[f"{mode}_mb"] = run.peak_mb
        figures[f"{mode}_leads"] = float(run.stdout.split()[0])
    # The scheduled pass a day after the full rescore, over the leads it scored.
    run = run_measured(
        [sys.executable, "-m", "bench.bench_scoring", "--child", "upkeep", url],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        timeout_s=3600,
    )
    if run.returncode != 0:
        raise RuntimeError(f"scheduled pass failed: {run.stderr[-500:]}")
    figures["upkeep_s"], figures["upkeep_mb"] = run.seconds, run.peak_mb
    figures["upkeep_leads"], figures["upkeep_changed"] = map(float, run.stdout.split()[:2])
    return figures


def run(options: Options, leads: int | None = None) -> ScenarioResult:
    leads = leads or (10_000 if options.quick else 100_000)
    load_at_start = load_average()
    result = ScenarioResult(
        title=TITLE,
        command="python -m bench.bench_scoring" + (" --quick" if options.quick else ""),
        what=(__doc__ or "").split("\n\n", 1)[1].split("\n\nRun alone")[0],
    )
    with workdir() as directory:
        backends: list[tuple[str, Any]] = [("SQLite", SqliteTemplate(directory))]
        if options.postgres_url and postgres_available(options.postgres_url):
            backends.append(("PostgreSQL", PostgresTemplate(options.postgres_url)))
        try:
            for name, template in backends:
                print(f"-- {name}: intake", flush=True)
                intake = measure_intake(template.fresh(), options.quick)
                print(f"-- {name}: full rescore of {leads:,} leads", flush=True)
                rescore = measure_rescore(template.fresh(), leads)
                print(f"-- {name}: accounts pages at {leads:,} leads", flush=True)
                pages = measure_accounts(template.fresh(), leads, options.quick)
                result.rows += [
                    Row(
                        f"{name}: events/s, POST /api/events, batches of 100",
                        per_second(intake["batch_eps"]),
                        per_second(intake["bare_eps"]),
                        f"{intake['batch_eps'] / intake['bare_eps']:.0%}",
                        "—",
                        None,
                    ),
                    *(
                        [
                            Row(
                                f"{name}: events/s, POST /api/events, batches of 100, "
                                "against the bare stack's endpoint through HTTP",
                                per_second(intake["batch_eps"]),
                                per_second(intake["bare_http_eps"]),
                                f"{intake['batch_eps'] / intake['bare_http_eps']:.0%}",
                                "≥ 50%",
                                None,
                            )
                        ]
                        if "bare_http_eps" in intake
                        else []
                    ),
                    Row(
                        f"{name}: events/s, POST /api/events, one event per request",
                        per_second(intake["single_eps"]),
                        per_second(intake["bare_single_eps"]),
                        f"{intake['single_eps'] / intake['bare_single_eps']:.0%}",
                        "—",
                        None,
                    ),
                    Row(
                        f"{name}: one event scored incrementally (p50 / p99)",
                        f"{intake['incremental_p50_ms']:.1f} / "
                        f"{intake['incremental_p99_ms']:.1f} ms",
                        "—",
                        "—",
                        "—",
                        None,
                    ),
                    Row(
                        f"{name}: full rescore, {leads:,} leads, {rescore['events']:,.0f} events",
                        f"{rescore['zeroparty_s']:.1f} s, peak {rescore['zeroparty_mb']:.0f} MB",
                        f"{rescore['bare_s']:.1f} s, peak {rescore['bare_mb']:.0f} MB",
                        f"{rescore['zeroparty_s'] / rescore['bare_s']:.1f} times",
                        "—",
                        None,
                    ),
                    Row(
                        f"{name}: scheduled pass a day later, {rescore['upkeep_leads']:,.0f} "
                        f"leads due, {rescore['upkeep_changed']:,.0f} scores changed",
                        f"{rescore['upkeep_s']:.1f} s, peak {rescore['upkeep_mb']:.0f} MB",
                        "—",
                        "—",
                        "—",
                        None,
                    ),
                ]
                for case, label in (
                    ("first", f"first page ({ACCOUNTS_PAGE} accounts)"),
                    ("middle", "a middle page (cursor)"),
                    ("one", f"`get_account`, a typical account ({pages['members']:.0f} leads)"),
                ):
                    result.rows.append(
                        Row(
                            f"{name}: accounts of {leads:,} leads, {label} (median / p95)",
                            f"{pages[f'{case}_p50_ms']:.1f} / {pages[f'{case}_p95_ms']:.1f} ms",
                            f"{pages[f'bare_{case}_p50_ms']:.1f} / "
                            f"{pages[f'bare_{case}_p95_ms']:.1f} ms",
                            f"{pages[f'{case}_p50_ms'] / pages[f'bare_{case}_p50_ms']:.1f} times",
                            "—",
                            None,
                        )
                    )
                result.notes.append(
                    f"{name}: {pages['accounts']:,.0f} accounts; seeding their leads took "
                    f"{pages['setup_s']:.0f} s."
                )
                result.notes.append(
                    f"{name}: single-event POST p50 {intake['single_p50_ms']:.1f} ms; "
                    f"seeding {leads:,} consented leads and their events took "
                    f"{rescore['setup_s']:.0f} s; the rescore covered "
                    f"{rescore['zeroparty_leads']:,.0f} leads."
                )
        finally:
            for _, template in backends:
                if isinstance(template, PostgresTemplate):
                    template.close()
    result.notes += NOTES
    result.notes.append(
        f"1-minute load average {load_at_start:.1f} at the start, {load_average():.1f} at the "
        "end (the machine is shared: other work lowers every figure, zeroparty's and bare alike)."
    )
    return result


NOTES = [
    "The single-event row is dominated by the HTTP round trip through Starlette's test "
    "client (each request crosses threads several times: ~3 ms here) plus 13 statements "
    "in one write transaction (lead, duplicate and consent look-ups, insert, the lead's "
    "answers and events, points replaced, score updated); the bare baseline is one "
    "INSERT per transaction without HTTP. Batches amortise both: send batches.",
    "Full rescoring takes 1,000 leads per transaction, re-checks their consent under a "
    "share lock, reads in one statement only the events a rule can count (its types, "
    "inside its window, lead by lead in time order: 600,000 of the 1,000,000), counts "
    "them as the engine does and writes every point row with its rule, event and ledger "
    "entry (COPY on PostgreSQL) and every lead's score; the bare query only aggregates. "
    "Reading the events through the subject index is the largest part on both databases; "
    "on PostgreSQL a new lead's row is also inserted (to lock it) and then updated with "
    "its score (bench/analysis.md, 'Full rescore'). Peak memory stays flat: one batch at "
    "a time.",
    "An accounts page is, beyond the scoring-model look-up, the next domains from the "
    "domain index, the grouped query over that range of domains (the bare query's work) "
    "and the page's buying committees (job titles and current BANT authority of every "
    "member: a second pass over the same members, most of the difference); "
    "`get_account` adds the members' job titles and its committee. A stage filter walks "
    "further ranges until the page is full, or, for a stage with few leads, starts from "
    "them (`scoring.accounts.SPARSE_STAGE`).",
]


START, END = "<!-- bench_scoring:start -->", "<!-- bench_scoring:end -->"


def write_section(result: ScenarioResult, report: Path = REPORT) -> None:
    """Put this scenario's section, between its own markers, into ``BENCHMARKS.md``,
    replacing an older one; other tools' sections and markers are left as they are."""
    section = f"{START}\n{result.markdown()}{END}\n\n"
    current = report.read_text(encoding="utf-8") if report.exists() else "# Benchmarks\n"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        current = before + section + rest.split(END, 1)[1].lstrip("\n")
    elif f"\n## {TITLE}\n" in current:  # an unmarked section written by `run_all`
        start = current.index(f"\n## {TITLE}\n") + 1
        ends = [current.find(mark, start + 1) for mark in ("\n## ", "\n<!--")]
        end = min((e for e in ends if e >= 0), default=len(current))
        current = current[:start] + section + current[end + 1 :]
    else:
        analysis = Path(__file__).with_name("analysis.md").read_text(encoding="utf-8")
        anchor = current.find("\n" + analysis.split("\n", 1)[0])
        if anchor >= 0:
            current = current[: anchor + 1] + section + current[anchor + 1 :]
        else:
            current = current.rstrip("\n") + "\n\n" + section
    command = "python -m bench.bench_scoring [--quick] [--no-postgres] [--leads N] [--write]"
    if command not in current:
        current = current.replace("\n```\n\nLatest run", f"\n{command}\n```\n\nLatest run", 1)
    report.write_text(current, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--child"]:
        rescore_child(args[2], args[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--leads", type=int, default=None)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parsed = parser.parse_args(args)
    options = Options(parsed.quick, None if parsed.no_postgres else parsed.postgres_url)
    result = run(options, parsed.leads)
    result.details += [
        f"Machine: {line.removeprefix('- ').removeprefix('machine: ')}"
        for line in describe(options.postgres_url)
    ][:3]
    print(result.markdown())
    if parsed.write:
        write_section(result)
        print(f"wrote the {TITLE} section of {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
