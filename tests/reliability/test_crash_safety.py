"""SIGKILL at random moments under a load of submissions: nothing acknowledged is lost.

Client threads post JSON submissions of the demo ``contact`` form (two consent boxes,
one of them double opt-in, so every submission writes a lead, its profile, a submission,
answers, two ledger entries with evidence, a queued mail and an idempotency record) to
``zeroparty serve --workers 2``, and note every submission answered 2xx. Meanwhile the
whole server is killed with SIGKILL (no shutdown code runs) at random moments, several
times, and started again on the same port; between those, a single worker is killed
alone (uvicorn's supervisor replaces it while the other worker serves on).

Afterwards every acknowledged submission is in the database with everything it wrote;
nothing is half there (whatever committed without its answer reaching the client is
whole too); SQLite's ``PRAGMA integrity_check`` answers ok; ``zeroparty ledger verify``
exits 0.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
from sqlalchemy import text

from tests.reliability.live import (
    FormTokens,
    ServeProcess,
    assert_no_personal_data,
    client_address,
    contact_submission,
    sqlite_integrity,
    verify_ledger_cli,
)
from zeroparty.db import Database

# Whole-server kills (and as many single-worker kills between them); raise it for a
# longer run: ZEROPARTY_CRASH_KILLS=50 pytest tests/reliability/test_crash_safety.py
KILLS = int(os.environ.get("ZEROPARTY_CRASH_KILLS", "5"))
CLIENTS = 4
WORKERS = 2
# Between a start and the next SIGKILL: long enough for some load, random so kills land
# in every phase of a request (parsing, the write transaction, the commit, the answer).
RUN_BETWEEN_KILLS_S = (0.4, 2.0)


@dataclass
class Tally:
    acknowledged: dict[str, str] = field(default_factory=dict)  # email -> submission id
    statuses: dict[int, int] = field(default_factory=dict)
    connection_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _client(server: ServeProcess, tokens: FormTokens, n: int, stop: threading.Event,
            tally: Tally) -> None:  # fmt: skip
    sent = 0
    with httpx2.Client(base_url=server.url, timeout=15) as client:
        while not stop.is_set():
            sent += 1
            email = f"crash-{n}-{sent}-{uuid.uuid4().hex[:6]}@example.com"
            try:
                answer = client.post(
                    "/f/contact",
                    json=contact_submission(email, tokens.fresh()),
                    headers={"Accept": "application/json", **client_address(n * 100_000 + sent)},
                )
            except httpx2.HTTPError:
                with tally.lock:
                    tally.connection_errors += 1
                time.sleep(0.05)  # the server is down or restarting
                continue
            with tally.lock:
                tally.statuses[answer.status_code] = tally.statuses.get(answer.status_code, 0) + 1
                if 200 <= answer.status_code < 300:
                    tally.acknowledged[email] = answer.json()["submission"]


def _count(database: Database, sql: str) -> int:
    with database.read() as session:
        return int(session.execute(text(sql)).scalar_one())


def test_acknowledged_submissions_survive_sigkill(
    database_url: str, serve_process: Callable[..., ServeProcess]
) -> None:
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    server = serve_process(database_url, workers=WORKERS).start()
    tokens = FormTokens(server.url, "contact")
    tally = Tally()
    stop = threading.Event()
    clients = [
        threading.Thread(target=_client, args=(server, tokens, n, stop, tally))
        for n in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    worker_kills = 0
    try:
        for _ in range(KILLS):
            time.sleep(chance.uniform(*RUN_BETWEEN_KILLS_S))
            server.kill()
            server.start()
            # One worker dies alone: the supervisor replaces it, the other serves on.
            time.sleep(chance.uniform(*RUN_BETWEEN_KILLS_S))
            if server.kill_one_worker(chance) is not None:
                worker_kills += 1
        time.sleep(chance.uniform(*RUN_BETWEEN_KILLS_S))
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    server.stop()

    context = (
        f"seed {seed}, statuses {tally.statuses}, {tally.connection_errors} cut, "
        f"{worker_kills} single workers killed"
    )
    assert len(tally.acknowledged) >= 20, context
    assert worker_kills >= 1, context
    # Every answer that arrived was a success: a kill shows as a cut connection, never as
    # an error answer (and never as a 2xx for something that did not commit, checked below).
    assert set(tally.statuses) <= {201}, context

    database = Database.from_url(database_url)
    try:
        with database.read() as session:
            rows = session.execute(
                text(
                    "SELECT p.email, s.id FROM subject_profiles p "
                    "JOIN capture_submissions s ON s.subject_id = p.subject_id"
                )
            ).all()
            evidence = [
                json.loads(body)
                for (body,) in session.execute(text("SELECT body FROM consent_evidence"))
            ]
        stored: dict[str, str] = dict(rows)
        missing = {e: s for e, s in tally.acknowledged.items() if stored.get(e) != s}
        assert not missing, f"acknowledged but lost: {sorted(missing)[:5]} ({context})"

        # Nothing half there: every committed submission (acknowledged or not) wrote all
        # of its rows, and no row exists without its submission.
        submissions = _count(database, "SELECT count(*) FROM capture_submissions")
        assert submissions == len(stored) >= len(tally.acknowledged)
        for table in ("subjects", "subject_profiles", "mail_outbox", "capture_idempotency"):
            assert _count(database, f"SELECT count(*) FROM {table}") == submissions, table
        assert _count(database, "SELECT count(*) FROM consent_events") == 2 * submissions
        assert len(evidence) == 2 * submissions
        per_submission: dict[str, int] = {}
        for body in evidence:
            per_submission[body["submission"]] = per_submission.get(body["submission"], 0) + 1
        assert per_submission == dict.fromkeys(stored.values(), 2)
        assert (
            _count(
                database,
                "SELECT count(*) FROM consent_state WHERE purpose_key IN "
                "('newsletter', 'profiling')",
            )
            == 2 * submissions
        )
    finally:
        database.dispose()

    sqlite_integrity(database_url)
    verify_ledger_cli(server.env)
    # The server logs what went wrong, never whom it concerned.
    assert_no_personal_data(server.logs())
