"""Several OS processes writing to one ledger at once: no gaps, no forks, no loss.

Each worker is a separate interpreter (``spawn``) with its own engine, as app processes
on several hosts would be. Workers start together behind a barrier. First they all look
up the same new address at once (one subject must come of it); then each appends its
entries, reporting the ``seq`` of every append that was acknowledged (committed).
Afterwards the ledger must hold exactly those, in one unbroken chain.

One run per backend (a module fixture) serves all the checks: spawning interpreters is
what costs here, not the checks.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.models import ConsentEvent, ConsentState, Subject, SubjectProfile
from consent_ledger.projection import ConsentFact, fold
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.subjects import get_or_create_subject
from consent_ledger.verify import verify_ledger
from tests.factories import notice_hash
from zeroparty.db import Database

if TYPE_CHECKING:
    # Not imported at run time: every spawned worker imports this module, and the
    # fixtures module pulls in the whole app.
    from tests.conftest import DatabaseFactory

SPAWN = multiprocessing.get_context("spawn")
WORKERS = 4
WORKER_TIMEOUT = 120
SHARED_LEADS = 3
RACE_EMAIL = "race@example.com"
# How long each racer holds its transaction open after creating the subject, so the
# others look it up before it is committed (and must cope with the unique conflict).
RACE_HOLD_SECONDS = 0.25


@dataclass(frozen=True)
class WorkerReport:
    worker: int
    race_subject_id: str | None
    acknowledged: list[int]
    error: str | None


def _worker(url: str, worker: int, count: int, notice: str, barrier: Barrier, results: Any) -> None:
    """Race for one new subject, then append ``count`` entries; report what committed."""
    database = Database.from_url(url)
    race_subject_id: str | None = None
    acknowledged: list[int] = []
    try:
        barrier.wait(timeout=WORKER_TIMEOUT)
        with database.write() as session:
            race_subject_id = get_or_create_subject(session, RACE_EMAIL).id
            time.sleep(RACE_HOLD_SECONDS)

        barrier.wait(timeout=WORKER_TIMEOUT)
        for i in range(count):
            shared = i % 2 == 0
            email = (
                f"shared{i % SHARED_LEADS}@example.com" if shared else f"w{worker}-{i}@x.example"
            )
            action = ConsentAction.GRANTED if i % 3 != 2 else ConsentAction.WITHDRAWN
            with database.write() as session:
                entry = record_consent(
                    session,
                    ConsentRecord(
                        email=email,
                        purpose="profiling",
                        action=action,
                        source=ConsentSource.API,
                        method=ConsentMethod.ELECTRONIC,
                        notice_sha256=notice if action is ConsentAction.GRANTED else None,
                        # A few arrive late, to exercise the projection's replay path.
                        occurred_at=(
                            datetime.now(UTC) - timedelta(seconds=30) if i % 7 == 3 else None
                        ),
                        # Shared leads move between jurisdictions: subject updates race too.
                        jurisdiction=("US-CA", "DE")[worker % 2] if shared else None,
                        evidence={"ip": "192.0.2.0/24", "worker": worker, "i": i},
                    ),
                )
            acknowledged.append(entry.seq)  # committed: the with-block has exited
        results.put(WorkerReport(worker, race_subject_id, acknowledged, None))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(WorkerReport(worker, race_subject_id, acknowledged, repr(exc)))
    finally:
        database.dispose()


@dataclass(frozen=True)
class Run:
    url: str
    per_worker: int
    reports: list[WorkerReport]


def _run_workers(url: str, per_worker: int) -> Run:
    database = Database.from_url(url)
    try:
        notice = notice_hash(database, "profiling")
    finally:
        database.dispose()
    results = SPAWN.Queue()
    barrier = SPAWN.Barrier(WORKERS)
    processes = [
        SPAWN.Process(target=_worker, args=(url, w, per_worker, notice, barrier, results))
        for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=WORKER_TIMEOUT) for _ in processes]
    for process in processes:
        process.join(timeout=WORKER_TIMEOUT)
        assert process.exitcode == 0
    return Run(url, per_worker, sorted(reports, key=lambda r: r.worker))


@pytest.fixture(scope="module")
def postgres_run(postgres_factory: DatabaseFactory) -> Iterator[Run]:
    url = postgres_factory.new_url()
    yield _run_workers(url, per_worker=50)
    postgres_factory.drop(url)


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A file database whatever ``ZEROPARTY_TEST_DB`` says (every process opens it)."""
    from tests.conftest import DatabaseFactory

    factory = DatabaseFactory("sqlite", tmp_path_factory.mktemp("concurrency"))
    url = factory.new_url()
    yield _run_workers(url, per_worker=25)
    factory.drop(url)


def _check_appends(run: Run) -> None:
    assert [r.error for r in run.reports] == [None] * WORKERS
    acknowledged = [seq for r in run.reports for seq in r.acknowledged]
    total = WORKERS * run.per_worker
    assert len(acknowledged) == total
    # No two appends got the same place, and none is missing.
    assert sorted(acknowledged) == list(range(1, total + 1))
    for worker_report in run.reports:  # each worker's entries are in the order it wrote them
        assert worker_report.acknowledged == sorted(worker_report.acknowledged)

    database = Database.from_url(run.url)
    try:
        with database.read() as session:
            seqs = list(session.execute(select(ConsentEvent.seq).order_by(ConsentEvent.seq)))
            events = session.execute(select(ConsentEvent)).scalars().all()
            kept = {
                (s.subject_id, s.purpose_key): (s.status, s.permitted, s.since, s.last_seq)
                for s in session.execute(select(ConsentState)).scalars()
            }
            shared = session.execute(
                select(func.count())
                .select_from(SubjectProfile)
                .where(SubjectProfile.email.like("shared%"))
            ).scalar_one()
        with database.connect() as connection:
            report = verify_ledger(connection)
    finally:
        database.dispose()

    assert [seq for (seq,) in seqs] == list(range(1, total + 1))
    assert report.problem is None, report.problem
    assert (report.entries, report.head_seq) == (total, total)
    assert shared == SHARED_LEADS

    facts: dict[tuple[str, str], list[ConsentFact]] = {}
    for e in events:
        facts.setdefault((e.subject_id, e.purpose_key), []).append(
            ConsentFact(e.seq, e.action, e.confirmation_required, e.notice_sha256, e.occurred_at)
        )
    folded = {}
    for pair, pair_facts in facts.items():
        value = fold(pair_facts)
        assert value is not None
        folded[pair] = (value.status, value.permitted, value.since, value.last_seq)
    assert kept == folded


def _check_one_subject(run: Run) -> None:
    ids = {r.race_subject_id for r in run.reports}
    assert len(ids) == 1
    assert None not in ids
    database = Database.from_url(run.url)
    try:
        with database.read() as session:
            profiles = session.execute(
                select(SubjectProfile).where(SubjectProfile.email == RACE_EMAIL)
            ).scalars()
            assert [p.subject_id for p in profiles] == list(ids)
            # Every subject has its profile: no orphan left behind by a losing racer.
            subjects = session.execute(select(func.count()).select_from(Subject)).scalar_one()
            profiles_total = session.execute(
                select(func.count()).select_from(SubjectProfile)
            ).scalar_one()
            assert subjects == profiles_total
    finally:
        database.dispose()


@pytest.mark.postgres_only
@pytest.mark.slow
def test_concurrent_appends_on_postgresql(postgres_run: Run) -> None:
    _check_appends(postgres_run)


@pytest.mark.postgres_only
@pytest.mark.slow
def test_concurrent_get_or_create_makes_one_subject_on_postgresql(postgres_run: Run) -> None:
    _check_one_subject(postgres_run)


@pytest.mark.slow
def test_concurrent_appends_on_sqlite(sqlite_run: Run) -> None:
    _check_appends(sqlite_run)


@pytest.mark.slow
def test_concurrent_get_or_create_makes_one_subject_on_sqlite(sqlite_run: Run) -> None:
    _check_one_subject(sqlite_run)
