"""Scenario: a burst of withdrawals reaches a subscribed receiver (issue 15).

N leads hold a live ``profiling`` grant; an endpoint is subscribed to
``consent.withdrawn``; then all N withdraw, in write transactions of 500 (a burst, as
an import or a mass unsubscribe makes it). The receiver is a real HTTP server on
loopback that answers 500 to the first attempt of every third message (by
``webhook-id``) and 204 otherwise, and checks every signature as a receiver does
(Standard Webhooks, independent HMAC over the raw body). ``consent_sync.subscriptions``
then fans the ledger out and delivers, round after round, each round's clock moved past
the backoff, until nothing is due.

Reported: withdrawals recorded, deliveries made, first attempts refused, messages the
receiver took (2xx) and how many distinct ids, lost (a withdrawal never taken) and
duplicated (an id taken twice), bad signatures, and the wall time of the fan-out and of
the delivery (deliveries per second). The target is correctness: nothing lost, each
taken once.

Run alone: ``python -m bench.bench_subscriptions [--quick] [--postgres]``
(``--quick``: 1,000 withdrawals instead of 10,000; ``--postgres``: on a scratch
PostgreSQL database instead of a SQLite file).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import logging
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

from bench.databases import (
    create_postgres,
    drop_postgres,
    postgres_available,
    postgres_url,
    prepare,
    sqlite_url,
    workdir,
)
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentChange
from consent_sync import subscriptions
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings
from zeroparty.wiring import build_ledger

FULL = 10_000
QUICK = 1_000
CHUNK = 500
PURPOSE = "profiling"  # no double opt-in: a grant is live at once
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class Receiver:
    """Fails the first attempt of every third message; checks every signature."""

    def __init__(self) -> None:
        self.key = b""  # set once the subscription's secret is known
        self.attempts: Counter[str] = Counter()
        self.taken: Counter[str] = Counter()
        self.seqs: set[int] = set()
        self.refused_first = 0
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = receiver.answer(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        lower = {k.lower(): v for k, v in headers.items()}
        msg_id, stamp = lower["webhook-id"], lower["webhook-timestamp"]
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = (
            "v1," + base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest()).decode()
        )
        with self.lock:
            if not any(
                hmac.compare_digest(expected, s) for s in lower["webhook-signature"].split()
            ):
                self.bad_signatures += 1
                return 401
            self.attempts[msg_id] += 1
            third = int(hashlib.sha256(msg_id.encode()).hexdigest(), 16) % 3 == 0
            if third and self.attempts[msg_id] == 1:
                self.refused_first += 1
                return 500
            self.taken[msg_id] += 1
            self.seqs.add(orjson.loads(body)["data"]["seq"])
            return 204

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _burst(database: Database, count: int) -> list[int]:
    """``count`` leads granted, then all withdrawn; the withdrawals' seqs."""
    ledger = build_ledger(database)
    emails = [f"lead{n:06d}@bench.example" for n in range(count)]
    with database.read() as session:
        notice = ledger.latest_notices(session, [PURPOSE], "en")[PURPOSE][1]
    refs = {}
    for start in range(0, count, CHUNK):
        chunk = emails[start : start + CHUNK]
        with database.write() as session:
            made = ledger.create_leads_if_new(session, dict.fromkeys(chunk, (None, "en", None)))
            refs.update(made)
            ledger.record(session, [
                ConsentChange(made[e].id, PURPOSE, ConsentAction.GRANTED, ConsentSource.FORM,
                              ConsentMethod.CHECKBOX, notice_sha256=notice) for e in chunk
            ])  # fmt: skip
    seqs: list[int] = []
    for start in range(0, count, CHUNK):
        chunk = emails[start : start + CHUNK]
        with database.write() as session:
            entries = ledger.record(session, [
                ConsentChange(refs[e].id, PURPOSE, ConsentAction.WITHDRAWN, ConsentSource.API,
                              ConsentMethod.ELECTRONIC) for e in chunk
            ])  # fmt: skip
            seqs.extend(e.seq for e in entries)
    return seqs


def run(url: str, count: int) -> dict[str, float]:
    prepare(url)
    database = Database.from_url(url)
    settings = replace(
        Settings(database_url=url), webhook_max_attempts=8, webhook_timeout_seconds=5.0
    )
    try:
        receiver = Receiver()
        try:
            with database.write() as session:
                made = subscriptions.add_subscription(
                    session, receiver.url, "consent.withdrawn", created_by="bench"
                )
            receiver.key = base64.b64decode(made.secret.removeprefix("whsec_"))
            withdrawals = _burst(database, count)
            started = time.perf_counter()
            made_count = subscriptions.fan_out(database)
            fanned = time.perf_counter() - started
            started = time.perf_counter()
            now = utcnow()
            rounds = 0
            while True:
                rounds += 1
                report = subscriptions.outbox.dispatch(
                    database, subscriptions.subscription_outbox(settings), limit=count * 2, now=now
                )
                if report.delivered == report.retried == report.dead_lettered == 0:
                    break
                now += timedelta(hours=1)  # past every backoff
            delivered = time.perf_counter() - started
            lost = len(set(withdrawals) - receiver.seqs)
            duplicated = sum(1 for n in receiver.taken.values() if n > 1)
            return {
                "withdrawals": len(withdrawals),
                "deliveries_made": made_count,
                "first_attempts_refused": receiver.refused_first,
                "taken": sum(receiver.taken.values()),
                "distinct_taken": len(receiver.taken),
                "lost": lost,
                "duplicated": duplicated,
                "bad_signatures": receiver.bad_signatures,
                "rounds": rounds,
                "fan_out_s": round(fanned, 2),
                "delivery_s": round(delivered, 2),
                "deliveries_per_s": round(sum(receiver.taken.values()) / delivered, 1),
            }
        finally:
            receiver.close()
    finally:
        database.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK} withdrawals, not {FULL}")
    parser.add_argument("--postgres", action="store_true", help="on a scratch PostgreSQL database")
    options = parser.parse_args(argv)
    count = QUICK if options.quick else FULL
    # A third of first attempts fail on purpose: their warnings are the expected noise.
    logging.getLogger("zeroparty.webhooks").setLevel(logging.ERROR)
    if options.postgres:
        if not postgres_available(PG_ADMIN):
            print("no PostgreSQL server at 127.0.0.1:5432", file=sys.stderr)
            return 2
        name = create_postgres(PG_ADMIN)
        try:
            result = run(postgres_url(PG_ADMIN, name), count)
        finally:
            drop_postgres(PG_ADMIN, name)
        backend = "PostgreSQL"
    else:
        with workdir() as folder:
            result = run(sqlite_url(Path(folder) / "bench.db"), count)
        backend = "SQLite"
    print(f"subscriptions burst on {backend}:")
    for key, value in result.items():
        print(f"  {key}: {value}")
    ok = result["lost"] == 0 and result["duplicated"] == 0 and result["bad_signatures"] == 0
    print("nothing lost, each delivered once" if ok else "FAILED: see lost/duplicated above")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
