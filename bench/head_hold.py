"""Where a PostgreSQL append holds the ledger's head: a probe behind bench/analysis.md.

``python -m bench.head_hold [--seconds S] [--writers 1,4]``

Runs ``record_consent`` for known leads (``bench.append_workers``' known-lead writer, one
entry a transaction on ``Database.write_connection()``) in 1 and then 4 writer processes
on a fresh migrated database, and times, per transaction, the parts after the append
statement (which takes the head's row lock and writes the entry): from its return to
COMMIT being sent (the client), and COMMIT itself (the WAL flush), during both of which
the head stays locked. ``hold x rate`` is the share of the time some writer held the head
after its append statement; near 100% the head is the bottleneck.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from typing import Any

from bench import append_workers
from bench.databases import PostgresTemplate
from bench.report import DEFAULT_POSTGRES_URL


def _writer(url: str, index: int, writers: int, seconds: float, results: Any) -> None:
    from sqlalchemy.engine import default

    from consent_ledger import ledger

    spec = append_workers.WriterSpec("known_lead", url, index, writers, 1, seconds)
    run = append_workers._known_lead_transaction(spec)
    marks: dict[str, float] = {}
    append, commit = ledger._append_postgres, default.DefaultDialect.do_commit

    def timed_append(*args: Any, **kwargs: Any) -> Any:
        entries = append(*args, **kwargs)
        marks["appended"] = time.perf_counter()
        return entries

    def timed_commit(self: Any, dbapi_connection: Any) -> None:
        marks["commit"] = time.perf_counter()
        commit(self, dbapi_connection)

    ledger._append_postgres = timed_append  # type: ignore[assignment]
    default.DefaultDialect.do_commit = timed_commit  # type: ignore[method-assign]
    for n in range(50):  # warm-up
        run(n)
    client: list[float] = []
    flush: list[float] = []
    n, end = 50, time.perf_counter() + seconds
    while time.perf_counter() < end:
        run(n)
        done = time.perf_counter()
        client.append(marks["commit"] - marks["appended"])
        flush.append(done - marks["commit"])
        n += 1
    results.put((len(client), statistics.mean(client), statistics.mean(flush)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", default="1,4")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    template = PostgresTemplate(args.postgres_url)
    try:
        for writers in [int(w) for w in args.writers.split(",")]:
            url = template.fresh()
            results: Any = multiprocessing.Queue()
            processes = [
                multiprocessing.Process(
                    target=_writer, args=(url, i, writers, args.seconds, results)
                )
                for i in range(writers)
            ]
            for process in processes:
                process.start()
            measured = [results.get() for _ in processes]
            for process in processes:
                process.join()
            count = sum(m[0] for m in measured)
            client = statistics.mean(m[1] for m in measured)
            flush = statistics.mean(m[2] for m in measured)
            rate = count / args.seconds
            print(
                f"{writers} writer(s): {rate:,.0f} entries/s; after the append statement, "
                f"client {client * 1e6:,.0f} us, COMMIT {flush * 1e6:,.0f} us; "
                f"hold x rate {rate * (client + flush):.0%}"
            )
    finally:
        template.close()


if __name__ == "__main__":
    main()
