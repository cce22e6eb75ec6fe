"""Ledger health: verification runs started from the console, with their progress.

A run is a row in ``console_verification_runs``; a thread of the process that started
it runs :func:`consent_ledger.audit.audit_ledger` (the very check ``zeroparty ledger
verify`` runs, checkpoints included, so both give the same outcome; the console never
skips checkpoints) and writes progress into the row,
so any host's page can show it (the page refreshes itself while a run is going). A run
whose row has not moved for :data:`STALE_AFTER` is shown as abandoned (its process
ended), and a new one may start.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consent_ledger.audit import audit_ledger
from console.models import VerificationRun
from zeroparty.db import Database, utcnow
from zeroparty.errors import Conflict
from zeroparty.settings import Settings

log = logging.getLogger("zeroparty.console.health")

STALE_AFTER = timedelta(minutes=10)
RUNNING, OK, FAILED, ERROR = "running", "ok", "failed", "error"


def last_run(session: Session) -> VerificationRun | None:
    return session.scalar(select(VerificationRun).order_by(VerificationRun.id.desc()).limit(1))


def last_finished(session: Session) -> VerificationRun | None:
    return session.scalar(
        select(VerificationRun)
        .where(VerificationRun.status != RUNNING)
        .order_by(VerificationRun.id.desc())
        .limit(1)
    )


def is_stale(run: VerificationRun) -> bool:
    return run.status == RUNNING and utcnow() - run.updated_at > STALE_AFTER


def start_run(session: Session, user_id: int) -> VerificationRun:
    """A new run row; refused while another run is going."""
    current = last_run(session)
    if current is not None and current.status == RUNNING and not is_stale(current):
        raise Conflict("a verification is running already; wait for it to finish")
    now = utcnow()
    run = VerificationRun(
        started_at=now,
        started_by=user_id,
        updated_at=now,
        status=RUNNING,
        phase="chain",
        done=0,
        total=0,
    )
    session.add(run)
    session.flush()
    return run


def _update(database: Database, run_id: int, **values: object) -> None:
    with database.write() as session:
        session.execute(
            update(VerificationRun)
            .where(VerificationRun.id == run_id)
            .values(updated_at=utcnow(), **values)
        )


def run_verification(database: Database, settings: Settings, run_id: int) -> None:
    """Verify the whole ledger, recording progress and the outcome in the run's row."""

    def progress(phase: str, done: int, total: int) -> None:
        _update(database, run_id, phase=phase, done=done, total=total)

    try:
        outcome = audit_ledger(database, settings, progress)
    except Exception as exc:
        log.exception("ledger verification from the console failed to run")
        _update(database, run_id, status=ERROR, finished_at=utcnow(), problem=str(exc)[:2000])
        return
    report = outcome.report
    _update(
        database,
        run_id,
        status=OK if outcome.ok else FAILED,
        finished_at=utcnow(),
        entries=report.entries,
        done=report.entries,
        total=report.head_seq,
        phase="done",
        problem=None if outcome.ok else outcome.outcome()[:2000],
    )


def start_in_background(database: Database, settings: Settings, run_id: int) -> threading.Thread:
    thread = threading.Thread(
        target=run_verification,
        args=(database, settings, run_id),
        name=f"zeroparty-console-verify-{run_id}",
        daemon=True,
    )
    thread.start()
    return thread


def get_run(session: Session, run_id: int) -> VerificationRun | None:
    return session.get(VerificationRun, run_id)


def recent_runs(session: Session, limit: int = 10) -> list[VerificationRun]:
    return list(
        session.scalars(select(VerificationRun).order_by(VerificationRun.id.desc()).limit(limit))
    )
