"""Contact imports: ``zeroparty import FILE`` on a generated CSV, rows per second.

The file has N rows (default 50,000): 70% carry consent evidence for ``profiling``
(source, time, the notice's SHA-256, method ``written``), 30% are bare contacts with
no evidence; every row has a name, company, job title and country. Measured, each on a
fresh migrated database, as a child process (wall time, peak memory): the real
``zeroparty import`` (parse, validate, one write transaction: leads and profiles in
bulk, ledger grants with their evidence through the ledger's append), the same file again
(idempotent: every grant found already recorded, nothing appended), and ``--dry-run``
(parse and validate only). Baseline: the same file read with ``csv.reader`` and its
emails and names inserted into ``subjects`` and ``subject_profiles`` by ``executemany``
in one transaction (no validation, no ledger, no evidence), in the same kind of child.

Run alone: ``python -m bench.bench_import [--rows N] [--no-postgres] [--write]``
(``--write`` replaces this benchmark's own section of ``BENCHMARKS.md``, between its
markers, and leaves every other section as it is).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.databases import PostgresTemplate, SqliteTemplate, postgres_available, workdir
from bench.machine import describe
from bench.measured_process import run_measured
from bench.report import DEFAULT_POSTGRES_URL, Row, ScenarioResult, per_second
from zeroparty.db import Database, make_engine, utcnow
from zeroparty.settings import PROJECT_ROOT

TITLE = "Contact imports"
KEY = "bench_import"
REPORT = PROJECT_ROOT / "BENCHMARKS.md"
COMMAND = "python -m bench.bench_import [--rows N] [--no-postgres] [--write]"
HEADER = ("email", "name", "company", "job_title", "country", "purpose", "consent_source",
          "consent_at", "notice_sha256", "method")  # fmt: skip


def write_csv(path: Path, rows: int, notice: str, *, evidence_share: float = 0.7) -> None:
    """``rows`` contacts; the first ``evidence_share`` of every ten carry evidence."""
    start = datetime(2025, 6, 1, tzinfo=UTC)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(rows):
            title, country = ("CTO", "Analyst", "Head of Data")[i % 3], ("DE", "FR", "US-CA")[i % 3]
            company = f"Company {i % 997}"
            contact = [f"contact{i}@import.example", f"Contact {i}", company, title, country]
            if i % 10 < evidence_share * 10:
                at = (start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
                contact += ["profiling", "trade fair 2025", at, notice, "written"]
            else:
                contact += [""] * 5
            writer.writerow(contact)


def bare_child(url: str, path: str) -> None:
    """The baseline: csv.reader and executemany, one transaction, nothing checked."""
    engine = make_engine(url)
    now = utcnow()
    with open(path, newline="", encoding="utf-8") as handle, engine.begin() as connection:
        reader = csv.reader(handle)
        next(reader)
        batch: list[tuple[str, str]] = []

        def flush() -> None:
            ids = [uuid.uuid4().hex for _ in batch]
            connection.execute(
                text("INSERT INTO subjects (id, created_at) VALUES (:id, :at)"),
                [{"id": i, "at": now} for i in ids],
            )
            connection.execute(
                text(
                    "INSERT INTO subject_profiles (subject_id, email, name, created_at, "
                    "updated_at) VALUES (:id, :email, :name, :at, :at)"
                ),
                [
                    {"id": i, "email": e, "name": n, "at": now}
                    for i, (e, n) in zip(ids, batch, strict=True)
                ],
            )
            batch.clear()

        for row in reader:
            batch.append((row[0], row[1]))
            if len(batch) >= 1000:
                flush()
        if batch:
            flush()
    engine.dispose()


def _notice(url: str) -> str:
    database = Database.from_url(url)
    try:
        with database.read() as session:
            return str(
                session.execute(
                    text(
                        "SELECT sha256 FROM notice_versions WHERE purpose_key = 'profiling' "
                        "AND locale = 'en' ORDER BY version DESC LIMIT 1"
                    )
                ).scalar_one()
            )
    finally:
        database.dispose()


def _cli(url: str, *args: str) -> tuple[float, float, str]:
    env = {**os.environ, "ZEROPARTY_DATABASE_URL": url}
    run = run_measured([sys.executable, "-m", "zeroparty.cli", "import", *args], env=env)
    if run.returncode != 0:
        raise RuntimeError(f"zeroparty import {' '.join(args)} failed: {run.stderr[-800:]}")
    return run.seconds, run.peak_mb, run.stdout


def measure(url: str, fresh_url: str, path: Path, rows: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    figures["dry_s"], figures["dry_mb"], _ = _cli(url, str(path), "--dry-run")
    figures["import_s"], figures["import_mb"], out = _cli(url, str(path))
    if f"{int(rows * 0.7):,} recorded" not in out:
        raise RuntimeError(f"unexpected import report: {out[-500:]}")
    figures["again_s"], figures["again_mb"], out = _cli(url, str(path))
    if "0 recorded" not in out:
        raise RuntimeError(f"re-import recorded something: {out[-500:]}")
    env = {**os.environ}
    bare = run_measured(
        [sys.executable, "-m", "bench.bench_import", "--child", fresh_url, str(path)], env=env
    )
    if bare.returncode != 0:
        raise RuntimeError(f"bare import failed: {bare.stderr[-800:]}")
    figures["bare_s"], figures["bare_mb"] = bare.seconds, bare.peak_mb
    return figures


def run(rows: int, postgres_url: str | None) -> ScenarioResult:
    result = ScenarioResult(
        title=TITLE,
        command=f"python -m bench.bench_import --rows {rows}",
        what=(__doc__ or "").split("\n\n", 1)[1].split("\n\nRun alone")[0],
    )
    with workdir() as directory:
        backends: list[tuple[str, Any]] = [("SQLite", SqliteTemplate(directory))]
        if postgres_url and postgres_available(postgres_url):
            backends.append(("PostgreSQL", PostgresTemplate(postgres_url)))
        else:
            result.notes.append("PostgreSQL not measured: no server reachable.")
        path = directory / "contacts.csv"
        try:
            for name, template in backends:
                url = template.fresh()
                write_csv(path, rows, _notice(url))
                print(f"-- {name}: importing {rows:,} rows", flush=True)
                f = measure(url, template.fresh(), path, rows)
                rate = rows / f["import_s"]
                result.rows += [
                    Row(f"{name}: `zeroparty import`, {rows:,} rows (70% with evidence)",
                        f"{per_second(rate)} ({f['import_s']:.1f} s, peak {f['import_mb']:.0f} MB)",
                        f"{per_second(rows / f['bare_s'])} ({f['bare_s']:.1f} s, peak "
                        f"{f['bare_mb']:.0f} MB)",
                        f"{f['import_s'] / f['bare_s']:.1f} times the time", "—", None),
                    Row(f"{name}: the same file again (idempotent, nothing appended)",
                        f"{per_second(rows / f['again_s'])} ({f['again_s']:.1f} s, peak "
                        f"{f['again_mb']:.0f} MB)", "—", "—", "—", None),
                    Row(f"{name}: `--dry-run` (parse and validate)",
                        f"{per_second(rows / f['dry_s'])} ({f['dry_s']:.1f} s, peak "
                        f"{f['dry_mb']:.0f} MB)", "—", "—", "—", None),
                ]  # fmt: skip
        finally:
            for _, template in backends:
                if isinstance(template, PostgresTemplate):
                    template.close()
    load = os.getloadavg()[0]
    result.notes.append(
        "Wall times include starting the interpreter and importing the app (about 1 s). "
        f"1-minute load average {load:.1f} at the end on this shared 2-core machine."
    )
    return result


def replace_section(key: str, markdown: str, report: Path = REPORT) -> None:
    """Put ``markdown`` between ``<!-- key:start -->`` and ``<!-- key:end -->`` in
    ``report``, replacing what was there; without the markers, insert it before the
    analysis section (or at the end). No other byte of the file changes."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    current = report.read_text(encoding="utf-8") if report.exists() else "# Benchmarks\n"
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1]
        current = before + block + after
    else:
        anchor = current.find("\n## Why the targets are missed")
        if anchor >= 0:
            current = current[: anchor + 1] + block + "\n" + current[anchor:]
        else:
            current = current.rstrip("\n") + "\n\n" + block + "\n"
    report.write_text(current, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--child"]:
        bare_child(args[1], args[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parsed = parser.parse_args(args)
    result = run(parsed.rows, None if parsed.no_postgres else parsed.postgres_url)
    machine = describe(None if parsed.no_postgres else parsed.postgres_url)
    result.details += [f"Command: `{COMMAND}`. Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."]
    result.details += [f"Machine: {line.removeprefix('- ')}" for line in machine][:3]
    print(result.markdown())
    if parsed.write:
        replace_section(KEY, result.markdown())
        print(f"wrote the {TITLE} section of {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
