"""Scenario: the compliance console over a million ledger entries.

1. A lead's timeline page (``GET /console/leads/{id}``: the lead's entries with notice
   texts and evidence, the state per purpose now, the data held, and the staff-log
   write) for random leads among 1,000,000 entries: latency percentiles. Bare: the
   same lead's entries with their evidence in one SQL query.
2. A filtered CSV export of all 1,000,000 entries (``GET /console/ledger/export``, with
   a date filter every entry matches, so the filter is applied to each row), streamed
   to nowhere, in a child process: rows per second and peak memory. Bare: the same
   rows by one SQL query written with ``csv.writer``, measured the same way.

Both go through the real app in-process (Starlette's test client: no network, no
server), on a copy of the cached synthetic SQLite ledger (:mod:`bench.synthetic_ledger`)
with a staff account added (PostgreSQL: a ledger generated for the run, then dropped).

Run alone: ``python -m bench.bench_console [--quick] [--no-postgres]`` (``--quick``:
100,000 entries); it rewrites its own section of ``BENCHMARKS.md`` and leaves the
others as they are.
"""

from __future__ import annotations

import csv
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.databases import (
    create_postgres,
    drop_postgres,
    postgres_available,
    postgres_url,
    sqlite_url,
)
from bench.measured_process import ProcessRun, run_measured
from bench.report import Options, Row, ScenarioResult, parse_options, percentile
from bench.synthetic_ledger import cached_sqlite, generate_postgres

FULL_ENTRIES = 1_000_000
QUICK_ENTRIES = 100_000
TIMELINE_REQUESTS = 300
QUICK_TIMELINE_REQUESTS = 100
STAFF_EMAIL = "bench@staff.example"
PASSWORD = "bench password long enough"  # noqa: S105  (a throwaway bench account)
TIMEOUT_S = 1200.0
SECTION = "## Compliance console"
TARGET_TIMELINE_P95_MS = 100.0
TARGET_EXPORT_MB = 200.0


class _Null:
    def write(self, _text: str) -> int:
        return 0


def _login_token(html: str) -> str:
    match = re.search(r'name="login" value="([^"]+)"', html)
    if match is None:
        raise RuntimeError("no login form token on the login page")
    return match.group(1)


def _client(url: str) -> Any:
    from starlette.testclient import TestClient

    from zeroparty.app import create_app
    from zeroparty.db import Database
    from zeroparty.settings import Settings

    settings = Settings(
        database_url=url,
        secret_keys=("bench-secret-key-for-the-console",),
        base_url="http://testserver",
        checkpoint_key_file=Path(tempfile.gettempdir()) / "zeroparty-bench-console.key",
    )
    client = TestClient(create_app(settings, Database.from_url(url)))
    client.__enter__()
    page = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"login": _login_token(page.text), "email": STAFF_EMAIL, "password": PASSWORD},
        follow_redirects=False,
    )
    if answer.status_code != 303:
        raise RuntimeError(f"bench login failed: {answer.status_code} {answer.text[:300]}")
    return client


def _add_staff(url: str) -> None:
    from console import accounts
    from zeroparty.db import Database

    database = Database.from_url(url)
    try:
        with database.write() as session:
            user = accounts.create_user(session, STAFF_EMAIL, "compliance")
            user_id, generation = user.id, user.session_generation
        with database.write() as session:
            accounts.set_password(session, user_id, generation, PASSWORD)
    finally:
        database.dispose()


def _subject_ids(url: str, count: int) -> list[str]:
    from sqlalchemy import select

    from consent_ledger.models import Subject
    from zeroparty.db import Database

    database = Database.from_url(url)
    try:
        with database.read() as session:
            ids = list(session.scalars(select(Subject.id)))
    finally:
        database.dispose()
    return random.Random(20261125).sample(ids, min(count, len(ids)))


def _bare_timeline(url: str, subject_id: str) -> int:
    from sqlalchemy import text

    from zeroparty.db import Database

    database = _bare_timeline.__dict__.setdefault("db", Database.from_url(url))
    with database.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT e.*, v.body FROM consent_events e LEFT JOIN consent_evidence v "
                "ON v.seq = e.seq WHERE e.subject_id = :sid ORDER BY e.seq"
            ),
            {"sid": subject_id},
        ).all()
    return len(rows)


def timeline_latency(url: str, requests: int) -> tuple[list[float], list[float]]:
    client = _client(url)
    ours: list[float] = []
    bare: list[float] = []
    subjects = _subject_ids(url, requests + 20)
    for warm in subjects[:20]:
        client.get(f"/console/leads/{warm}")
        _bare_timeline(url, warm)
    for subject_id in subjects[20:]:
        started = time.perf_counter()
        answer = client.get(f"/console/leads/{subject_id}")
        ours.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200 or 'ol class="timeline"' not in answer.text:
            raise RuntimeError(f"timeline failed: {answer.status_code}")
        started = time.perf_counter()
        _bare_timeline(url, subject_id)
        bare.append((time.perf_counter() - started) * 1000)
    client.__exit__(None, None, None)
    return ours, bare


def export_child(url: str) -> None:
    """In a child process: stream the filtered export, count rows, print the count."""
    client = _client(url)
    rows = 0
    params = {"format": "csv", "from": "2000-01-01", "to": "2099-12-31"}
    with client.stream("GET", "/console/ledger/export", params=params) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"export failed: {answer.status_code}")
        for chunk in answer.iter_bytes():
            rows += chunk.count(b"\n")
    client.__exit__(None, None, None)
    print(rows - 1)  # the header line


def bare_export_child(url: str) -> None:
    from sqlalchemy import text

    from zeroparty.db import Database

    database = Database.from_url(url)
    writer = csv.writer(_Null())
    rows = 0
    with database.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=2000).execute(
            text(
                "SELECT e.*, v.body FROM consent_events e LEFT JOIN consent_evidence v "
                "ON v.seq = e.seq WHERE e.occurred_at >= '2000-01-01' ORDER BY e.seq"
            )
        )
        for row in result:
            writer.writerow(row)
            rows += 1
    print(rows)


def _measure_export(url: str, mode: str) -> tuple[ProcessRun, int]:
    run = run_measured(
        [sys.executable, "-m", "bench.bench_console", mode, url], timeout_s=TIMEOUT_S
    )
    if run.returncode != 0:
        raise RuntimeError(f"{mode} failed: {run.stderr[-2000:]}")
    return run, int(run.stdout.strip().splitlines()[-1])


def measure(backend: str, url: str, entries: int, requests: int) -> list[Row]:
    """Timeline latency and the filtered export on the ledger at ``url``."""
    ours, bare = timeline_latency(url, requests)
    p50, p95, p99 = (percentile(ours, f) for f in (0.5, 0.95, 0.99))
    b50, b95 = percentile(bare, 0.5), percentile(bare, 0.95)
    print(f"  timeline p50 {p50:.1f} ms p95 {p95:.1f} ms (bare p50 {b50:.2f} ms)", flush=True)
    export_run, exported = _measure_export(url, "export")
    bare_run, bare_rows = _measure_export(url, "bare-export")
    if exported != entries or bare_rows != entries:
        raise RuntimeError(f"exported {exported:,} / bare {bare_rows:,} of {entries:,}")
    rate, bare_rate = exported / export_run.seconds, bare_rows / bare_run.seconds
    print(
        f"  export {rate:,.0f} rows/s {export_run.tree_peak_mb:.0f} MB; "
        f"bare {bare_rate:,.0f} rows/s {bare_run.tree_peak_mb:.0f} MB",
        flush=True,
    )
    return [
        Row(
            label=f"{backend}: timeline page, one lead among {entries:,} entries",
            zeroparty=f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms",
            bare=f"p50 {b50:.2f} ms, p95 {b95:.2f} ms",
            ratio=f"{p50 / b50:.0f}x at p50" if b50 else "—",
            target=f"p95 < {TARGET_TIMELINE_P95_MS:g} ms",
            met=p95 < TARGET_TIMELINE_P95_MS,
        ),
        Row(
            label=f"{backend}: filtered CSV export of {entries:,} entries, rows per second",
            zeroparty=f"{rate:,.0f} rows/s ({export_run.seconds:.1f} s wall)",
            bare=f"{bare_rate:,.0f} rows/s ({bare_run.seconds:.1f} s wall)",
            ratio=f"{bare_rate / rate:.1f}x slower than bare",
            target="informative",
            met=None,
        ),
        Row(
            label=f"{backend}: filtered CSV export of {entries:,} entries, peak memory",
            zeroparty=f"{export_run.tree_peak_mb:.0f} MB",
            bare=f"{bare_run.tree_peak_mb:.0f} MB",
            ratio=f"{export_run.tree_peak_mb / bare_run.tree_peak_mb:.1f}x",
            target=f"< {TARGET_EXPORT_MB:g} MB (constant in the ledger's size)",
            met=export_run.tree_peak_mb < TARGET_EXPORT_MB,
        ),
    ]


def run(options: Options) -> ScenarioResult:
    entries = QUICK_ENTRIES if options.quick else FULL_ENTRIES
    requests = QUICK_TIMELINE_REQUESTS if options.quick else TIMELINE_REQUESTS
    result = ScenarioResult(
        title="Compliance console",
        command="python -m bench.bench_console" + (" --quick" if options.quick else ""),
        what=(
            f"Over a synthetic ledger of {entries:,} entries (each with evidence), on SQLite "
            "and PostgreSQL: "
            f"the timeline page of {requests} random leads, one after another, through the "
            "app in-process (Starlette test client, logged in as a compliance user: "
            "timeline with notice texts and evidence, state per purpose, data held, "
            "staff-log write), beside the bare SQL query of the lead's entries and "
            "evidence; and a CSV export of the whole ledger through a date filter every "
            "entry matches, streamed by the app in a child process, beside one SQL query "
            "written with `csv.writer` in a child process. Peak memory: the child's "
            "process tree."
        ),
    )
    print(f"console: SQLite, {entries:,} entries", flush=True)
    ledger = cached_sqlite(entries)
    if ledger.seconds:
        result.notes.append(f"SQLite ledger generated in {ledger.seconds:.0f} s (then cached).")
    with tempfile.TemporaryDirectory(prefix="zeroparty-bench-console-") as directory:
        copy = Path(directory) / "ledger.db"
        shutil.copyfile(ledger.url.removeprefix("sqlite:///"), copy)
        url = sqlite_url(copy)
        _add_staff(url)
        result.rows += measure("SQLite", url, entries, requests)
    if postgres_available(options.postgres_url):
        assert options.postgres_url is not None
        print(f"console: PostgreSQL, {entries:,} entries", flush=True)
        name = create_postgres(options.postgres_url)
        try:
            url = postgres_url(options.postgres_url, name)
            generated = generate_postgres(url, entries)
            result.notes.append(f"PostgreSQL ledger generated in {generated.seconds:.0f} s.")
            _add_staff(url)
            result.rows += measure("PostgreSQL", url, entries, requests)
        finally:
            drop_postgres(options.postgres_url, name)
    else:
        result.notes.append("PostgreSQL not measured: no server answered.")
    result.notes.append(
        "The export's extra cost over the bare query: each row's evidence is parsed and "
        "re-serialised sorted, every cell is made formula-safe, and chunks of 2,000 rows "
        "cross the ASGI boundary; memory stays flat because rows are streamed from a "
        "server-side cursor (PostgreSQL) or a stepping statement (SQLite), never collected."
    )
    return result


def write_section(markdown: str, report: Path) -> None:
    """Replace this scenario's section of ``report`` (or add it before the analysis)."""
    text = report.read_text() if report.exists() else "# Benchmarks\n"
    start = text.find(SECTION + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + markdown + ("" if end < 0 else "\n" + text[end + 1 :])
    else:
        analysis = text.find("\n## Why the targets are missed")
        if analysis >= 0:
            text = text[: analysis + 1] + markdown + "\n" + text[analysis + 1 :]
        else:
            text = text.rstrip("\n") + "\n\n" + markdown
    report.write_text(text)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("export", "bare-export"):
        (export_child if sys.argv[1] == "export" else bare_export_child)(sys.argv[2])
        return
    from bench.machine import load_average
    from bench.run_all import REPORT

    started, load_before = time.perf_counter(), load_average()
    result = run(parse_options(__doc__ or ""))
    result.notes.append(
        f"Took {time.perf_counter() - started:.0f} s; 1-minute load average "
        f"{load_before:.1f} at the start, {load_average():.1f} at the end (a shared machine)."
    )
    markdown = result.markdown()
    print(markdown)
    write_section(markdown, REPORT)
    print(f"updated the console section of {REPORT}")


if __name__ == "__main__":
    main()
