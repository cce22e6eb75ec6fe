"""Ledger health: a verification started from the console runs in the background, shows
progress, and its result is kept; a tampered ledger shows as failed."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import text
from starlette.testclient import TestClient

from console.models import VerificationRun
from tests.console.conftest import csrf_of
from zeroparty.db import Database


def _wait_finished(database: Database, run_id: int) -> VerificationRun:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with database.read() as session:
            run = session.get_one(VerificationRun, run_id)
            if run.status != "running":
                return run
        time.sleep(0.2)
    raise AssertionError("verification did not finish")


def test_verify_from_the_console(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    client = as_role("compliance")
    assert "has not been verified from the console yet" in client.get("/console/health").text
    answer = client.post(
        "/console/health/verify", data={"csrf": csrf_of(client)}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/health?run=1"
    run = _wait_finished(database, 1)
    assert (run.status, run.entries, run.problem) == ("ok", 3, None)
    page = client.get("/console/health?run=1").text
    assert "✔ Intact: 3 entries verified" in page
    assert 'http-equiv="refresh"' not in page


def test_running_page_refreshes_itself(
    as_role: Callable[[str], TestClient], database: Database
) -> None:
    from console import health

    with database.write() as session:
        health.start_run(session, 1)
    page = as_role("admin").get("/console/health").text
    assert 'http-equiv="refresh"' in page
    assert "<progress" in page
    # A second run is refused while one is going.
    client = as_role("admin")
    assert client.post("/console/health/verify", data={"csrf": csrf_of(client)}).status_code == 409


def test_tampered_ledger_shows_failed(
    as_role: Callable[[str], TestClient], lead: str, database: Database
) -> None:
    with database.write() as session:
        if database.dialect == "sqlite":
            session.execute(text("DROP TRIGGER consent_events_no_update"))
        else:
            session.execute(
                text("ALTER TABLE consent_events DISABLE TRIGGER consent_events_no_change")
            )
        session.execute(text("UPDATE consent_events SET method = 'verbal' WHERE seq = 2"))
    client = as_role("admin")
    client.post("/console/health/verify", data={"csrf": csrf_of(client)})
    run = _wait_finished(database, 1)
    assert run.status == "failed"
    assert run.problem is not None
    assert "entry 2" in run.problem
    page = client.get("/console/health").text
    assert "✘ Verification failed" in page
    assert "entry 2" in page
