"""Scenario 2: ``zeroparty ledger verify`` over a million entries, time and peak memory.

The ledger is generated directly (:mod:`bench.synthetic_ledger`); verify runs as a child
process, so its peak memory is its own ``ru_maxrss``. Baseline, same run, same table,
same measurement: :mod:`bench.bare_chain`, SHA-256 over the same canonical bytes.
Targets are absolute: under 10 s and under 200 MB for 1M entries.

Run alone: ``python -m bench.ledger_verify [--quick] [--no-postgres]`` (``--quick``:
100,000 entries).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from bench.databases import create_postgres, drop_postgres, postgres_available, postgres_url
from bench.measured_process import ProcessRun, run_measured
from bench.report import Options, Row, ScenarioResult, parse_options
from bench.synthetic_ledger import GeneratedLedger, cached_sqlite, generate_postgres

FULL_ENTRIES = 1_000_000
QUICK_ENTRIES = 100_000
TARGET_SECONDS = 10.0
TARGET_MB = 200.0
TIMEOUT_S = 900.0


def zeroparty_command() -> list[str]:
    script = Path(sys.executable).parent / "zeroparty"
    if script.exists():
        return [str(script)]
    found = shutil.which("zeroparty")
    return [found] if found else [sys.executable, "-m", "zeroparty.cli"]


def run_verify(url: str) -> ProcessRun:
    env = dict(os.environ, ZEROPARTY_DATABASE_URL=url)
    run = run_measured(
        [*zeroparty_command(), "ledger", "verify", "--quiet"], env=env, timeout_s=TIMEOUT_S
    )
    if run.returncode != 0 or "ledger intact" not in run.stdout:
        raise RuntimeError(f"ledger verify failed: {run.stdout} {run.stderr[-2000:]}")
    return run


def run_bare(url: str) -> ProcessRun:
    run = run_measured([sys.executable, "-m", "bench.bare_chain", url], timeout_s=TIMEOUT_S)
    if run.returncode != 0:
        raise RuntimeError(f"bare chain walk failed: {run.stdout} {run.stderr[-2000:]}")
    return run


def measure(backend: str, ledger: GeneratedLedger) -> list[Row]:
    # Warm the page cache once so neither side pays for the first read from disk.
    run_bare(ledger.url)
    ours, bare = run_verify(ledger.url), run_bare(ledger.url)
    size = f"{ledger.entries:,}"
    print(
        f"  {backend}: verify {ours.seconds:.2f} s {ours.tree_peak_mb:.0f} MB; "
        f"bare {bare.seconds:.2f} s {bare.tree_peak_mb:.0f} MB",
        flush=True,
    )
    scale = FULL_ENTRIES / ledger.entries
    target_s = TARGET_SECONDS / scale
    seconds_row = Row(
        label=f"{backend}: verify {size} entries, wall time",
        zeroparty=f"{ours.seconds:.2f} s ({ours.cpu_seconds:.1f} s CPU)",
        bare=f"{bare.seconds:.2f} s ({bare.cpu_seconds:.1f} s CPU)",
        ratio=f"{ours.seconds / bare.seconds:.1f}x the bare time",
        target=f"< {target_s:g} s" + (" (10 s per 1M, pro rata)" if scale != 1 else ""),
        met=ours.seconds < target_s,
    )
    memory_row = Row(
        label=f"{backend}: verify {size} entries, peak memory",
        zeroparty=f"{ours.tree_peak_mb:.0f} MB (largest process {ours.peak_mb:.0f} MB)",
        bare=f"{bare.tree_peak_mb:.0f} MB (largest process {bare.peak_mb:.0f} MB)",
        ratio=f"{ours.tree_peak_mb / bare.tree_peak_mb:.1f}x",
        target=f"< {TARGET_MB:g} MB",
        met=ours.tree_peak_mb < TARGET_MB,
    )
    return [seconds_row, memory_row]


def run(options: Options) -> ScenarioResult:
    entries = QUICK_ENTRIES if options.quick else FULL_ENTRIES
    result = ScenarioResult(
        title="Ledger verify",
        command="python -m bench.ledger_verify" + (" --quick" if options.quick else ""),
        what=(
            f"`zeroparty ledger verify --quiet` over {entries:,} entries (each with evidence; "
            f"{entries:,} consent states), run as a child process: wall time including "
            "interpreter start, with the CPU time of the command and its helpers beside it "
            "(on a loaded machine two processes may not get both cores); peak memory is "
            "the largest sum of resident memory over the command's process tree (verify "
            "may start a helper process), sampled every 50 ms, with the largest single "
            "process's `ru_maxrss` beside it. Bare: "
            "`python -m bench.bare_chain URL`, one SQL query in `seq` order, canonical "
            "bytes with orjson, SHA-256, link and hash compared (no evidence, head or "
            "projection check), measured the same way. Page cache warmed first."
        ),
    )
    print(f"ledger verify: SQLite, {entries:,} entries", flush=True)
    ledger = cached_sqlite(entries)
    if ledger.seconds:
        result.notes.append(f"SQLite ledger generated in {ledger.seconds:.0f} s (then cached).")
    result.rows += measure("SQLite", ledger)
    if postgres_available(options.postgres_url):
        assert options.postgres_url is not None
        print(f"ledger verify: PostgreSQL, {entries:,} entries", flush=True)
        name = create_postgres(options.postgres_url)
        try:
            ledger = generate_postgres(postgres_url(options.postgres_url, name), entries)
            result.notes.append(f"PostgreSQL ledger generated in {ledger.seconds:.0f} s.")
            result.rows += measure("PostgreSQL", ledger)
        finally:
            drop_postgres(options.postgres_url, name)
    else:
        result.notes.append("PostgreSQL not measured: no server answered.")
    return result


def main() -> None:
    print(run(parse_options(__doc__ or "")).markdown())


if __name__ == "__main__":
    main()
