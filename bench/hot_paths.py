"""zeroparty's HTTP hot paths beside the bare stack, in one run, on one SQLite file.

``python -m bench.hot_paths [--quick] [--workers 1,2]``

One migrated SQLite file (the demo site, a ``bench`` form and ``LEADS`` seeded leads, each
with a pending double opt-in newsletter, a confirmed product-updates grant, a profiling
grant and a sale-or-sharing refusal: :mod:`bench.synthetic_ledger`) is served at the same
time by the real ``zeroparty serve`` and by the bare stack (``uvicorn
bench.bare_stack:app``: Starlette, stdlib sqlite3 in the async endpoint, WAL + NORMAL,
statements prepared once). Both use uvicorn with uvloop and httptools and the same
number of workers. Each path is loaded with ``wrk -t1 -c32 -d10s``, zeroparty and bare
alternating, median of 3 after a warm-up (``--quick``: one 3 s run, fewer leads):

1. form submission, one consent box (profiling), a new visitor each request: zeroparty
   ``POST /f/bench`` (fields email, name, company, job_title, message; unique email and
   ``Idempotency-Key``) vs bare ``POST /submit`` with the same body.
2. the same with the double opt-in ``newsletter`` box ticked too (confirmation mail).
3. ``GET /api/consent?email=&purpose=`` with an API key, rotating over seeded leads and
   purposes, vs bare ``GET /lookup``.
4. the preference page ``GET /p/`` with a session cookie, rotating over 1,000 seeded
   leads, vs bare ``GET /page?email=``.
5. one-click ``POST /u/{token}`` (``List-Unsubscribe=One-Click``), a different (lead,
   purpose) each request, vs bare ``POST /u/{subject}/{purpose}`` (one hash-chained
   withdrawal entry, head updated).
6. ``POST /api/events``, JSON batches of 100 events of consenting (profiling) leads, vs
   bare ``POST /events`` (parse, one ``executemany`` of the 100 rows in one transaction).

Paths 1 and 3 are also measured with 2 workers (unless ``--quick`` or ``--workers 1``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import orjson

from bench.consent_lookup import request_paths, wait_for_checkpoint
from bench.databases import sqlite_url, workdir
from bench.http_load import LoadResult, run_wrk
from bench.machine import load_average, source_state
from bench.report import Options, Row, ScenarioResult, median, ratio_text
from bench.servers import Server, free_port
from bench.synthetic_ledger import PLANS, cached_sqlite, email_of
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens
from zeroparty.db import Database
from zeroparty.settings import PROJECT_ROOT, Settings
from zeroparty.site import load_site

SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway server's key)
CONNECTIONS = 32
LEADS, QUICK_LEADS = 20_000, 4_000
PAGE_LEADS = 1_000  # leads 0..999 are shown by the page path; one-click uses the others
BATCH = 100
LUA_CHUNK = 2_000
SETTLE_MAX_S, SETTLE_STEP_S, SETTLE_IDLE_CPU_S = 60.0, 0.5, 0.05
VENV_BIN = Path(sys.executable).parent
CHECKPOINT_ORIGIN = "hot-paths.bench.example/consent-ledger"
BENCH_FORM = """
[forms.bench]
title = "Bench"
consent = ["profiling", "newsletter"]
min_fill_seconds = 0
rate_limit = { count = 1000000, window_seconds = 86400 }
[[forms.bench.fields]]
name = "email"
type = "email"
[[forms.bench.fields]]
name = "name"
type = "name"
needed = true
[[forms.bench.fields]]
name = "company"
type = "company"
purposes = ["profiling"]
[[forms.bench.fields]]
name = "job_title"
type = "job_title"
purposes = ["profiling"]
[[forms.bench.fields]]
name = "message"
type = "textarea"
needed = true
"""
FIELDS = "name=Bench+User&company=ACME+Corp&job_title=Engineer&message=Hello+there"
EVENT_TYPES = ("pricing_page_viewed", "email_opened", "feature_used", "case_study_downloaded")

TARGET_SUBMIT = 0.40
TARGET_DOI = 0.90  # of path 1's zeroparty rate
TARGET_LOOKUP = 0.50
TARGET_PAGE = 0.40
TARGET_ONE_CLICK = 0.40
TARGET_EVENTS = 0.50


# --- wrk scripts --------------------------------------------------------------------------


def _lua(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _headers_lua(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in headers.items()) + "}"


def submit_script(path: str, run: str, token: str, boxes: Sequence[str]) -> str:
    """Every request a new visitor: its own email and ``Idempotency-Key``."""
    consent = "".join(f"&consent={box}" for box in boxes)
    return f"""local counter = 0
request = function()
  counter = counter + 1
  local id = "{run}-" .. counter
  local body = "email=u" .. id .. "%40hot.example&{FIELDS}{consent}&_rt={token}"
  return wrk.format("POST", "{path}", {{
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Idempotency-Key"] = id,
  }}, body)
end
"""


def rotate_script(
    requests: Sequence[tuple[str, str, dict[str, str], str | None]], start: int = 0
) -> str:
    """Send ``requests`` (method, path, headers, body) in turn from ``start``, formatted once.

    The list is built in chunks, each in a function of its own: LuaJIT refuses a function
    with more than 65,536 constants (wrk then runs without the script: ``GET /``)."""
    lines = ["local items = {}"]
    for first in range(0, len(requests), LUA_CHUNK):
        lines.append("for _, r in ipairs((function() return {")
        for method, path, headers, body in requests[first : first + LUA_CHUNK]:
            body_lua = "nil" if body is None else _lua(body)
            lines.append(
                f"  {{{_lua(method)}, {_lua(path)}, {_headers_lua(headers)}, {body_lua}}},"
            )
        lines.append("} end)()) do items[#items + 1] = r end")
    lines.append(
        f"""local requests = {{}}
local counter = {start}
init = function(args)
  for i, r in ipairs(items) do
    requests[i] = wrk.format(r[1], r[2], r[3], r[4])
  end
  items = nil
end
request = function()
  counter = counter + 1
  if counter > #requests then counter = 1 end
  return requests[counter]
end
"""
    )
    return "\n".join(lines)


def events_script(path: str, run: str, leads: int, headers: dict[str, str], at: str) -> str:
    """Each request a batch of ``BATCH`` events with fresh ids, of random seeded leads."""
    types = ", ".join(_lua(t) for t in EVENT_TYPES)
    return f"""local counter = 0
local types = {{{types}}}
local headers = {_headers_lua(headers)}
request = function()
  counter = counter + 1
  local parts = {{}}
  for i = 1, {BATCH} do
    local lead = math.random(0, {leads - 1})
    parts[i] = string.format(
      '{{"id":"{run}-%d-%d","email":"lead%07d@bench.example","type":"%s","occurred_at":"{at}"}}',
      counter, i, lead, types[(i % #types) + 1])
  end
  return wrk.format("POST", "{path}", headers, '{{"events":[' .. table.concat(parts, ",") .. ']}}')
end
"""


# --- the database and the servers ---------------------------------------------------------


@dataclass(slots=True)
class Prepared:
    db_file: Path
    api_key: str
    leads: int
    subject_ids: list[str]  # index n: the subject of email_of(n)


def prepare_database(directory: Path, leads: int) -> Prepared:
    """A copy of the cached seeded ledger, with the demo site and the ``bench`` form."""
    ledger = cached_sqlite(leads * len(PLANS))
    db_file = directory / "hot.db"
    shutil.copyfile(ledger.url.removeprefix("sqlite:///"), db_file)
    site = directory / "site.toml"
    site.write_text((PROJECT_ROOT / "site.toml").read_text(encoding="utf-8") + BENCH_FORM)
    database = Database.from_url(sqlite_url(db_file))
    try:
        load_site(database, site)
    finally:
        database.dispose()
    with sqlite3.connect(db_file) as conn:
        by_email = dict(conn.execute("SELECT email, subject_id FROM subject_profiles"))
    conn.close()
    return Prepared(db_file, ledger.api_key, leads, [by_email[email_of(n)] for n in range(leads)])


def zeroparty_server(prepared: Prepared, directory: Path, workers: int) -> Server:
    port = free_port()
    env = dict(
        os.environ,
        ZEROPARTY_DATABASE_URL=sqlite_url(prepared.db_file),
        ZEROPARTY_SECRET_KEYS=SECRET,
        ZEROPARTY_BASE_URL=f"http://127.0.0.1:{port}",
        ZEROPARTY_CHECKPOINT_KEY_FILE=str(directory / "checkpoint.key"),
        # One log name for every server on this file (the default follows the port).
        ZEROPARTY_CHECKPOINT_ORIGIN=CHECKPOINT_ORIGIN,
        ZEROPARTY_OUTBOX_DIR=str(directory / "outbox"),
    )
    command = [
        str(VENV_BIN / "zeroparty"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return Server(
        f"zeroparty-{workers}",
        command,
        port=port,
        probe_path="/healthz",
        env=env,
        log_file=directory / f"zeroparty-{workers}-{port}.log",
    )


def bare_server(prepared: Prepared, directory: Path, workers: int) -> Server:
    port = free_port()
    env = dict(os.environ, BARE_DB=str(prepared.db_file), PYTHONPATH=str(PROJECT_ROOT))
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bare_stack:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return Server(
        f"bare-{workers}",
        command,
        port=port,
        probe_path="/healthz",
        env=env,
        log_file=directory / f"bare-{workers}-{port}.log",
    )


def render_token(server: Server) -> str:
    request = urllib.request.Request(  # noqa: S310 (our own loopback server)
        server.base_url + "/f/bench", headers={"accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return str(orjson.loads(answer.read())["render_token"])


# --- measuring ----------------------------------------------------------------------------


@dataclass(slots=True)
class Side:
    """One server's side of a path: how to make the wrk script of its next run."""

    server: Server
    script: Callable[[int], str]  # run number -> Lua
    runs: list[LoadResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    after_run: Callable[[LoadResult], None] | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how often each side of a path is loaded."""

    rounds: int
    seconds: float
    warm_s: float
    directory: Path


@dataclass(slots=True)
class Measured:
    name: str
    workers: int
    zeroparty: LoadResult
    bare: LoadResult
    zeroparty_cpu_us: float
    bare_cpu_us: float
    spread: str
    errors: int
    per_request: int = 1  # events per request (path 6)


def _median_run(runs: list[LoadResult]) -> LoadResult:
    return sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2]


def settle(server: Server) -> float:
    """Wait (at most ``SETTLE_MAX_S``) until the server is idle, so work it does after
    answering (queued mail, background tasks) does not run during the other side's
    measurement; returns the seconds waited."""
    started = time.monotonic()
    before = server.cpu_seconds()
    while time.monotonic() - started < SETTLE_MAX_S:
        time.sleep(SETTLE_STEP_S)
        now = server.cpu_seconds()
        if now - before < SETTLE_IDLE_CPU_S:
            break
        before = now
    return time.monotonic() - started


def _one_run(side: Side, number: int, seconds: float, directory: Path) -> LoadResult:
    script = directory / f"{side.server.name}-{number}-{time.monotonic_ns()}.lua"
    script.write_text(side.script(number))
    cpu_before = side.server.cpu_seconds()
    result = run_wrk(side.server.base_url, script, connections=CONNECTIONS, seconds=seconds)
    settle(side.server)  # work left after the answers (mail) is the requests' too
    used = side.server.cpu_seconds() - cpu_before
    if side.after_run is not None:
        side.after_run(result)
    script.unlink()
    if result.requests:
        side.cpu_us.append(used / result.requests * 1e6)
    return result


def measure(
    name: str, workers: int, ours: Side, bare: Side, plan: Plan, per_request: int = 1
) -> Measured:
    number = 0
    for side in (ours, bare):  # warm-up: page cache, statement caches, lazy imports
        _one_run(side, number, plan.warm_s, plan.directory)
        number += 1
    for round_index in range(plan.rounds):
        order = (ours, bare) if round_index % 2 == 0 else (bare, ours)
        for side in order:
            side.runs.append(_one_run(side, number, plan.seconds, plan.directory))
            number += 1
    z, b = _median_run(ours.runs), _median_run(bare.runs)
    spread = (
        "zeroparty "
        + ", ".join(f"{r.requests_per_s * per_request:,.0f}" for r in ours.runs)
        + "; bare "
        + ", ".join(f"{r.requests_per_s * per_request:,.0f}" for r in bare.runs)
    )
    measured = Measured(
        name,
        workers,
        z,
        b,
        median(ours.cpu_us),
        median(bare.cpu_us),
        spread,
        sum(r.errors for r in ours.runs + bare.runs),
        per_request,
    )
    unit = "events/s" if per_request > 1 else "req/s"
    print(
        f"  {name} ({workers} worker(s)): zeroparty {z.requests_per_s * per_request:,.0f} "
        f"{unit}, bare {b.requests_per_s * per_request:,.0f} {unit} "
        f"({ratio_text(z.requests_per_s, b.requests_per_s)}); errors {measured.errors}",
        flush=True,
    )
    return measured


class Cursor:
    """Where the next one-click run starts in its list (each (lead, purpose) used once)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0
        self.sent = 0

    def advance(self, result: LoadResult) -> None:
        # Answers counted plus the requests still in flight when wrk stopped.
        used = result.requests + result.errors + CONNECTIONS
        self.sent += used
        self.position = (self.position + used) % self.size


def _check(server: Server, path: str, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(server.base_url + path, headers=headers or {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        if answer.status != 200:
            raise RuntimeError(f"{server.name} answered {answer.status} to {path}")
        body: bytes = answer.read()
        return body


def _same_lookups(zp: Server, bare: Server, paths: list[str], api_key: str) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}
    for path in paths[:8]:
        ours = orjson.loads(_check(zp, path, auth))
        theirs = orjson.loads(_check(bare, path.replace("/api/consent", "/lookup")))
        if (ours["status"], ours["permitted"]) != (theirs["status"], theirs["permitted"]):
            raise RuntimeError(f"zeroparty and the bare stack disagree on {path}: {ours} {theirs}")


def run_paths(
    prepared: Prepared, workers: int, which: set[int], plan: Plan, notes: list[str]
) -> dict[int, Measured]:
    """Start both servers with ``workers`` workers and measure the paths in ``which``."""
    results: dict[int, Measured] = {}
    zp = zeroparty_server(prepared, plan.directory, workers)
    bare = bare_server(prepared, plan.directory, workers)
    with zp, bare:
        entries = prepared.leads * len(PLANS)
        notes.append(
            f"{workers} worker(s): {wait_for_checkpoint(sqlite_url(prepared.db_file), entries)}."
        )
        stamp = f"{int(time.time())}w{workers}"
        if 1 in which or 2 in which:
            token = render_token(zp)
        for number, boxes in ((1, ("profiling",)), (2, ("profiling", "newsletter"))):
            if number not in which:
                continue
            tag = f"{stamp}p{number}"

            def ours(n: int, t: str = tag, b: tuple[str, ...] = boxes) -> str:
                return submit_script("/f/bench", f"z{t}r{n}", token, b)

            def theirs(n: int, t: str = tag, b: tuple[str, ...] = boxes) -> str:
                return submit_script("/submit", f"b{t}r{n}", "x", b)

            name = "submission" if number == 1 else "submission + double opt-in"
            results[number] = measure(name, workers, Side(zp, ours), Side(bare, theirs), plan)
        if 3 in which:
            paths = request_paths(prepared.leads, 20_000)
            _same_lookups(zp, bare, paths, prepared.api_key)
            auth = {"Authorization": f"Bearer {prepared.api_key}"}
            ours_lua = rotate_script([("GET", p, auth, None) for p in paths])
            bare_lua = rotate_script(
                [("GET", p.replace("/api/consent", "/lookup"), {}, None) for p in paths]
            )
            results[3] = measure(
                "consent look-up",
                workers,
                Side(zp, lambda _n: ours_lua),
                Side(bare, lambda _n: bare_lua),
                plan,
            )
        tokens = LinkTokens(
            Settings(database_url=sqlite_url(prepared.db_file), secret_keys=(SECRET,))
        )
        if 4 in which:
            page_leads = min(PAGE_LEADS, prepared.leads // 4)
            cookies = [
                tokens.issue(
                    LinkPurpose.SESSION, LinkClaim(prepared.subject_ids[n], 0, nonce=f"b{n}")
                )
                for n in range(page_leads)
            ]
            _check(zp, "/p/", {"Cookie": f"zp_pref={cookies[0]}"})
            _check(bare, "/page?" + urlencode({"email": email_of(0)}))
            ours_lua = rotate_script(
                [("GET", "/p/", {"Cookie": f"zp_pref={c}"}, None) for c in cookies]
            )
            bare_lua = rotate_script(
                [
                    ("GET", "/page?" + urlencode({"email": email_of(n)}), {}, None)
                    for n in range(page_leads)
                ]
            )
            results[4] = measure(
                "preference page",
                workers,
                Side(zp, lambda _n: ours_lua),
                Side(bare, lambda _n: bare_lua),
                plan,
            )
        if 6 in which:  # before one-click: that withdraws nothing events need, but keep order
            at = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            json_headers = {"Content-Type": "application/json"}
            auth = {**json_headers, "Authorization": f"Bearer {prepared.api_key}"}
            results[6] = measure(
                "events, batches of 100",
                workers,
                Side(
                    zp,
                    lambda n: events_script(
                        "/api/events", f"z{stamp}r{n}", prepared.leads, auth, at
                    ),
                ),
                Side(
                    bare,
                    lambda n: events_script(
                        "/events", f"b{stamp}r{n}", prepared.leads, json_headers, at
                    ),
                ),
                plan,
                per_request=BATCH,
            )
        if 5 in which:
            results[5] = _one_click(prepared, zp, bare, tokens, plan, workers, notes)
    return results


def _one_click(
    prepared: Prepared,
    zp: Server,
    bare: Server,
    tokens: LinkTokens,
    plan: Plan,
    workers: int,
    notes: list[str],
) -> Measured:
    first = min(PAGE_LEADS, prepared.leads // 4)
    pairs = [
        (prepared.subject_ids[n], purpose)
        for purpose in ("product_updates", "newsletter")
        for n in range(first, prepared.leads)
    ]
    body = "List-Unsubscribe=One-Click"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    ours_requests = [
        (
            "POST",
            "/u/" + tokens.issue(LinkPurpose.UNSUBSCRIBE, LinkClaim(sid, 0, (purpose,))),
            form,
            body,
        )
        for sid, purpose in pairs
    ]
    bare_requests = [("POST", f"/u/{sid}/{purpose}", form, body) for sid, purpose in pairs]
    ours_cursor, bare_cursor = Cursor(len(pairs)), Cursor(len(pairs))
    # The list is written once; each run starts where the previous one stopped.
    ours_base, bare_base = rotate_script(ours_requests), rotate_script(bare_requests)

    def at(base: str, cursor: Cursor) -> Callable[[int], str]:
        return lambda _n: base.replace("local counter = 0", f"local counter = {cursor.position}")

    measured = measure(
        "one-click unsubscribe",
        workers,
        Side(zp, at(ours_base, ours_cursor), after_run=ours_cursor.advance),
        Side(bare, at(bare_base, bare_cursor), after_run=bare_cursor.advance),
        plan,
    )
    if ours_cursor.sent > len(pairs):
        notes.append(
            f"one-click: zeroparty was sent {ours_cursor.sent:,} requests for {len(pairs):,} "
            "distinct (lead, purpose) pairs, so some repeated an already withdrawn pair "
            "(less work): seed more leads."
        )
    return measured


# --- the report ---------------------------------------------------------------------------


def _figure(result: LoadResult, cpu_us: float, per_request: int) -> str:
    if per_request > 1:
        return (
            f"{result.requests_per_s * per_request:,.0f} events/s "
            f"({result.requests_per_s:,.0f} batches/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms); {cpu_us / per_request:,.0f} µs CPU/event"
        )
    return (
        f"{result.requests_per_s:,.0f}/s (p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms); {cpu_us:,.0f} µs CPU/request"
    )


TARGETS = {
    1: TARGET_SUBMIT,
    3: TARGET_LOOKUP,
    4: TARGET_PAGE,
    5: TARGET_ONE_CLICK,
    6: TARGET_EVENTS,
}
LABELS = {
    1: "1. form submission, 1 box, new visitor",
    2: "2. the same + double opt-in box",
    3: "3. `GET /api/consent` look-up",
    4: "4. preference page `GET /p/`",
    5: "5. one-click `POST /u/{token}`",
    6: "6. `POST /api/events`, batches of 100",
}


def rows_for(results: dict[tuple[int, int], Measured]) -> list[Row]:
    rows = []
    for (number, workers), m in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ratio = m.zeroparty.requests_per_s / m.bare.requests_per_s if m.bare.requests_per_s else 0
        met: bool | None
        if number == 2:
            plain = results.get((1, workers))
            share = (
                m.zeroparty.requests_per_s / plain.zeroparty.requests_per_s
                if plain and plain.zeroparty.requests_per_s
                else 0.0
            )
            target = f">= {TARGET_DOI:.0%} of path 1's zeroparty rate: {share:.0%}"
            met = share >= TARGET_DOI
        elif number == 1 and workers > 1:
            target, met = "— (target is for 1 worker)", None
        else:
            target, met = f">= {TARGETS[number]:.0%}", ratio >= TARGETS[number]
        rows.append(
            Row(
                f"{LABELS[number]} ({workers} worker{'s' if workers > 1 else ''})",
                _figure(m.zeroparty, m.zeroparty_cpu_us, m.per_request),
                _figure(m.bare, m.bare_cpu_us, m.per_request),
                ratio_text(m.zeroparty.requests_per_s, m.bare.requests_per_s),
                target,
                met,
            )
        )
    return rows


def run(options: Options, workers: Sequence[int] | None = None) -> ScenarioResult:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is required for this benchmark (apt-get install wrk)")
    quick = options.quick
    worker_counts = list(workers) if workers else ([1] if quick else [1, 2])
    leads = QUICK_LEADS if quick else LEADS
    rounds, seconds, warm_s = (1, 3.0, 1.0) if quick else (3, 10.0, 2.0)
    started, load_before = time.perf_counter(), load_average()
    commit = source_state(PROJECT_ROOT)
    result = ScenarioResult(
        title="Hot paths",
        command="python -m bench.hot_paths" + (" --quick" if quick else ""),
        what=(
            f"SQLite, one migrated file with the demo site, a `bench` form and {leads:,} "
            "seeded leads, served at the same time by `zeroparty serve --workers N` and by "
            "the bare stack (`uvicorn bench.bare_stack:app --workers N`: Starlette, stdlib "
            "sqlite3 called in the async endpoint, no threadpool, WAL + synchronous=NORMAL, "
            "one connection per worker, statements prepared once; uvloop and httptools for "
            f"both). Load: `wrk -t1 -c{CONNECTIONS} -d{seconds:g}s`, zeroparty and bare "
            f"alternating, median of {rounds} after a {warm_s:g} s warm-up. Paths: (1) "
            "`POST /f/bench` (email, name, company, job_title, message; the profiling box; "
            "a new email and Idempotency-Key each request) vs bare `POST /submit` (subject + "
            "one hash-chained entry per box, head updated, 303); (2) the same with the double "
            "opt-in newsletter box ticked too; (3) `GET /api/consent` with an API key over "
            "20,000 rotating (lead, purpose) pairs vs bare `GET /lookup` (same answer "
            f"fields); (4) `GET /p/` with the session cookies of {PAGE_LEADS:,} leads vs a "
            "bare Jinja page of the same lead's purposes, notices, states and topics; (5) "
            "`POST /u/{token}` with `List-Unsubscribe=One-Click`, each request another (lead, "
            "purpose), vs a bare append of one hash-chained withdrawal + head update; (6) "
            f"`POST /api/events` with {BATCH} events of consenting leads per batch vs a bare "
            "JSON parse + one executemany of the rows in one transaction. After each run the "
            "server is left to go idle (work it does after answering, such as mail, is not "
            "run during the other side's measurement). CPU/request: the server processes' "
            "CPU time over the answers, that idle wait included (median of runs), which "
            "other load on the machine hardly changes."
        ),
    )
    measured: dict[tuple[int, int], Measured] = {}
    print(f"hot paths: {leads:,} leads, workers {worker_counts}", flush=True)
    with workdir() as directory:
        prepared = prepare_database(directory, leads)
        for count in worker_counts:
            which = {1, 2, 3, 4, 5, 6} if count == 1 else {1, 3}
            plan = Plan(rounds, seconds, warm_s, directory)
            figures = run_paths(prepared, count, which, plan, result.notes)
            for number, m in figures.items():
                measured[(number, count)] = m
    result.rows = rows_for(measured)
    for (number, count), m in sorted(measured.items()):
        unit = "events/s" if m.per_request > 1 else "req/s"
        result.notes.append(f"path {number}, {count} worker(s) runs, {unit}: {m.spread}.")
        if m.errors:
            result.notes.append(f"path {number}, {count} worker(s): {m.errors} error answers.")
    result.notes.append(
        f"Measured on {commit}; 1-minute load average {load_before:.1f} at the start, "
        f"{load_average():.1f} at the end; took {time.perf_counter() - started:.0f} s."
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one 3 s run, fewer leads")
    parser.add_argument("--workers", default=None, help="worker counts, e.g. 1,2")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")] if args.workers else None
    print(run(Options(quick=args.quick, postgres_url=None), workers).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
