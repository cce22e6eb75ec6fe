"""Scenario 1: ledger appends per second through the real service, beside a bare insert.

zeroparty, on ``Database.write_connection()`` as ``POST /api/consent`` runs it:
``record_consent``, one entry per transaction with evidence, for a lead already known
and for a new lead each time (what a signup does); and ``ensure_subject`` +
``append_many`` with three entries per transaction (a form with three consent boxes). Baseline, same
run, same database and pragmas: a plain SQLAlchemy Core insert into a table shaped
like ``consent_events`` (statement built once), one row (or three) per transaction.
1 and 4 writers; 4 writers are 4 OS processes (``spawn``), each with its own engine.

Run alone: ``python -m bench.ledger_appends [--quick] [--no-postgres]``.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from bench.append_workers import WriterSpec, bare_metadata, writer
from bench.databases import (
    PostgresTemplate,
    SqliteTemplate,
    bare_engine,
    postgres_available,
    workdir,
)
from bench.report import (
    Options,
    Row,
    ScenarioResult,
    parse_options,
    per_second,
    percentile,
    ratio_text,
)

TARGET = 0.60
WRITER_COUNTS = (1, 4)
THREADS = 4
THREAD_TARGET = 1.5
FORM_BOXES = 3
JOIN_GRACE_S = 90.0


@dataclass(frozen=True, slots=True)
class Cell:
    """One measurement: transactions and entries per second, latency per transaction."""

    transactions_per_s: float
    entries_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_entry: float  # in the writer processes (SQLite's work included, not PG's)
    # PostgreSQL: what the writers' backends were doing, as shares of sampled backend
    # time (lock waits: on the ledger head; commit: WAL flush; client: waiting for the
    # writer process's next statement, in or between transactions).
    waits: dict[str, float] | None = None


def _get(channel: Any, processes: list[Any], timeout_s: float, kind: str) -> Any:
    """The next message from the writers; fails at once if one of them died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return channel.get(timeout=0.5)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):
                break
    raise RuntimeError(f"{kind} writers failed or stalled (see their stderr)")


WAIT_SAMPLE_S = 0.005
_WAITS = (
    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
    "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


def _wait_class(state: str | None, kind: str | None, event: str | None) -> str:
    if kind == "Lock":
        return "lock wait"
    if event in ("WALSync", "WALWrite") or kind == "IO":
        return "commit (WAL flush)"
    if kind == "Client" and state == "idle in transaction":
        return "client, in transaction"
    if kind == "Client":
        return "client, between transactions"
    return "working"


def _sample_waits(url: str, go: Any, stop: threading.Event, counts: Counter[str]) -> None:
    """Count what the backends of ``url``'s database are doing, every few milliseconds,
    from the common start signal until ``stop``."""
    parsed = make_url(url)
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        go.wait()
        while not stop.is_set():
            for state, kind, event in connection.execute(_WAITS, (parsed.database,)):
                counts[_wait_class(state, kind, event)] += 1
            time.sleep(WAIT_SAMPLE_S)


def measure(
    kind: str,
    url: str,
    writers: int,
    per_transaction: int,
    duration_s: float,
    *,
    threads: int = 1,
    group_commit: bool = True,
) -> Cell:
    """Run ``writers`` processes of ``kind`` (each with ``threads`` writer threads)
    against ``url`` for ``duration_s``."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go = context.Event()
    processes = [
        context.Process(
            target=writer,
            args=(
                WriterSpec(
                    kind, url, i, writers, per_transaction, duration_s, threads, group_commit
                ),
                ready,
                go,
                results,
            ),
            daemon=True,
        )
        for i in range(writers)
    ]
    for process in processes:
        process.start()
    outcomes = []
    waits: Counter[str] = Counter()
    stop = threading.Event()
    sampler = None
    if url.startswith("postgresql"):
        sampler = threading.Thread(target=_sample_waits, args=(url, go, stop, waits), daemon=True)
        sampler.start()
    try:
        for _ in processes:
            _get(ready, processes, JOIN_GRACE_S, kind)
        go.set()
        for _ in processes:
            outcomes.append(_get(results, processes, duration_s + JOIN_GRACE_S, kind))
    finally:
        stop.set()
        if sampler is not None:
            sampler.join(timeout=10)
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    latencies = [value for outcome in outcomes for value in outcome[3]]
    transactions = sum(count / elapsed for _, count, elapsed, _, _ in outcomes if elapsed > 0)
    committed = sum(outcome[1] for outcome in outcomes) * per_transaction
    cpu = sum(outcome[4] for outcome in outcomes)
    return Cell(
        transactions_per_s=transactions,
        entries_per_s=transactions * per_transaction,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        cpu_us_per_entry=cpu / committed * 1e6 if committed else 0.0,
        waits={k: v / sum(waits.values()) for k, v in waits.most_common()} if waits else None,
    )


def _with_bare_table(url: str) -> str:
    engine = bare_engine(url)
    try:
        bare_metadata.create_all(engine)
    finally:
        engine.dispose()
    return url


def _settled(url: str) -> str:
    """``url`` after a checkpoint, so no cell pays for the previous cell's writes.

    ``CREATE DATABASE … TEMPLATE`` and the cell before leave WAL behind; a checkpoint
    landing inside a short cell would otherwise decide its figure.
    """
    engine = bare_engine(url)
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "sqlite":
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            raw.driver_connection.autocommit = True
            raw.driver_connection.execute("CHECKPOINT")
    finally:
        raw.close()
        engine.dispose()
    return url


def _cell_text(cell: Cell) -> str:
    waits = ""
    if cell.waits:
        waits = "; backends: " + ", ".join(f"{k} {v:.0%}" for k, v in cell.waits.items())
    return (
        f"{per_second(cell.entries_per_s)} (p50 {cell.p50_ms:.1f} ms, p99 {cell.p99_ms:.1f} ms; "
        f"{cell.cpu_us_per_entry:,.0f} µs CPU/entry{waits})"
    )


def run_backend(backend: str, fresh: Callable[[], str], duration_s: float) -> list[Row]:
    """Every cell on one backend; each cell gets a fresh copy of the migrated database."""
    rows: list[Row] = []
    cases: Sequence[tuple[str, str, int]] = (
        ("record_consent for a known lead, 1 entry/transaction", "known_lead", 1),
        ("record_consent, 1 entry/transaction", "record_consent", 1),
        (f"append_many, {FORM_BOXES} entries/transaction", "append_many", FORM_BOXES),
    )
    for label, kind, per_transaction in cases:
        for writers in WRITER_COUNTS:
            bare_url = _settled(_with_bare_table(fresh()))
            bare = measure("bare", bare_url, writers, per_transaction, duration_s)
            ours = measure(kind, _settled(fresh()), writers, per_transaction, duration_s)
            ratio = ours.entries_per_s / bare.entries_per_s if bare.entries_per_s else 0.0
            rows.append(
                Row(
                    label=f"{backend}: {label}, {writers} writer(s), entries/s",
                    zeroparty=_cell_text(ours),
                    bare=_cell_text(bare),
                    ratio=ratio_text(ours.entries_per_s, bare.entries_per_s),
                    target=f">= {TARGET:.0%}",
                    met=ratio >= TARGET,
                )
            )
            print(f"  {rows[-1].label}: {rows[-1].zeroparty} vs {rows[-1].bare}", flush=True)
        if backend == "PostgreSQL" and kind != "append_many":
            rows += _thread_rows(backend, label, kind, fresh, duration_s)
    return rows


def _thread_rows(
    backend: str, label: str, kind: str, fresh: Callable[[], str], duration_s: float
) -> list[Row]:
    """PostgreSQL: one process, 1 and THREADS writer threads on one Database (as a server
    worker's requests), with the group commit and without; the bare side's threads each
    insert alone. The target is THREAD_TARGET times the 1-thread rate."""
    rows: list[Row] = []
    single = measure(kind, _settled(fresh()), 1, 1, duration_s)
    for group_commit in (True, False):
        bare_url = _settled(_with_bare_table(fresh()))
        bare = measure("bare", bare_url, 1, 1, duration_s, threads=THREADS)
        ours = measure(
            kind, _settled(fresh()), 1, 1, duration_s, threads=THREADS, group_commit=group_commit
        )
        scaling = ours.entries_per_s / single.entries_per_s if single.entries_per_s else 0.0
        how = "group commit" if group_commit else "group commit off"
        rows.append(
            Row(
                label=(f"{backend}: {label}, {THREADS} threads of one process ({how}), entries/s"),
                zeroparty=(
                    f"{_cell_text(ours)}; {scaling:.2f}x the 1-thread rate "
                    f"({per_second(single.entries_per_s)})"
                ),
                bare=_cell_text(bare),
                ratio=ratio_text(ours.entries_per_s, bare.entries_per_s),
                target=f">= {THREAD_TARGET:g}x the 1-thread rate",
                met=scaling >= THREAD_TARGET,
            )
        )
        print(f"  {rows[-1].label}: {rows[-1].zeroparty} vs {rows[-1].bare}", flush=True)
    return rows


def run(options: Options) -> ScenarioResult:
    duration_s = 2.0 if options.quick else 5.0
    result = ScenarioResult(
        title="Ledger appends",
        command="python -m bench.ledger_appends" + (" --quick" if options.quick else ""),
        what=(
            f"Entries committed per second for {duration_s:g} s per cell, after a warm-up. "
            "zeroparty: `record_consent` on `Database.write_connection()` for a lead already "
            "known (a preference change or an API call: purpose and notice checked, lead "
            "looked up, head locked, entry, evidence and projection written; grants and "
            "withdrawals alternate); `record_consent` on the same connection for a new lead "
            "each time (subject and profile created too, as `POST /api/consent` does), and "
            "`ensure_subject` + "
            f"`ledger.append_many` with {FORM_BOXES} entries (a three-box form). Bare: one "
            "Core `insert()` built once into a table shaped like `consent_events` (same "
            "columns and indexes), the same number of rows per transaction, same pragmas "
            "and `BEGIN IMMEDIATE`. Latencies are per transaction; CPU/entry is the writer "
            "processes' own CPU time (SQLite's work included, PostgreSQL server's not), "
            "which other load on the machine hardly changes."
        ),
    )
    with workdir() as directory:
        print("ledger appends: SQLite", flush=True)
        template = SqliteTemplate(directory)
        result.rows += run_backend("SQLite", template.fresh, duration_s)
    if postgres_available(options.postgres_url):
        assert options.postgres_url is not None
        print("ledger appends: PostgreSQL", flush=True)
        pg = PostgresTemplate(options.postgres_url)
        try:
            result.rows += run_backend("PostgreSQL", pg.fresh, duration_s)
        finally:
            pg.close()
    else:
        result.notes.append("PostgreSQL not measured: no server answered.")
    return result


def main() -> None:
    options = parse_options(__doc__ or "")
    print(run(options).markdown())


if __name__ == "__main__":
    main()
