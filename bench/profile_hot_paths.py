"""Where a hot path's CPU goes: one path of :mod:`bench.hot_paths`, served under cProfile.

``python -m bench.profile_hot_paths PATH_NUMBER [--seconds S] [--leads N] [--keep DIR]``

The same prepared SQLite file as :mod:`bench.hot_paths` (``prepare_database``), the same
wrk scripts, one worker. The server is the real CLI: this module's ``--child`` mode calls
``zeroparty.cli.main(["serve", ..., "--workers", "1"])``, the function the ``zeroparty``
console script calls (uvicorn then serves in that very process), with profiling set up
around it. Two servers are started in turn on the file:

1. a plain one (no profiler) for the path's real CPU per request, latency and stalls: it
   logs every periodic job run and every hold of, or wait for, the process's SQLite write
   lock longer than ``SLOW_MS``, and samples the event loop thread's stack every
   ``SAMPLE_MS`` to catch a request that keeps the loop for ``STALL_MS`` or more;
2. a profiled one: a ``cProfile`` profiler on the main thread (the event loop, where the
   SQLite work of a request runs) and one on every other thread (threadpool, periodic
   jobs). ``SIGUSR1`` and ``SIGUSR2`` make it write a snapshot of every profile; the
   difference of the two (taken just before wrk starts and once the server went idle after
   it) is the load's profile, written as ``.prof`` files for pstats or snakeviz.

The summary splits the profiled CPU per request into buckets (server and framework,
SQLAlchemy, the sqlite3 driver, Jinja, email validation, hashing and signing, json,
mail, our own code by module); a builtin's own time (``len``, ``isinstance``, ...) goes to
the bucket of its callers. cProfile's overhead inflates absolute times (the shares within
one profile hold); "µs at plain speed" scales each share to the plain server's CPU per
request. CPU of uvloop/httptools C code between Python callbacks is not in the profile.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import marshal
import os
import shutil
import signal
import sys
import sysconfig
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, cast

from bench.consent_lookup import request_paths, wait_for_checkpoint
from bench.databases import sqlite_url, workdir
from bench.hot_paths import (
    BATCH,
    CHECKPOINT_ORIGIN,
    CONNECTIONS,
    LABELS,
    LEADS,
    PAGE_LEADS,
    SECRET,
    Cursor,
    Prepared,
    events_script,
    prepare_database,
    render_token,
    rotate_script,
    settle,
    submit_script,
)
from bench.http_load import LoadResult, run_wrk
from bench.machine import load_average, source_state
from bench.servers import Server, free_port
from bench.synthetic_ledger import PLANS
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens
from zeroparty.settings import PROJECT_ROOT, Settings

SLOW_MS = 20.0  # job runs and write-lock holds/waits logged above this
SAMPLE_MS = 5.0  # the stall sampler's period
STALL_MS = 100.0  # a request frame on the loop thread this long is a stall
SLOW_REQUEST_MS = 1000.0  # a request this long inside the server is logged
WARM_S = 2.0
SNAPSHOT_WAIT_S = 60.0
TOP = 25
MAIN_LABEL = "event loop (main thread)"
STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())
SITE = "site-packages/"
ROOT = str(PROJECT_ROOT.resolve()) + "/"

Func = tuple[str, int, str]
StatsDict = dict[Func, tuple[int, int, float, float, dict[Func, tuple[int, int, float, float]]]]


# --- the server side (--child) ------------------------------------------------------------


def _stats_of(profile: cProfile.Profile) -> StatsDict:
    """The profile's statistics so far (pstats' format), without stopping it."""
    profile.snapshot_stats()
    return cast(StatsDict, dict(profile.stats))


class _Profiles:
    """One cProfile profiler per thread; snapshots of all of them on SIGUSR1/SIGUSR2."""

    def __init__(self, prefix: str, timer: str) -> None:
        self.prefix = prefix
        # "cpu": each thread's CPU time (what a loaded machine does not inflate; each
        # reading is a system call, so more overhead); "wall": cProfile's default clock.
        self.timer: Callable[[], float] | None = time.thread_time if timer == "cpu" else None
        self.main = self._profile()
        self.threads: list[tuple[threading.Thread, cProfile.Profile]] = []
        self.snapshots = 0

    def _profile(self) -> cProfile.Profile:
        if self.timer is None:
            return cProfile.Profile()
        return cProfile.Profile(self.timer)

    def install(self) -> None:
        original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]
        profiles = self

        def bootstrap_inner(thread: threading.Thread) -> None:
            profile = profiles._profile()
            profiles.threads.append((thread, profile))
            profile.enable()
            try:
                original(thread)
            finally:
                profile.disable()

        threading.Thread._bootstrap_inner = bootstrap_inner  # type: ignore[attr-defined]
        signal.signal(signal.SIGUSR1, self._snapshot)
        signal.signal(signal.SIGUSR2, self._snapshot)
        self.main.enable()

    def _snapshot(self, _signum: int, _frame: FrameType | None) -> None:
        self.main.disable()  # the snapshot's own work stays out of the profile
        self.snapshots += 1
        taken: list[tuple[str, StatsDict]] = []
        for label, profile in [(MAIN_LABEL, self.main)] + [
            (thread.name, profile) for thread, profile in self.threads
        ]:
            taken.append((label, _stats_of(profile)))
        target = Path(f"{self.prefix}.{self.snapshots}")
        partial = target.with_suffix(".partial")
        partial.write_bytes(marshal.dumps(taken))
        partial.rename(target)
        self.main.enable()


class _Log:
    """JSON lines to a file, from any thread."""

    def __init__(self, path: Path) -> None:
        self._handle = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, **record: object) -> None:
        line = json.dumps({"at": time.time(), **record}, default=str)
        with self._lock:
            self._handle.write(line + "\n")


def _project_frames(frame: FrameType | None, limit: int = 12) -> list[str]:
    lines: list[str] = []
    while frame is not None and len(lines) < limit:
        name = frame.f_code.co_filename
        if name.startswith(ROOT) and "/.venv/" not in name and "/bench/" not in name:
            lines.append(f"{name.removeprefix(ROOT)}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return lines


class _TimedLock:
    """Wraps the database's write lock: logs waits and holds longer than ``SLOW_MS``."""

    def __init__(self, lock: Any, log: _Log) -> None:
        self._lock = lock
        self._log = log
        self._local = threading.local()

    def __enter__(self) -> object:
        depth = getattr(self._local, "depth", 0)
        started = time.perf_counter()
        entered = self._lock.__enter__()
        if depth == 0:
            self._local.acquired = time.perf_counter()
            self._local.waited = self._local.acquired - started
            self._local.frame = sys._getframe(1)
        self._local.depth = depth + 1
        return entered

    def __exit__(self, *exc: object) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            held = (time.perf_counter() - self._local.acquired) * 1000
            waited = self._local.waited * 1000
            if held > SLOW_MS or waited > SLOW_MS:
                self._log.write(
                    kind="write-lock",
                    thread=threading.current_thread().name,
                    waited_ms=round(waited, 1),
                    held_ms=round(held, 1),
                    where=_project_frames(self._local.frame, 6),
                )
            self._local.frame = None
        self._lock.__exit__(*exc)


def _watch_jobs_and_lock(log: _Log) -> None:
    """Log slow periodic job runs and slow write-lock holds/waits (plain server only)."""
    from zeroparty import background, db

    job_init = background.PeriodicJob.__init__

    def init_job(
        job: background.PeriodicJob, name: str, interval: float, run: Callable[[], object]
    ) -> None:
        def timed() -> object:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return run()
            finally:
                wall_ms = (time.perf_counter() - wall) * 1000
                if wall_ms > SLOW_MS:
                    log.write(
                        kind="job",
                        job=name,
                        wall_ms=round(wall_ms, 1),
                        cpu_ms=round((time.thread_time() - cpu) * 1000, 1),
                    )

        job_init(job, name, interval, timed)

    background.PeriodicJob.__init__ = init_job  # type: ignore[method-assign,assignment]
    database_init = db.Database.__init__

    def init_database(database: db.Database, engine: Any) -> None:
        database_init(database, engine)
        if engine.dialect.name == "sqlite":
            database._write_lock = _TimedLock(database._write_lock, log)

    db.Database.__init__ = init_database  # type: ignore[method-assign,assignment]


def _watch_requests(log: _Log) -> None:
    """Log each request that took ``SLOW_REQUEST_MS`` or more inside the server: how long
    it waited on the loop before its handler ran, and how long the handler took."""
    from uvicorn.protocols.http import httptools_impl

    cycle = httptools_impl.RequestResponseCycle
    cycle_init, run_asgi = cycle.__init__, cycle.run_asgi

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        self._bench_created = time.perf_counter()
        cycle_init(self, *args, **kwargs)

    async def timed_run(self: Any, app: Any) -> None:
        started = time.perf_counter()
        try:
            await run_asgi(self, app)
        finally:
            ended = time.perf_counter()
            if (ended - self._bench_created) * 1000 >= SLOW_REQUEST_MS:
                log.write(
                    kind="slow-request",
                    path=str(self.scope.get("path", "?"))[:20],
                    queued_ms=round((started - self._bench_created) * 1000, 1),
                    handler_ms=round((ended - started) * 1000, 1),
                )

    cycle.__init__ = init  # type: ignore[method-assign]
    cycle.run_asgi = timed_run  # type: ignore[method-assign]


def _sample_stalls(log: _Log) -> None:
    """Every ``SAMPLE_MS``, the loop thread's project frames: one staying on its stack for
    ``STALL_MS`` or more kept the event loop from every other request that long."""
    main = threading.main_thread().ident or 0
    seen: dict[int, tuple[FrameType, float]] = {}  # id -> (frame kept alive, first seen)
    stalled_samples = 0
    while True:
        time.sleep(SAMPLE_MS / 1000)
        now = time.perf_counter()
        frames = sys._current_frames()
        top = frames.get(main)
        current: dict[int, tuple[FrameType, float]] = {}
        frame = top
        while frame is not None:
            name = frame.f_code.co_filename
            if (
                name.startswith(ROOT)
                and "/.venv/" not in name
                and "/bench/" not in name
                and not name.endswith("zeroparty/cli.py")
            ):
                kept = seen.get(id(frame))
                current[id(frame)] = kept if kept is not None and kept[0] is frame else (frame, now)
            frame = frame.f_back
        ended = [kept for key, kept in seen.items() if key not in current]
        long_ended = [kept for kept in ended if now - kept[1] >= STALL_MS / 1000]
        if long_ended:
            outer, first = min(long_ended, key=lambda kept: kept[1])
            log.write(
                kind="stall",
                ms=round((now - first) * 1000, 1),
                frame=f"{outer.f_code.co_filename.removeprefix(ROOT)} {outer.f_code.co_name}",
            )
        ages = [now - first for _, first in current.values()]
        if top is not None and ages and max(ages) >= STALL_MS / 1000:
            stalled_samples += 1
            if stalled_samples % 10 == 1:  # every 50 ms of a stall
                others = {
                    thread.name: _project_frames(frames.get(thread.ident or 0), 4)
                    for thread in threading.enumerate()
                    if thread.ident != main
                }
                log.write(
                    kind="stall-sample",
                    age_ms=round(max(ages) * 1000, 1),
                    loop_top=f"{top.f_code.co_filename}:{top.f_lineno} {top.f_code.co_name}",
                    loop_stack=_project_frames(top, 8),
                    others={name: where for name, where in others.items() if where},
                )
        else:
            stalled_samples = 0
        seen = current


def _set_wal_autocheckpoint(pages: int) -> None:
    """Every SQLite connection of the server gets ``PRAGMA wal_autocheckpoint=pages``
    (0: no checkpoint inside a committing request)."""
    from sqlalchemy import Engine, event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={pages}")

    event.listen(Engine, "connect", on_connect)


def child(argv: Sequence[str]) -> int:
    """``--child PROFILE_PREFIX|- LOG|- TIMER -- zeroparty args``: the real CLI, observed."""
    prefix, log_path, timer, args = argv[0], argv[1], argv[2], list(argv[4:])
    if log_path != "-":
        log = _Log(Path(log_path))
        _watch_jobs_and_lock(log)
        _watch_requests(log)
        threading.Thread(
            target=_sample_stalls, args=(log,), daemon=True, name="bench-stalls"
        ).start()
    if prefix != "-":
        _Profiles(prefix, timer).install()
    autocheckpoint = os.environ.get("BENCH_WAL_AUTOCHECKPOINT")
    if autocheckpoint is not None:  # a what-if of --wal-autocheckpoint, never the default
        _set_wal_autocheckpoint(int(autocheckpoint))
    from zeroparty.cli import main as zeroparty_main

    try:
        return zeroparty_main(args)
    except KeyboardInterrupt:
        return 0


# --- reading the profiles -----------------------------------------------------------------

WAITS = (
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'acquire' of '_thread.RLock' objects>",
    "<built-in method time.sleep>",
    "<method 'poll' of 'select.epoll' objects>",
    "<method 'select' of 'select.epoll' objects>",
)
FRAMEWORK = ("uvicorn", "starlette", "anyio", "httptools", "uvloop", "h11", "sniffio",
             "multipart", "python_multipart")  # fmt: skip
GENERIC_BUILTINS = "generic builtin"


def bucket_of(func: Func) -> str:
    """The bucket of a function's own time (``GENERIC_BUILTINS``: its callers')."""
    filename, _, name = func
    if filename == "~":
        if name in WAITS:
            return "waiting (lock, sleep, poll): not CPU"
        for needle, bucket in (
            ("sqlite3", "sqlite3 driver (statements run in SQLite)"),
            ("_hashlib", "hashing and signing"),
            ("_blake2", "hashing and signing"),
            ("_sha", "hashing and signing"),
            ("hmac", "hashing and signing"),
            ("_cffi_backend", "hashing and signing"),
            ("nacl", "hashing and signing"),
            ("orjson", "json"),
            ("_json", "json"),
            ("uvloop", "uvicorn, starlette, anyio, asyncio"),
            ("httptools", "uvicorn, starlette, anyio, asyncio"),
            ("_asyncio", "uvicorn, starlette, anyio, asyncio"),
            ("_socket", "uvicorn, starlette, anyio, asyncio"),
            ("markupsafe", "Jinja rendering"),
        ):
            if needle in name:
                return bucket
        return GENERIC_BUILTINS
    if filename.startswith("<template>") or filename.endswith(".html"):
        return "Jinja rendering"
    if SITE in filename:
        package = filename.split(SITE, 1)[1].split("/", 1)[0].removesuffix(".py")
        if package in FRAMEWORK:
            return "uvicorn, starlette, anyio, asyncio"
        if package == "sqlalchemy":
            part = filename.split("sqlalchemy/", 1)[1].split("/", 1)[0]
            if part == "sql":
                return "SQLAlchemy: statement building, compiling, cache keys (sql/)"
            if part == "orm":
                return "SQLAlchemy: ORM (orm/)"
            return "SQLAlchemy: engine, execution, results, pool, events"
        if package in ("jinja2", "markupsafe"):
            return "Jinja rendering"
        if package in ("email_validator", "idna", "dns"):
            return "email validation and normalisation"
        if package in ("cryptography", "nacl", "itsdangerous"):
            return "hashing and signing"
        if package == "orjson":
            return "json"
        if package == "aiosmtplib":
            return "mail building and sending"
        return f"library: {package}"
    if filename.startswith(ROOT) and "/.venv/" not in filename:
        module = filename.removeprefix(ROOT)
        if module.startswith("bench/"):
            return "profiler harness (bench/)"
        return f"ours: {module}"
    resolved = filename
    if resolved.startswith(STDLIB + "/"):
        module = resolved.removeprefix(STDLIB + "/")
        top = module.split("/", 1)[0].removesuffix(".py")
        if top in ("asyncio", "selectors", "concurrent", "contextvars"):
            return "uvicorn, starlette, anyio, asyncio"
        if top in ("json",):
            return "json"
        if top in ("email", "smtplib"):
            return "mail building and sending"
        if top in ("hmac", "hashlib", "secrets"):
            return "hashing and signing"
        if top == "sqlite3":
            return "sqlite3 driver (statements run in SQLite)"
        return f"stdlib: {top}"
    if filename.startswith("<frozen"):
        return "stdlib: " + filename.strip("<>").removeprefix("frozen ")
    return f"other: {filename}"


def _load_snapshot(path: Path) -> dict[str, list[StatsDict]]:
    by_label: dict[str, list[StatsDict]] = defaultdict(list)
    for label, stats in marshal.loads(path.read_bytes()):  # noqa: S302 (our own file)
        by_label[label].append(stats)
    return by_label


def _diff_one(after: StatsDict, before: StatsDict | None) -> StatsDict:
    if before is None:
        return after
    out: StatsDict = {}
    for func, (cc, nc, tt, ct, callers) in after.items():
        old = before.get(func)
        if old is None:
            out[func] = (cc, nc, tt, ct, callers)
            continue
        occ, onc, ott, oct_, ocallers = old
        new_callers = {}
        for caller, (a, b, c, d) in callers.items():
            was = ocallers.get(caller, (0, 0, 0.0, 0.0))
            if b - was[1] or c - was[2] > 1e-9:
                new_callers[caller] = (a - was[0], b - was[1], c - was[2], d - was[3])
        if nc - onc or tt - ott > 1e-9:
            out[func] = (cc - occ, nc - onc, tt - ott, ct - oct_, new_callers)
    return out


def _merge(into: StatsDict, other: StatsDict) -> None:
    for func, (cc, nc, tt, ct, callers) in other.items():
        if func not in into:
            into[func] = (cc, nc, tt, ct, dict(callers))
            continue
        a, b, c, d, merged = into[func]
        for caller, value in callers.items():
            old = merged.get(caller, (0, 0, 0.0, 0.0))
            merged[caller] = tuple(x + y for x, y in zip(old, value, strict=True))  # type: ignore[assignment]
        into[func] = (a + cc, b + nc, c + tt, d + ct, merged)


def load_diff(first: Path, second: Path) -> dict[str, StatsDict]:
    """Each thread label's profile of what happened between the two snapshots."""
    before, after = _load_snapshot(first), _load_snapshot(second)
    result: dict[str, StatsDict] = {}
    for label, profiles in after.items():
        merged: StatsDict = {}
        olds = before.get(label, [])
        for index, stats in enumerate(profiles):
            # Threads are listed in start order, so the n-th of a label is the same one.
            _merge(merged, _diff_one(stats, olds[index] if index < len(olds) else None))
        result[label] = merged
    return result


def is_request_side(label: str) -> bool:
    """Threads that serve requests (the loop, the threadpool), not periodic jobs."""
    return not label.startswith(("zeroparty-", "bench-"))


def _empty() -> None:
    return None


def _calls(count: int) -> None:
    for _ in range(count):
        _empty()


@dataclass(frozen=True, slots=True)
class Overhead:
    """What the profiler itself adds per call: to the callee's own time, and to the
    caller's own time (seconds), measured on a loop of calls to an empty function."""

    callee: float
    caller: float


def calibrate(timer: str, calls: int = 200_000) -> Overhead:
    best: Overhead | None = None
    for _ in range(3):
        started = time.thread_time()
        _calls(calls)
        plain = (time.thread_time() - started) / calls
        profile = cProfile.Profile(time.thread_time) if timer == "cpu" else cProfile.Profile()
        profile.enable()
        _calls(calls)
        profile.disable()
        stats = _stats_of(profile)
        callee = caller = 0.0
        for (_file, _line, name), (_cc, _nc, tt, _ct, _callers) in stats.items():
            if name == "_empty":
                callee = tt / calls
            elif name == "_calls":
                caller = max(tt / calls - plain, 0.0)
        if best is None or callee + caller < best.callee + best.caller:
            best = Overhead(callee, caller)
    assert best is not None
    return best


def corrected(stats: StatsDict, overhead: Overhead) -> StatsDict:
    """Own times less the profiler's own cost: ``callee`` per call of the function and
    ``caller`` per call it made (cumulative times are left as measured)."""
    made: dict[Func, int] = defaultdict(int)
    for _func, (_cc, _nc, _tt, _ct, callers) in stats.items():
        for caller, value in callers.items():
            made[caller] += value[1]
    out: StatsDict = {}
    for func, (cc, nc, tt, ct, callers) in stats.items():
        own = max(tt - overhead.callee * nc - overhead.caller * made[func], 0.0)
        scale = own / tt if tt > 0 else 0.0
        out[func] = (
            cc,
            nc,
            own,
            ct,
            {k: (v[0], v[1], v[2] * scale, v[3]) for k, v in callers.items()},
        )
    return out


def buckets(stats: StatsDict) -> dict[str, float]:
    """Own time per bucket; a generic builtin's time goes to its callers' buckets."""
    totals: dict[str, float] = defaultdict(float)
    for func, (_cc, _nc, tt, _ct, callers) in stats.items():
        bucket = bucket_of(func)
        if bucket != GENERIC_BUILTINS:
            totals[bucket] += tt
            continue
        spread = sum(value[2] for value in callers.values())
        if spread <= 0:
            totals["builtins (caller unknown)"] += tt
            continue
        for caller, value in callers.items():
            caller_bucket = bucket_of(caller)
            if caller_bucket == GENERIC_BUILTINS:
                caller_bucket = "builtins (caller unknown)"
            totals[caller_bucket] += tt * value[2] / spread
    return dict(totals)


def _name(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    if filename.startswith(ROOT) and "/.venv/" not in filename:
        filename = filename.removeprefix(ROOT)
    elif SITE in filename:
        filename = filename.split(SITE, 1)[1]
    elif filename.startswith(STDLIB + "/"):
        filename = filename.removeprefix(STDLIB + "/")
    return f"{filename}:{line} {name}"


COUNTERS = (
    ("SQL statements run (sqlite3 execute)", "~", "<method 'execute' of 'sqlite3.Cursor'"),
    ("SQL executemany", "~", "<method 'executemany' of 'sqlite3.Cursor'"),
    ("SQL statements compiled (cache misses)", "sqlalchemy/sql/elements.py", "_compiler"),
    ("Core/ORM executions", "sqlalchemy/engine/base.py", "_execute_context"),
    ("ORM sessions opened", "sqlalchemy/orm/session.py", "__init__"),
    ("transactions committed", "sqlalchemy/engine/base.py", "_commit_impl"),
    ("Jinja templates rendered", "jinja2/environment.py", "render"),
    ("emails validated", "email_validator/validate_email.py", "validate_email"),
    (
        "threadpool hops (jobs run by a worker thread)",
        "anyio/_backends/_asyncio.py",
        "_report_result",
    ),
)


def counters(stats: StatsDict) -> list[tuple[str, int]]:
    found = []
    for label, where, name in COUNTERS:
        calls = 0
        for (filename, _line, function), value in stats.items():
            if where == "~":
                if filename == "~" and function.startswith(name):
                    calls += value[1]
            elif filename.endswith(where) and function == name:
                calls += value[1]
        found.append((label, calls))
    return found


# --- driving one path ---------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    label: str
    result: LoadResult
    cpu_us: float  # the server process's CPU per request (answers), settle included


@dataclass(slots=True)
class Scripts:
    """The wrk script of each run of one path (``script(n)``), and what to do after."""

    script: Callable[[int], str]
    after: Callable[[LoadResult], None] = field(default=lambda _result: None)
    per_request: int = 1


def _server(
    prepared: Prepared,
    directory: Path,
    name: str,
    prefix: str,
    log: str,
    timer: str = "cpu",
    wal_autocheckpoint: int | None = None,
) -> Server:
    port = free_port()
    env = dict(
        os.environ,
        ZEROPARTY_DATABASE_URL=sqlite_url(prepared.db_file),
        ZEROPARTY_SECRET_KEYS=SECRET,
        ZEROPARTY_BASE_URL=f"http://127.0.0.1:{port}",
        ZEROPARTY_CHECKPOINT_KEY_FILE=str(directory / "checkpoint.key"),
        ZEROPARTY_CHECKPOINT_ORIGIN=CHECKPOINT_ORIGIN,
        ZEROPARTY_OUTBOX_DIR=str(directory / "outbox"),
        PYTHONPATH=str(PROJECT_ROOT),
    )
    if wal_autocheckpoint is not None:
        env["BENCH_WAL_AUTOCHECKPOINT"] = str(wal_autocheckpoint)
    command = [
        sys.executable, "-m", "bench.profile_hot_paths", "--child", prefix, log, timer, "--",
        "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log_file = directory / f"{name}-{port}.log"
    return Server(name, command, port=port, probe_path="/healthz", env=env, log_file=log_file)


def scripts_for(number: int, prepared: Prepared, server: Server) -> Scripts:
    """The same requests as :func:`bench.hot_paths.run_paths` sends on path ``number``."""
    stamp = f"{int(time.time())}prof{number}"
    tokens = LinkTokens(Settings(database_url=sqlite_url(prepared.db_file), secret_keys=(SECRET,)))
    if number in (1, 2):
        token = render_token(server)
        boxes = ("profiling",) if number == 1 else ("profiling", "newsletter")
        return Scripts(lambda n: submit_script("/f/bench", f"z{stamp}r{n}", token, boxes))
    if number == 3:
        auth = {"Authorization": f"Bearer {prepared.api_key}"}
        lua = rotate_script([("GET", p, auth, None) for p in request_paths(prepared.leads, 20_000)])
        return Scripts(lambda _n: lua)
    if number == 4:
        cookies = [
            tokens.issue(LinkPurpose.SESSION, LinkClaim(prepared.subject_ids[n], 0, nonce=f"b{n}"))
            for n in range(min(PAGE_LEADS, prepared.leads // 4))
        ]
        lua = rotate_script([("GET", "/p/", {"Cookie": f"zp_pref={c}"}, None) for c in cookies])
        return Scripts(lambda _n: lua)
    if number == 5:
        first = min(PAGE_LEADS, prepared.leads // 4)
        pairs = [
            (prepared.subject_ids[n], purpose)
            for purpose in ("product_updates", "newsletter")
            for n in range(first, prepared.leads)
        ]
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        base = rotate_script(
            [
                (
                    "POST",
                    "/u/" + tokens.issue(LinkPurpose.UNSUBSCRIBE, LinkClaim(sid, 0, (p,))),
                    form,
                    "List-Unsubscribe=One-Click",
                )
                for sid, p in pairs
            ]
        )
        cursor = Cursor(len(pairs))
        return Scripts(
            lambda _n: base.replace("local counter = 0", f"local counter = {cursor.position}"),
            cursor.advance,
        )
    if number == 6:
        at = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {prepared.api_key}"}
        return Scripts(
            lambda n: events_script("/api/events", f"z{stamp}r{n}", prepared.leads, auth, at),
            per_request=BATCH,
        )
    raise ValueError(f"no path {number} (1-6)")


def _load(server: Server, scripts: Scripts, run: int, seconds: float, directory: Path) -> Run:
    script = directory / f"run-{run}.lua"
    script.write_text(scripts.script(run))
    before = server.cpu_seconds()
    result = run_wrk(server.base_url, script, connections=CONNECTIONS, seconds=seconds)
    settle(server)
    used = server.cpu_seconds() - before
    scripts.after(result)
    return Run(server.name, result, used / max(result.requests, 1) * 1e6)


def _wait_file(path: Path) -> None:
    deadline = time.monotonic() + SNAPSHOT_WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no profile snapshot {path} after {SNAPSHOT_WAIT_S:g} s")
        time.sleep(0.2)


@dataclass(slots=True)
class Measured:
    number: int
    plain: Run
    profiled: Run
    profiles: dict[str, StatsDict]
    events: list[dict[str, Any]]
    checkpoint: str
    timer: str


def measure(
    number: int,
    prepared: Prepared,
    directory: Path,
    seconds: float,
    timer: str,
    before: Sequence[int] = (),
    plain_only: bool = False,
    wal_autocheckpoint: int | None = None,
) -> Measured:
    """Load path ``number`` on a plain server (after loading each path of ``before`` for
    ``seconds``, letting the server go idle after each, as :mod:`bench.hot_paths` does),
    then (unless ``plain_only``) on a profiled one."""
    entries = prepared.leads * len(PLANS)
    log_file = directory / "plain-events.jsonl"
    with _server(
        prepared, directory, "plain", "-", str(log_file), timer, wal_autocheckpoint
    ) as plain:
        checkpoint = wait_for_checkpoint(sqlite_url(prepared.db_file), entries)
        for index, earlier in enumerate(before):
            _load(plain, scripts_for(earlier, prepared, plain), 10 + index, seconds, directory)
        scripts = scripts_for(number, prepared, plain)
        _load(plain, scripts, 0, WARM_S, directory)
        mark = time.time()
        plain_run = _load(plain, scripts, 1, seconds, directory)
    events = [
        record
        for record in (json.loads(line) for line in log_file.read_text().splitlines())
        if record["at"] >= mark
    ]
    if plain_only:
        return Measured(number, plain_run, plain_run, {}, events, checkpoint, timer)
    prefix = directory / "profile"
    with _server(prepared, directory, "profiled", str(prefix), "-", timer) as profiled:
        wait_for_checkpoint(sqlite_url(prepared.db_file), entries)
        scripts.script = (
            scripts_for(number, prepared, profiled).script if number in (1, 2) else (scripts.script)
        )
        _load(profiled, scripts, 2, WARM_S, directory)
        os.kill(profiled.process.pid, signal.SIGUSR1)
        _wait_file(Path(f"{prefix}.1"))
        profiled_run = _load(profiled, scripts, 3, seconds, directory)
        os.kill(profiled.process.pid, signal.SIGUSR2)
        _wait_file(Path(f"{prefix}.2"))
    profiles = load_diff(Path(f"{prefix}.1"), Path(f"{prefix}.2"))
    return Measured(number, plain_run, profiled_run, profiles, events, checkpoint, timer)


# --- the summary --------------------------------------------------------------------------


def _rows(stats: StatsDict, per: float, key: Callable[[tuple[Any, ...]], float]) -> Iterator[str]:
    ordered = sorted(stats.items(), key=lambda kv: key(kv[1]), reverse=True)[:TOP]
    for func, (_cc, nc, tt, ct, _callers) in ordered:
        yield (
            f"| {nc / per:,.2f} | {tt / per * 1e6:,.1f} | {ct / per * 1e6:,.1f} | `{_name(func)}` |"
        )


def answered(stats: StatsDict) -> int:
    """Responses completed inside the profile window (uvicorn calls this once each)."""
    return sum(
        value[1]
        for (filename, _line, name), value in stats.items()
        if name == "on_response_complete" and filename.endswith("httptools_impl.py")
    )


def summary(m: Measured, keep: Path | None) -> str:
    if not m.profiles:  # --plain-only
        return "\n".join(
            [
                f"## Path {LABELS[m.number]}, plain server only",
                "",
                f"- {m.plain.result.requests_per_s:,.0f} req/s, p50 {m.plain.result.p50_ms:.1f} "
                f"ms, p99 {m.plain.result.p99_ms:.1f} ms, {m.plain.result.requests:,} answers, "
                f"{m.plain.result.errors} errors; {m.plain.cpu_us:,.0f} µs CPU/request",
                f"- {m.checkpoint}",
                "",
                "Slow job runs, write-lock holds, stalls during the load:",
                "",
                *_event_lines(m.events),
            ]
        )
    request_side: StatsDict = {}
    for label, stats in m.profiles.items():
        if is_request_side(label):
            _merge(request_side, stats)
    # The window holds the answers wrk counted and those in flight when it stopped.
    per_request = answered(request_side) or m.profiled.result.requests
    overhead = calibrate(m.timer)
    raw_total = sum(v for k, v in buckets(request_side).items() if not k.startswith("waiting"))
    own = corrected(request_side, overhead)
    totals = buckets(own)
    waiting = {k: v for k, v in totals.items() if k.startswith("waiting")}
    busy = {k: v for k, v in totals.items() if not k.startswith("waiting")}
    busy_total = sum(busy.values())
    plain_cpu = m.plain.cpu_us
    lines = [
        f"## Path {LABELS[m.number]}",
        "",
        f"- plain server: {m.plain.result.requests_per_s:,.0f} req/s, p50 "
        f"{m.plain.result.p50_ms:.1f} ms, p99 {m.plain.result.p99_ms:.1f} ms, "
        f"{m.plain.result.requests:,} answers, {m.plain.result.errors} errors; "
        f"**{plain_cpu:,.0f} µs CPU/request** (process CPU, settle included)",
        f"- profiled server ({m.timer} timer): {m.profiled.result.requests_per_s:,.0f} req/s, "
        f"p99 {m.profiled.result.p99_ms:.1f} ms, {m.profiled.result.requests:,} answers "
        f"({per_request:,} in the profile window); {m.profiled.cpu_us:,.0f} µs CPU/request; "
        f"request threads in the profile {raw_total / per_request * 1e6:,.0f} µs/request, "
        f"{busy_total / per_request * 1e6:,.0f} less the profiler's own cost (calibrated: "
        f"{overhead.callee * 1e9:,.0f} ns per call to the callee, "
        f"{overhead.caller * 1e9:,.0f} ns to the caller)",
        f"- {m.checkpoint}",
        "",
        "| bucket | µs/request (profiled, corrected) | share | µs at plain speed |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, value in sorted(busy.items(), key=lambda kv: kv[1], reverse=True):
        share = value / busy_total if busy_total else 0.0
        if share < 0.002:
            continue
        lines.append(
            f"| {name} | {value / per_request * 1e6:,.1f} | {share:.1%} | "
            f"{share * plain_cpu:,.0f} |"
        )
    for name, value in waiting.items():
        lines.append(f"| {name} | {value / per_request * 1e6:,.1f} | — | — |")
    lines += ["", "Counts per request:", ""]
    lines += [f"- {label}: {calls / per_request:,.2f}" for label, calls in counters(request_side)]
    header = [
        "| calls/req | own µs/req (corrected) | cum µs/req (as measured) | function |",
        "| ---: | ---: | ---: | --- |",
    ]
    lines += ["", f"Top {TOP} by own time (request threads):", "", *header]
    lines += _rows(own, per_request, lambda v: v[2])
    lines += ["", f"Top {TOP} by cumulative time (request threads):", "", *header]
    lines += _rows(own, per_request, lambda v: v[3])
    lines += ["", "Other threads (periodic jobs), busy µs per request of the load:", ""]
    for label, stats in sorted(m.profiles.items()):
        if is_request_side(label):
            continue
        used = {
            k: v
            for k, v in buckets(corrected(stats, overhead)).items()
            if not k.startswith("waiting")
        }
        total = sum(used.values())
        if total / per_request * 1e6 < 1:
            continue
        top = sorted(used.items(), key=lambda kv: kv[1], reverse=True)[:4]
        lines.append(
            f"- {label}: {total / per_request * 1e6:,.1f} µs/request ("
            + ", ".join(f"{k} {v / total:.0%}" for k, v in top)
            + ")"
        )
    lines += ["", "Plain server during the load: slow job runs, write-lock holds, stalls:", ""]
    lines += _event_lines(m.events)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for label, stats in m.profiles.items():
            safe = "".join(c if c.isalnum() else "-" for c in label)
            (keep / f"path{m.number}-{safe}.prof").write_bytes(marshal.dumps(stats))
        (keep / f"path{m.number}-plain-events.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in m.events)
        )
        lines.append(f"\nProfiles (pstats format) and the event log kept in {keep}.")
    return "\n".join(lines)


def _event_lines(events: list[dict[str, Any]]) -> list[str]:
    if not events:
        return ["- none above the thresholds"]
    lines = []
    jobs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    locks: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    stalls = [e for e in events if e["kind"] == "stall"]
    slow = [e for e in events if e["kind"] == "slow-request"]
    if slow:
        worst = sorted(slow, key=lambda e: -(e["queued_ms"] + e["handler_ms"]))[:5]
        lines.append(
            f"- requests over {SLOW_REQUEST_MS:g} ms inside the server: {len(slow)}; worst "
            "(queued on the loop before the handler ran + handler): "
            + ", ".join(f"{e['queued_ms']:,.0f} + {e['handler_ms']:,.0f} ms" for e in worst)
        )
    samples = [e for e in events if e["kind"] == "stall-sample"]
    for event in events:
        if event["kind"] == "job":
            jobs[event["job"]].append(event)
        elif event["kind"] == "write-lock":
            where = event["where"][0] if event["where"] else "?"
            locks[(event["thread"], where)].append(event)
    for job, runs in jobs.items():
        lines.append(
            f"- job {job}: {len(runs)} run(s) over {SLOW_MS:g} ms; wall ms "
            + ", ".join(f"{r['wall_ms']:,.0f}" for r in runs[:8])
            + "; CPU ms "
            + ", ".join(f"{r['cpu_ms']:,.0f}" for r in runs[:8])
        )
    for (thread, where), holds in sorted(locks.items(), key=lambda kv: -len(kv[1]))[:8]:
        lines.append(
            f"- write lock, thread {thread} at `{where}`: {len(holds)} time(s); max held "
            f"{max(h['held_ms'] for h in holds):,.0f} ms, max waited "
            f"{max(h['waited_ms'] for h in holds):,.0f} ms"
        )
    if stalls:
        lines.append(
            f"- event loop held by one request for >= {STALL_MS:g} ms: {len(stalls)} time(s), "
            "ms: "
            + ", ".join(f"{s['ms']:,.0f}" for s in sorted(stalls, key=lambda s: -s["ms"])[:10])
        )
        frames: dict[str, int] = defaultdict(int)
        for stall in stalls:
            frames[stall["frame"]] += 1
        lines.append("  outermost frames: " + "; ".join(f"{k} x{v}" for k, v in frames.items()))
    tops: dict[str, int] = defaultdict(int)
    for sample in samples:
        tops[sample["loop_top"].removeprefix(STDLIB + "/")] += 1
    for top, count in sorted(tops.items(), key=lambda kv: -kv[1])[:6]:
        example = next(s for s in samples if s["loop_top"].removeprefix(STDLIB + "/") == top)
        lines.append(
            f"  - during stalls the loop was at `{top}` ({count} samples), e.g. stack "
            f"{example['loop_stack'][:4]}; other threads: {example['others']}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--child"]:
        return child(arguments[1:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=int, choices=range(1, 7), help="the hot path (1-6)")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk run length")
    parser.add_argument("--leads", type=int, default=LEADS)
    parser.add_argument("--keep", type=Path, default=None, help="keep the .prof files here")
    parser.add_argument(
        "--before",
        default="",
        help="paths loaded first on the plain server, e.g. 1,2,3,4 (hot_paths' order)",
    )
    parser.add_argument(
        "--plain-only", action="store_true", help="no profiled server (latency and stalls)"
    )
    parser.add_argument(
        "--wal-autocheckpoint",
        type=int,
        default=None,
        metavar="PAGES",
        help="what-if for the plain server: PRAGMA wal_autocheckpoint on its connections "
        "(0: SQLite never checkpoints inside a request's commit)",
    )
    parser.add_argument(
        "--timer",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: each thread's CPU time (default; a loaded machine does not inflate it); "
        "wall: cProfile's clock (less overhead, counts time the process was not running)",
    )
    args = parser.parse_args(arguments)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    started, load_before = time.perf_counter(), load_average()
    with workdir() as directory:
        prepared = prepare_database(directory, args.leads)
        before = [int(p) for p in args.before.split(",") if p]
        measured = measure(
            args.path,
            prepared,
            directory,
            args.seconds,
            args.timer,
            before,
            args.plain_only,
            args.wal_autocheckpoint,
        )
        print(summary(measured, args.keep))
    print(
        f"\nMeasured on {source_state(PROJECT_ROOT)}; {args.leads:,} leads; wrk -t1 "
        f"-c{CONNECTIONS} -d{args.seconds:g}s after a {WARM_S:g} s warm-up; {args.timer} "
        f"timer; 1-minute load average {load_before:.1f} at the start, "
        f"{load_average():.1f} at the end; took "
        f"{time.perf_counter() - started:.0f} s. Absolute times are inflated by cProfile and "
        "by other load on the machine; shares within one profile hold."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
