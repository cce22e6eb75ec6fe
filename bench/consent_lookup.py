"""Scenario 3: ``GET /api/consent`` requests per second against a million-entry ledger.

zeroparty: the real ``zeroparty serve`` (uvicorn, 1 and 2 workers) on a copy of the
generated SQLite ledger, with an API key. Baseline, same run, same file, same uvicorn
settings: the bare stack, :mod:`bench.bare_stack` (stdlib sqlite3 in the async endpoint,
statements prepared once, one connection per worker). Load: ``wrk -t1 -c32`` with a Lua
script rotating through thousands of (email, purpose) pairs; both servers run side by side and the
measurements alternate, median of 3 (``--quick``: 1 run of 3 s on 100,000 entries).

Run alone: ``python -m bench.consent_lookup [--quick]``.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import orjson
from sqlalchemy import create_engine, inspect, text

from bench.databases import sqlite_url, workdir
from bench.http_load import LoadGenerator, LoadResult
from bench.ledger_verify import FULL_ENTRIES, QUICK_ENTRIES, zeroparty_command
from bench.report import Options, Row, ScenarioResult, median, parse_options, ratio_text
from bench.servers import Server, free_port
from bench.synthetic_ledger import PLANS, cached_sqlite, email_of
from zeroparty.settings import PROJECT_ROOT

TARGET = 0.50  # issue 17: look-up >= 50% of the bare stack
WORKERS = (1, 2)
CONNECTIONS = 32
ROTATING_PAIRS = 20_000
CHECKPOINT_WAIT_S = 300.0
SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway server's key)


def request_paths(subjects: int, count: int) -> list[str]:
    rng = random.Random(7)
    paths = []
    for n in range(count):
        query = {
            "email": email_of(rng.randrange(subjects)),
            "purpose": PLANS[n % len(PLANS)].purpose,
        }
        paths.append("/api/consent?" + urlencode(query))
    return paths


def wait_for_checkpoint(url: str, entries: int) -> str:
    """Let the server's start-up checkpoint finish before measuring (steady state)."""
    engine = create_engine(url)
    try:
        if "ledger_checkpoints" not in inspect(engine).get_table_names():
            return "no checkpoints in this version"
        deadline = time.monotonic() + CHECKPOINT_WAIT_S
        started = time.monotonic()
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                size = connection.execute(text("SELECT max(size) FROM ledger_checkpoints")).scalar()
            if size is not None and size >= entries:
                return f"start-up checkpoint done after {time.monotonic() - started:.0f} s"
            time.sleep(1.0)
        return f"start-up checkpoint still running after {CHECKPOINT_WAIT_S:g} s"
    finally:
        engine.dispose()


def _answer(server: Server, path: str) -> tuple[str, bool]:
    status, body = server.get(path)
    if status != 200:
        raise RuntimeError(f"{server.name} answered {status} to {path}: {body[:300]!r}")
    answer = orjson.loads(body)
    return str(answer["status"]), bool(answer["permitted"])


def _check_same_answers(ours: Server, bare: Server, paths: list[str]) -> None:
    for path in paths[:8]:
        if _answer(ours, path) != _answer(bare, path):
            raise RuntimeError(f"zeroparty and the bare app disagree on {path}")


def _text(result: LoadResult) -> str:
    return (
        f"{result.requests_per_s:,.0f} req/s (p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms)"
    )


def _median_run(runs: list[LoadResult]) -> LoadResult:
    return sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2]


def measure_workers(
    workers: int,
    db_file: Path,
    directory: Path,
    api_key: str,
    load: LoadGenerator,
    entries: int,
    rounds: int,
    seconds: float,
) -> tuple[Row, list[str]]:
    url = sqlite_url(db_file)
    zp_env = dict(
        os.environ,
        ZEROPARTY_DATABASE_URL=url,
        ZEROPARTY_SECRET_KEYS=SECRET,
        ZEROPARTY_CHECKPOINT_KEY_FILE=str(directory / "checkpoint.key"),
        ZEROPARTY_OUTBOX_DIR=str(directory / "outbox"),
    )
    zp_port, bare_port = free_port(), free_port()
    zeroparty = Server(
        f"zeroparty serve --workers {workers}",
        [
            *zeroparty_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(zp_port),
            "--workers",
            str(workers),
        ],
        port=zp_port,
        probe_path="/healthz",
        env=zp_env,
        log_file=directory / f"zeroparty-{workers}.log",
        probe_headers={"Authorization": f"Bearer {api_key}"},
    )
    bare_env = dict(os.environ, BARE_DB=str(db_file), PYTHONPATH=str(PROJECT_ROOT))
    bare = Server(
        f"bare app --workers {workers}",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_stack:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(bare_port),
            "--workers",
            str(workers),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        port=bare_port,
        probe_path="/healthz",
        env=bare_env,
        log_file=directory / f"bare-{workers}.log",
    )
    notes: list[str] = []
    with zeroparty, bare:
        notes.append(f"{workers} worker(s): {wait_for_checkpoint(url, entries)}.")
        _check_same_answers(zeroparty, bare, load.paths)
        for server in (zeroparty, bare):  # warm-up: page cache, statement caches
            load.run(server.base_url, connections=CONNECTIONS, seconds=2)
        ours_runs: list[LoadResult] = []
        bare_runs: list[LoadResult] = []
        cpu: dict[str, list[float]] = {zeroparty.name: [], bare.name: []}
        for round_index in range(rounds):
            order = [(zeroparty, ours_runs), (bare, bare_runs)]
            for server, runs in order if round_index % 2 == 0 else order[::-1]:
                cpu_before = server.cpu_seconds()
                runs.append(load.run(server.base_url, connections=CONNECTIONS, seconds=seconds))
                used = server.cpu_seconds() - cpu_before
                cpu[server.name].append(used / runs[-1].requests * 1e6)
    ours, base = _median_run(ours_runs), _median_run(bare_runs)
    ours_cpu, bare_cpu = median(cpu[zeroparty.name]), median(cpu[bare.name])
    errors = sum(r.errors for r in ours_runs + bare_runs)
    if errors:
        notes.append(f"{workers} worker(s): {errors} error answers during the runs.")
    spread = ", ".join(f"{r.requests_per_s:,.0f}" for r in ours_runs)
    bare_spread = ", ".join(f"{r.requests_per_s:,.0f}" for r in bare_runs)
    notes.append(f"{workers} worker(s) runs, req/s: zeroparty {spread}; bare {bare_spread}.")
    print(f"  {workers} worker(s): zeroparty {_text(ours)}; bare {_text(base)}", flush=True)
    ratio = ours.requests_per_s / base.requests_per_s if base.requests_per_s else 0.0
    row = Row(
        label=f"SQLite, {entries:,} entries, {workers} worker(s)",
        zeroparty=f"{_text(ours)}; {ours_cpu:,.0f} µs server CPU/request",
        bare=f"{_text(base)}; {bare_cpu:,.0f} µs server CPU/request",
        ratio=ratio_text(ours.requests_per_s, base.requests_per_s),
        target=f">= {TARGET:.0%}",
        met=ratio >= TARGET,
    )
    return row, notes


def run(options: Options) -> ScenarioResult:
    entries = QUICK_ENTRIES if options.quick else FULL_ENTRIES
    rounds, seconds = (1, 3.0) if options.quick else (3, 10.0)
    ledger = cached_sqlite(entries)
    paths = request_paths(ledger.subjects, ROTATING_PAIRS)
    load = LoadGenerator(paths, {"Authorization": f"Bearer {ledger.api_key}"})
    result = ScenarioResult(
        title="Consent look-up",
        command="python -m bench.consent_lookup" + (" --quick" if options.quick else ""),
        what=(
            f"`GET /api/consent?email=…&purpose=…` against {entries:,} entries "
            f"({ledger.subjects:,} leads with profiles), {ROTATING_PAIRS:,} rotating "
            f"(email, purpose) pairs, `{load.tool}` -t1 -c{CONNECTIONS} -d{seconds:g}s, "
            f"median of {rounds} alternating run(s) after a 2 s warm-up. zeroparty: "
            "`zeroparty serve --workers N` (API key checked, email validated). Bare: "
            "`uvicorn bench.bare_stack:app --workers N` (uvloop, httptools), same file, "
            "the same answer fields from one joined query, stdlib sqlite3 called in the "
            "async endpoint (no threadpool), one connection per worker, the statement "
            "prepared once. Server CPU/request: CPU time of "
            "the server's processes during the runs over the requests answered (median), "
            "which other load on the machine hardly changes."
        ),
    )
    print(f"consent look-up: {entries:,} entries, load by {load.tool}", flush=True)
    try:
        with workdir() as directory:
            db_file = directory / "ledger.db"
            shutil.copyfile(ledger.url.removeprefix("sqlite:///"), db_file)
            for workers in WORKERS:
                row, notes = measure_workers(
                    workers, db_file, directory, ledger.api_key, load, entries, rounds, seconds
                )
                result.rows.append(row)
                result.notes += notes
    finally:
        load.close()
    return result


def main() -> None:
    print(run(parse_options(__doc__ or "")).markdown())


if __name__ == "__main__":
    main()
