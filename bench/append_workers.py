"""Writer processes for :mod:`bench.ledger_appends` (importable, so ``spawn`` finds them).

Each writer builds its own engine, warms up, says it is ready, waits for the common
start signal, then commits transactions for a fixed time and reports how many it
committed and how long each took.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    insert,
    select,
)

from bench.databases import bare_engine
from consent_ledger import ledger
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.models import NoticeVersion
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.subjects import ensure_subject
from zeroparty.db import Database, make_engine

WARMUP_TRANSACTIONS = 30
START_TIMEOUT_S = 120.0

# What a signup form keeps as evidence, already minimised (clean_evidence's output).
EVIDENCE: dict[str, str | int | bool | None] = {
    "ip": "203.0.113.0/24",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) zeroparty-bench",
    "page": "https://northwind.example/signup",
    "form": "signup-v3",
}
# The purposes a three-box signup form asks about (all in the demo site.toml).
FORM_PURPOSES = ("newsletter", "product_updates", "profiling")

bare_metadata = MetaData()
# Shaped like consent_events: same columns, types, primary key, unique hash and
# composite index; no foreign keys, no triggers, no ledger logic.
bare_events = Table(
    "bare_events",
    bare_metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("subject_id", String(32), nullable=False),
    Column("purpose_key", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("confirmation_required", Boolean, nullable=False),
    Column("notice_sha256", String(64)),
    Column("source", String(32), nullable=False),
    Column("source_ref", String(200)),
    Column("jurisdiction", String(16)),
    Column("method", String(32), nullable=False),
    Column("locale", String(16)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("evidence_sha256", String(64)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_bare_events_subject_purpose_time", "subject_id", "purpose_key", "occurred_at", "seq"),
)
_INSERT_BARE = insert(bare_events)  # built once, like the PERF-NOTES baseline


@dataclass(frozen=True, slots=True)
class WriterSpec:
    kind: str  # "bare", "record_consent" or "append_many"
    url: str
    index: int
    writers: int
    entries_per_transaction: int
    duration_s: float
    threads: int = 1  # writer threads in this process, sharing one Database
    group_commit: bool = True  # zeroparty's group commit (PostgreSQL), or each thread alone

    def thread(self, t: int) -> WriterSpec:
        """The spec of this process's thread ``t``: its own leads and bare rows."""
        return replace(
            self, index=self.index * self.threads + t, writers=self.writers * self.threads
        )


_DATABASES: dict[tuple[str, bool], Database] = {}


def _database(spec: WriterSpec) -> Database:
    """One Database per process (and group-commit setting): its threads share it, as a
    server's requests do."""
    key = (spec.url, spec.group_commit)
    if key not in _DATABASES:
        _DATABASES[key] = Database(make_engine(spec.url), group_commit=spec.group_commit)
    return _DATABASES[key]


def _bare_transaction(spec: WriterSpec) -> Callable[[int], None]:
    engine = bare_engine(spec.url)
    dialect = engine.dialect.name

    def run(n: int) -> None:
        now = datetime.now(UTC)
        if dialect == "sqlite":
            now = now.replace(tzinfo=None)
        rows: list[dict[str, Any]] = []
        for k in range(spec.entries_per_transaction):
            seq = ((n * spec.entries_per_transaction + k) * spec.writers) + spec.index + 1
            digest = hashlib.sha256(f"{os.getpid()}:{seq}".encode()).hexdigest()
            rows.append(
                {
                    "seq": seq,
                    "subject_id": digest[:32],
                    "purpose_key": FORM_PURPOSES[k % len(FORM_PURPOSES)],
                    "action": "granted",
                    "confirmation_required": False,
                    "notice_sha256": digest,
                    "source": "form",
                    "source_ref": "bench-form",
                    "jurisdiction": "DE",
                    "method": "checkbox",
                    "locale": "en",
                    "occurred_at": now,
                    "recorded_at": now,
                    "evidence_sha256": digest,
                    "prev_hash": digest,
                    "hash": digest,
                }
            )
        with engine.begin() as connection:
            connection.execute(_INSERT_BARE, rows)

    return run


def _notices(database: Database) -> dict[str, str]:
    with database.read() as session:
        stmt = select(NoticeVersion.purpose_key, NoticeVersion.sha256).where(
            NoticeVersion.locale == "en"
        )
        return {str(k): str(v) for k, v in session.execute(stmt)}


def _email(spec: WriterSpec, n: int) -> str:
    return f"lead-{spec.index}-{os.getpid()}-{n}@bench.example"


def _record_consent_transaction(spec: WriterSpec) -> Callable[[int], None]:
    database = _database(spec)
    notice = _notices(database)["profiling"]

    def run(n: int) -> None:
        record = ConsentRecord(
            email=_email(spec, n),
            purpose="profiling",
            action=ConsentAction.GRANTED,
            source=ConsentSource.FORM,
            method=ConsentMethod.CHECKBOX,
            notice_sha256=notice,
            source_ref="bench-form",
            jurisdiction="DE",
            locale="en",
            evidence=EVIDENCE,
        )
        with database.write_connection() as connection:
            record_consent(connection, record)

    return run


def _append_many_transaction(spec: WriterSpec) -> Callable[[int], None]:
    database = _database(spec)
    notices = _notices(database)
    purposes = [FORM_PURPOSES[k % len(FORM_PURPOSES)] for k in range(spec.entries_per_transaction)]

    def run(n: int) -> None:
        with database.write_connection() as connection:
            subject = ensure_subject(connection, _email(spec, n), locale="en", jurisdiction="DE")
            occurred_at = datetime.now(UTC)
            drafts = [
                ledger.EntryDraft(
                    subject_id=subject.id,
                    purpose=purpose,
                    action=ConsentAction.GRANTED.value,
                    source=ConsentSource.FORM.value,
                    method=ConsentMethod.CHECKBOX.value,
                    occurred_at=occurred_at,
                    notice_sha256=notices[purpose],
                    confirmation_required=purpose != "profiling",
                    source_ref="bench-form",
                    jurisdiction="DE",
                    locale="en",
                    evidence=EVIDENCE,
                )
                for purpose in purposes
            ]
            ledger.append_many(connection, drafts)

    return run


KNOWN_LEADS = 500


def _known_lead_transaction(spec: WriterSpec) -> Callable[[int], None]:
    """``record_consent`` for a lead already known, on ``Database.write_connection()``:
    what a preference change, an unsubscribe or an API call about an existing lead
    costs. Each lead alternates grant and withdrawal of ``profiling``."""
    database = _database(spec)
    notice = _notices(database)["profiling"]
    emails = [f"known-{spec.index}-{os.getpid()}-{k}@bench.example" for k in range(KNOWN_LEADS)]
    with database.write_connection() as connection:
        for email in emails:
            ensure_subject(connection, email, locale="en", jurisdiction="DE")

    def run(n: int) -> None:
        granted = (n // KNOWN_LEADS) % 2 == 0
        record = ConsentRecord(
            email=emails[n % KNOWN_LEADS],
            purpose="profiling",
            action=ConsentAction.GRANTED if granted else ConsentAction.WITHDRAWN,
            source=ConsentSource.PREFERENCE_CENTER,
            method=ConsentMethod.CHECKBOX,
            notice_sha256=notice if granted else None,
            source_ref="bench-preferences",
            evidence=EVIDENCE,
        )
        with database.write_connection() as connection:
            record_consent(connection, record)

    return run


TRANSACTIONS: dict[str, Callable[[WriterSpec], Callable[[int], None]]] = {
    "bare": _bare_transaction,
    "record_consent": _record_consent_transaction,
    "append_many": _append_many_transaction,
    "known_lead": _known_lead_transaction,
}


def writer(spec: WriterSpec, ready: Any, go: Any, results: Any) -> None:
    """Process entry point: report ``(index, transactions, elapsed_s, latencies_s, cpu_s)``.

    ``cpu_s`` is this process's CPU time during the measured window: unlike the rate, it
    hardly moves when other work shares the machine.
    """
    transactions = [TRANSACTIONS[spec.kind](spec.thread(t)) for t in range(spec.threads)]
    for transaction in transactions:
        for n in range(WARMUP_TRANSACTIONS):
            transaction(n)
    ready.put(spec.index)
    if not go.wait(START_TIMEOUT_S):
        results.put((spec.index, 0, 0.0, [], 0.0))
        return
    latencies: list[list[float]] = [[] for _ in transactions]
    cpu_start = time.process_time()
    start = time.perf_counter()
    deadline = start + spec.duration_s
    ends = [start] * len(transactions)

    def loop(t: int) -> None:
        n, now = WARMUP_TRANSACTIONS, time.perf_counter()
        with contextlib.ExitStack() as stack:
            for database in _DATABASES.values():  # as a request's work in a server
                stack.enter_context(database.sharing())
            while now < deadline:
                transactions[t](n)
                n += 1
                after = time.perf_counter()
                latencies[t].append(after - now)
                now = after
        ends[t] = now

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(len(transactions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu_start
    every = [value for values in latencies for value in values]
    results.put((spec.index, len(every), max(ends) - start, every, cpu))
