"""Form submissions per second: zeroparty's ``POST /f/{slug}`` beside a bare Starlette
endpoint that parses the same form and inserts the same rows, in the same run.

zeroparty: the real server (``zeroparty serve --workers N``) on a migrated database with
the demo site plus a ``bench`` form (email, name, company, job title, message; one
consent box, profiling; no minimum fill time; a rate limit high enough not to bite).
Each request is a distinct visitor (its own email and ``Idempotency-Key``): lead
created, 5 answers kept, one ledger entry with evidence and projection, the idempotency
record and the rate counter, then the 303 to the thank-you page.

Baseline (same uvicorn, same database kind, same workers): an ``async`` Starlette
endpoint parsing the urlencoded body and, in the threadpool, inserting the same rows
into the same migrated tables with SQLAlchemy Core statements built once (subject,
profile, submission, 5 answers, ledger entry + evidence + state + head, idempotency
record, rate counter upsert), then a 303.

Load: ``wrk -t1 -c32 --latency`` with a Lua script making every request unique (the
bounded asyncio generator of :mod:`bench.http_load` is not used: wrk is installed here).

Known against unknown addresses (one worker, after the load): ``KNOWN_COUNT`` leads are
made first, then the same submission is sent alternately under one of those addresses
(held until the owner confirms, with a mail queued) and under a new one (lead created,
answers kept, ledger entry), one request at a time on a new connection each; the
medians of the two latencies are compared (the answers themselves are byte-identical,
as the tests check).

Run alone: ``python -m bench.capture_submissions [--quick] [--no-postgres] [--no-sqlite]``.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Table, bindparam, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bench.databases import (
    PostgresTemplate,
    SqliteTemplate,
    bare_engine,
    postgres_available,
    workdir,
)
from bench.http_load import have_wrk, parse_wrk
from bench.servers import Server, free_port
from capture.models import Answer, IdempotencyRecord, RateCounter, Submission
from capture.views import EMBED_JS
from consent_ledger.models import (
    ConsentEvent,
    ConsentEvidence,
    ConsentState,
    LedgerHead,
    Subject,
    SubjectProfile,
)
from zeroparty.db import Database, make_engine
from zeroparty.site import load_site

SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 (a throwaway server's key)
CONNECTIONS = 32
KNOWN_COUNT = 200
ADMIN_URL = os.environ.get(
    "ZEROPARTY_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
VENV_BIN = Path(sys.executable).parent
BASELINE_DB_ENV = "ZEROPARTY_BENCH_CAPTURE_DB"
BENCH_FORM = """
[forms.bench]
title = "Bench"
consent = ["profiling"]
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

LUA = """
local counter = 0
local run = "%(run)s"
local token = "%(token)s"
request = function()
  counter = counter + 1
  local id = run .. "-" .. counter
  local body = "email=u" .. id .. "%%40bench.example&%(fields)s&consent=profiling&_rt=" .. token
  return wrk.format("POST", "/f/bench", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Idempotency-Key"] = id,
  }, body)
end
"""


# --- the baseline ---------------------------------------------------------------------

_t = {
    name: cast(Table, model.__table__)
    for name, model in {
        "subjects": Subject,
        "profiles": SubjectProfile,
        "submissions": Submission,
        "answers": Answer,
        "events": ConsentEvent,
        "evidence": ConsentEvidence,
        "state": ConsentState,
        "head": LedgerHead,
        "idempotency": IdempotencyRecord,
        "counters": RateCounter,
    }.items()
}
_INSERTS = {name: insert(table) for name, table in _t.items()}
_LOCK_HEAD = select(_t["head"].c.seq, _t["head"].c.hash).with_for_update()
_UPDATE_HEAD = update(_t["head"]).values(seq=bindparam("s"), hash=bindparam("h"))


def _upsert(dialect: str) -> Any:
    module: Any = sqlite if dialect == "sqlite" else postgresql
    counters = _t["counters"]
    return module.insert(counters).on_conflict_do_update(
        index_elements=["bucket", "window_start"], set_={"count": counters.c.count + 1}
    )


def baseline_app() -> Starlette:
    """The bare endpoint: parse the form, insert the same rows, answer 303."""
    engine = bare_engine(os.environ[BASELINE_DB_ENV], pool_size=10)
    upsert = _upsert(engine.dialect.name)

    def store(values: dict[str, str], key: str) -> None:
        now = time.time()
        moment = datetime.fromtimestamp(now, UTC)  # UTCDateTime stores it moment on SQLite
        subject = secrets.token_hex(16)
        submission = secrets.token_hex(16)
        with engine.begin() as connection:
            seq, prev = connection.execute(_LOCK_HEAD).one()
            connection.execute(
                _INSERTS["subjects"], {"id": subject, "locale": "en", "created_at": moment}
            )
            connection.execute(
                _INSERTS["profiles"],
                {"subject_id": subject, "email": values["email"], "name": None,
                 "created_at": moment, "updated_at": moment},
            )  # fmt: skip
            connection.execute(
                upsert, {"bucket": hashlib.sha256(b"127.0.0.1").hexdigest(),
                         "window_start": int(now) // 86400 * 86400, "count": 1}
            )  # fmt: skip
            connection.execute(
                _INSERTS["submissions"],
                {"id": submission, "definition_id": 1, "subject_id": subject, "locale": "en",
                 "created_at": moment},
            )  # fmt: skip
            connection.execute(
                _INSERTS["answers"],
                [{"submission_id": submission, "subject_id": subject, "field": name,
                  "value": values[name]}
                 for name in ("email", "name", "company", "job_title", "message")],
            )  # fmt: skip
            seq += 1
            digest = hashlib.sha256(f"{prev}{subject}{seq}".encode()).hexdigest()
            connection.execute(
                _INSERTS["events"],
                {"seq": seq, "subject_id": subject, "purpose_key": "profiling",
                 "action": "granted", "confirmation_required": False, "notice_sha256": "0" * 64,
                 "source": "form", "method": "checkbox", "occurred_at": moment,
                 "recorded_at": moment, "evidence_sha256": digest, "prev_hash": prev,
                 "hash": digest},
            )  # fmt: skip
            connection.execute(_INSERTS["evidence"], {"seq": seq, "salt": "0" * 32, "body": "{}"})
            connection.execute(
                _INSERTS["state"],
                {"subject_id": subject, "purpose_key": "profiling", "status": "granted",
                 "permitted": True, "since": moment, "notice_sha256": "0" * 64,
                 "last_seq": seq, "last_occurred_at": moment},
            )  # fmt: skip
            connection.execute(_UPDATE_HEAD, {"s": seq, "h": digest})
            connection.execute(
                _INSERTS["idempotency"],
                {"key": hashlib.sha256(key.encode()).hexdigest(), "request_sha256": digest,
                 "submission_id": submission, "response": "{}", "created_at": moment},
            )  # fmt: skip

    async def submit(request: Request) -> Response:
        values = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        await run_in_threadpool(store, values, request.headers.get("idempotency-key", ""))
        return RedirectResponse("/thanks", status_code=303)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/f/bench", submit, methods=["POST"]), Route("/healthz", healthz)]
    )


# --- running ---------------------------------------------------------------------------


def _prepare(url: str, directory: Path) -> None:
    site = directory / "site.toml"
    demo = (Path(__file__).resolve().parents[1] / "site.toml").read_text(encoding="utf-8")
    site.write_text(demo + BENCH_FORM, encoding="utf-8")
    engine = make_engine(url)
    try:
        load_site(Database(engine), site)
    finally:
        engine.dispose()


def _count(url: str, table: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def _render_token(base_url: str) -> str:
    request = urllib.request.Request(  # noqa: S310 (our own loopback server)
        base_url + "/f/bench", headers={"accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return str(orjson.loads(answer.read())["render_token"])


def _server(kind: str, url: str, workers: int, directory: Path) -> Server:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ZEROPARTY_DATABASE_URL": url,
        "ZEROPARTY_SECRET_KEYS": SECRET,
        "ZEROPARTY_CHECKPOINT_KEY_FILE": str(directory / "checkpoint.key"),
        "ZEROPARTY_OUTBOX_DIR": str(directory / "outbox"),
        BASELINE_DB_ENV: url,
    }
    if kind == "zeroparty":
        command = [str(VENV_BIN / "zeroparty"), "serve", "--port", str(port),
                   "--workers", str(workers)]  # fmt: skip
    else:
        command = [str(VENV_BIN / "uvicorn"), "bench.capture_submissions:baseline_app",
                   "--factory", "--port", str(port), "--workers", str(workers),
                   "--log-level", "warning", "--no-access-log"]  # fmt: skip
    return Server(
        f"{kind}-{workers}",
        command,
        port=port,
        probe_path="/healthz",
        env=env,
        log_file=directory / f"{kind}-{workers}-{port}.log",
    )


def _load(base_url: str, token: str, seconds: float, directory: Path) -> dict[str, Any]:
    script = directory / f"post-{secrets.token_hex(4)}.lua"
    script.write_text(LUA % {"run": secrets.token_hex(4), "token": token, "fields": FIELDS})
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency",
               "-s", str(script), base_url]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    load = parse_wrk(result.stdout)
    return {
        "requests_per_s": round(load.requests_per_s, 1),
        "p50_ms": round(load.p50_ms, 2),
        "p99_ms": round(load.p99_ms, 2),
        "requests": load.requests,
        "errors": load.errors,
    }


def _post_once(base_url: str, token: str, email: str) -> tuple[float, int]:
    """One submission on a new connection: its latency (seconds) and status."""
    host, port = base_url.removeprefix("http://").split(":")
    body = f"email={email.replace('@', '%40')}&{FIELDS}&consent=profiling&_rt={token}"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Idempotency-Key": secrets.token_hex(16),
    }
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        started = time.perf_counter()
        connection.request("POST", "/f/bench", body, headers)
        answer = connection.getresponse()
        answer.read()
        return time.perf_counter() - started, answer.status
    finally:
        connection.close()


def known_vs_unknown(base_url: str, token: str, count: int) -> dict[str, Any]:
    """Median latency of a submission under a known address and under a new one."""
    run = secrets.token_hex(4)
    known = [f"known-{run}-{i}@bench.example" for i in range(count)]
    for email in known:
        _post_once(base_url, token, email)
    latencies: dict[str, list[float]] = {"known": [], "unknown": []}
    statuses: set[int] = set()
    for i, email in enumerate(known):
        for kind, address in (("known", email), ("unknown", f"new-{run}-{i}@bench.example")):
            seconds, status = _post_once(base_url, token, address)
            latencies[kind].append(seconds)
            statuses.add(status)
    return {
        "requests_each": count,
        "statuses": sorted(statuses),
        "known_p50_ms": round(statistics.median(latencies["known"]) * 1000, 2),
        "unknown_p50_ms": round(statistics.median(latencies["unknown"]) * 1000, 2),
    }


def _measure(database: str, url_for: Any, workers: int, seconds: float,
             directory: Path) -> dict[str, Any]:  # fmt: skip
    figures: dict[str, Any] = {"database": database, "workers": workers}
    for kind in ("baseline", "zeroparty"):
        url = url_for()
        _prepare(url, directory)
        with _server(kind, url, workers, directory) as server:
            token = _render_token(server.base_url) if kind == "zeroparty" else "x"
            _load(server.base_url, token, 1.0, directory)  # warm-up
            figures[kind] = _load(server.base_url, token, seconds, directory)
            if kind == "zeroparty" and workers == 1:
                figures["known_vs_unknown"] = known_vs_unknown(
                    server.base_url, token, KNOWN_COUNT // 4 if seconds < 10 else KNOWN_COUNT
                )
        figures[kind]["rows_stored"] = _count(url, "capture_submissions")
    figures["ratio"] = round(
        figures["zeroparty"]["requests_per_s"] / figures["baseline"]["requests_per_s"], 3
    )
    return figures


def embed_js_size() -> dict[str, int]:
    return {"bytes": len(EMBED_JS), "gzip_bytes": len(gzip.compress(EMBED_JS, 9))}


def run(quick: bool, postgres: bool = True, sqlite: bool = True) -> dict[str, Any]:
    """Measure and return the figures (``quick``: 3 s per load instead of 10 s)."""
    if not have_wrk():
        raise RuntimeError("wrk is required for this benchmark (apt-get install wrk)")
    seconds = 3.0 if quick else 10.0
    results: list[dict[str, Any]] = []
    with workdir() as directory:
        if sqlite:
            sqlite_template = SqliteTemplate(directory)
            for workers in (1, 2):
                results.append(
                    _measure("sqlite", sqlite_template.fresh, workers, seconds, directory)
                )
        if postgres and postgres_available(ADMIN_URL):
            template = PostgresTemplate(ADMIN_URL)
            try:
                for workers in (1, 2):
                    results.append(
                        _measure("postgresql", template.fresh, workers, seconds, directory)
                    )
            finally:
                template.close()
    return {
        "scenario": "capture submissions",
        "load": f"wrk -t1 -c{CONNECTIONS} -d{seconds:g}s, every request a new visitor",
        "results": results,
        "embed_js": embed_js_size(),
    }


def _table(figures: dict[str, Any]) -> str:
    lines = [
        "| database | workers | zeroparty req/s | p50 / p99 ms | baseline req/s | p50 / p99 ms "
        "| ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in figures["results"]:
        z, b = row["zeroparty"], row["baseline"]
        lines.append(
            f"| {row['database']} | {row['workers']} | {z['requests_per_s']:.0f} "
            f"| {z['p50_ms']:.1f} / {z['p99_ms']:.1f} | {b['requests_per_s']:.0f} "
            f"| {b['p50_ms']:.1f} / {b['p99_ms']:.1f} | {row['ratio']:.0%} |"
        )
    for row in figures["results"]:
        if "known_vs_unknown" in row:
            k = row["known_vs_unknown"]
            lines.append(
                f"\n{row['database']}, 1 worker: median of {k['requests_each']} submissions, "
                f"known address {k['known_p50_ms']:.1f} ms, unknown {k['unknown_p50_ms']:.1f} ms"
            )
    size = figures["embed_js"]
    lines.append(f"\nembed.js: {size['bytes']} bytes, {size['gzip_bytes']} bytes gzipped")
    return "\n".join(lines)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    figures = run(
        quick, postgres="--no-postgres" not in sys.argv, sqlite="--no-sqlite" not in sys.argv
    )
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(_table(figures))
