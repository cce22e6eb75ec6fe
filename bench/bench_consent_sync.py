"""Scenario: consent sync at scale (issue 15).

1. Audience export: ``zeroparty audience export profiling --format csv`` of every lead
   permitted for ``profiling`` (one per subject of the synthetic ledger, so 1,000,000
   permitted leads take a ledger of 4,000,000 entries), streamed to nowhere in a child
   process: rows per second and peak memory of the process tree. Bare: the same leads'
   email, name, locale, since and notice by one SQL query written with ``csv.writer`` in
   a child process. Targets (issue 15): at least half the bare rows per second, under
   200 MB.
2. Change feed page: ``consent_sync.changes.changes_page`` of 1,000 entries after a
   random ``seq`` of a 1,000,000-entry ledger, one after another: latency percentiles.
   Bare: ``SELECT * FROM consent_events WHERE seq > ? ORDER BY seq LIMIT 1000``.

On the cached synthetic SQLite ledgers (:mod:`bench.synthetic_ledger`) and, when a
server answers, PostgreSQL ledgers generated for the run and dropped.

Run alone: ``python -m bench.bench_consent_sync [--quick] [--no-postgres]``
(``--quick``: 5,000 permitted leads and a 20,000-entry feed, nothing written); a full
run rewrites its own section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import csv
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench.databases import create_postgres, drop_postgres, postgres_available, postgres_url
from bench.measured_process import ProcessRun, run_measured
from bench.report import Options, Row, ScenarioResult, parse_options, percentile
from bench.synthetic_ledger import PLANS, cached_sqlite, generate_postgres

FULL_LEADS = 1_000_000
QUICK_LEADS = 5_000
FULL_FEED_ENTRIES = 1_000_000
QUICK_FEED_ENTRIES = 20_000
PAGE = 1_000
FEED_PAGES = 200
QUICK_FEED_PAGES = 50
PURPOSE = "profiling"  # permitted for every synthetic subject (a grant, no double opt-in)
TIMEOUT_S = 3600.0
SECTION = "## Consent sync"
TARGET_EXPORT_RATIO = 0.5
TARGET_EXPORT_MB = 200.0
SECRET = "bench-secret-key-for-consent-sync"  # noqa: S105  (a throwaway bench key)


class _Null:
    def write(self, _text: str) -> int:
        return 0


def bare_export_child(url: str) -> None:
    """In a child process: the permitted leads by one query, through ``csv.writer``."""
    from sqlalchemy import text

    from zeroparty.db import Database

    database = Database.from_url(url)
    writer = csv.writer(_Null())
    rows = 0
    with database.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=2000).execute(
            text(
                "SELECT p.email, p.name, s.locale, st.since, st.notice_sha256, s.id "
                "FROM consent_state st JOIN subjects s ON s.id = st.subject_id "
                "JOIN subject_profiles p ON p.subject_id = st.subject_id "
                "WHERE st.purpose_key = :purpose AND st.permitted ORDER BY st.subject_id"
            ),
            {"purpose": PURPOSE},
        )
        for row in result:
            writer.writerow(row)
            rows += 1
    print(rows)


def _measure_export(url: str, bare: bool) -> tuple[ProcessRun, int]:
    if bare:
        command = [sys.executable, "-m", "bench.bench_consent_sync", "bare-export", url]
        env = None
    else:
        command = [sys.executable, "-m", "zeroparty.cli", "audience", "export", PURPOSE]
        env = {
            **os.environ,
            "ZEROPARTY_DATABASE_URL": url,
            "ZEROPARTY_SECRET_KEYS": SECRET,
            "ZEROPARTY_BASE_URL": "https://bench.example",
        }
    run = run_measured([*command], env=env, timeout_s=TIMEOUT_S)
    if run.returncode != 0:
        raise RuntimeError(f"export failed: {run.stderr[-2000:]}")
    if bare:
        return run, int(run.stdout.strip().splitlines()[-1])
    return run, max(0, run.stdout.count("\n") - 1)  # the header line


def measure_export(backend: str, url: str, leads: int) -> list[Row]:
    ours, exported = _measure_export(url, bare=False)
    bare, bare_rows = _measure_export(url, bare=True)
    if exported != leads or bare_rows != leads:
        raise RuntimeError(f"exported {exported:,} / bare {bare_rows:,} of {leads:,}")
    rate, bare_rate = exported / ours.seconds, bare_rows / bare.seconds
    print(
        f"  audience {rate:,.0f} rows/s {ours.tree_peak_mb:.0f} MB; "
        f"bare {bare_rate:,.0f} rows/s {bare.tree_peak_mb:.0f} MB",
        flush=True,
    )
    return [
        Row(
            label=f"{backend}: audience export of {leads:,} permitted leads, rows per second",
            zeroparty=f"{rate:,.0f} rows/s ({ours.seconds:.1f} s wall)",
            bare=f"{bare_rate:,.0f} rows/s ({bare.seconds:.1f} s wall)",
            ratio=f"{rate / bare_rate:.0%} of bare",
            target=f">= {TARGET_EXPORT_RATIO:.0%} of bare",
            met=rate >= TARGET_EXPORT_RATIO * bare_rate,
        ),
        Row(
            label=f"{backend}: audience export of {leads:,} permitted leads, peak memory",
            zeroparty=f"{ours.tree_peak_mb:.0f} MB",
            bare=f"{bare.tree_peak_mb:.0f} MB",
            ratio=f"{ours.tree_peak_mb / bare.tree_peak_mb:.1f}x",
            target=f"< {TARGET_EXPORT_MB:g} MB",
            met=ours.tree_peak_mb < TARGET_EXPORT_MB,
        ),
    ]


def measure_feed(backend: str, url: str, entries: int, pages: int) -> list[Row]:
    from sqlalchemy import text

    from consent_sync.changes import changes_page
    from zeroparty.db import Database

    database = Database.from_url(url)
    rng = random.Random(15)
    ours: list[float] = []
    bare: list[float] = []
    bare_sql = text("SELECT * FROM consent_events WHERE seq > :after ORDER BY seq LIMIT :limit")
    try:
        with database.connect() as connection:
            for _ in range(pages):
                after = rng.randrange(0, max(1, entries - PAGE))
                started = time.perf_counter()
                page = changes_page(connection, after, PAGE)
                ours.append((time.perf_counter() - started) * 1000)
                assert len(page.changes) == min(PAGE, entries - after)
                started = time.perf_counter()
                rows: Any = connection.execute(bare_sql, {"after": after, "limit": PAGE}).all()
                bare.append((time.perf_counter() - started) * 1000)
                assert len(rows) == len(page.changes)
                connection.rollback()
    finally:
        database.dispose()
    p50, p95 = percentile(ours, 0.5), percentile(ours, 0.95)
    b50, b95 = percentile(bare, 0.5), percentile(bare, 0.95)
    print(f"  feed page p50 {p50:.1f} ms p95 {p95:.1f} ms (bare p50 {b50:.1f} ms)", flush=True)
    return [
        Row(
            label=f"{backend}: change feed page of {PAGE:,} at {entries:,} entries",
            zeroparty=f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
            bare=f"p50 {b50:.1f} ms, p95 {b95:.1f} ms",
            ratio=f"{p50 / b50:.1f}x at p50" if b50 else "—",
            target="milliseconds (an index walk)",
            met=None,
        )
    ]


def run(options: Options) -> ScenarioResult:
    leads = QUICK_LEADS if options.quick else FULL_LEADS
    feed_entries = QUICK_FEED_ENTRIES if options.quick else FULL_FEED_ENTRIES
    pages = QUICK_FEED_PAGES if options.quick else FEED_PAGES
    audience_entries = leads * len(PLANS)
    result = ScenarioResult(
        title="Consent sync",
        command="python -m bench.bench_consent_sync" + (" --quick" if options.quick else ""),
        what=(
            f"The audience export of {leads:,} permitted leads (a synthetic ledger of "
            f"{audience_entries:,} entries) by `zeroparty audience export` in a child "
            "process, every row with its signed preference URL, one-click URL and "
            "List-Unsubscribe values, beside one SQL query of the same leads written with "
            f"`csv.writer`; and {pages} change-feed pages of {PAGE:,} entries after random "
            f"positions of a {feed_entries:,}-entry ledger, beside the bare query of the "
            "page's entries. Peak memory: the child's process tree."
        ),
    )
    print(f"consent sync: SQLite, {leads:,} permitted leads", flush=True)
    ledger = cached_sqlite(audience_entries)
    result.rows += measure_export("SQLite", ledger.url, leads)
    feed = ledger if feed_entries == audience_entries else cached_sqlite(feed_entries)
    result.rows += measure_feed("SQLite", feed.url, feed_entries, pages)
    if postgres_available(options.postgres_url):
        assert options.postgres_url is not None
        for entries, what in ((audience_entries, "export"), (feed_entries, "feed")):
            name = create_postgres(options.postgres_url)
            try:
                url = postgres_url(options.postgres_url, name)
                print(f"consent sync: PostgreSQL, {entries:,} entries ({what})", flush=True)
                generated = generate_postgres(url, entries)
                result.notes.append(
                    f"PostgreSQL ledger of {entries:,} entries generated in "
                    f"{generated.seconds:.0f} s."
                )
                if what == "export":
                    result.rows += measure_export("PostgreSQL", url, leads)
                else:
                    result.rows += measure_feed("PostgreSQL", url, entries, pages)
            finally:
                drop_postgres(options.postgres_url, name)
    else:
        result.notes.append("PostgreSQL not measured: no server answered.")
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
    if len(sys.argv) == 3 and sys.argv[1] == "bare-export":
        bare_export_child(sys.argv[2])
        return
    from bench.run_all import REPORT

    options = parse_options(__doc__ or "")
    started = time.perf_counter()
    result = run(options)
    result.notes.append(f"Took {time.perf_counter() - started:.0f} s.")
    markdown = result.markdown()
    print(markdown)
    if not options.quick:
        write_section(markdown, REPORT)
        print(f"updated the consent sync section of {REPORT}")


if __name__ == "__main__":
    main()
