"""Sustained load: a steady rate of mixed traffic on real ``zeroparty serve`` workers.

    python -m bench.soak [--seconds 120] [--rate 40] [--workers 1,2,4]
                         [--db sqlite,postgresql] [--postgres-url URL]
                         [--max-seconds 10] [--no-report]

For each database and worker count: a fresh migrated database with 300 leads, then
``zeroparty serve --workers N`` on loopback, then for ``--seconds`` an open-loop load at
``--rate`` requests per second (each request starts at its scheduled moment whatever
the earlier ones do, so a slow server shows as latency, not as a lower rate): 40 %
form submissions (new leads, JSON, two consent boxes), 40 % consent look-ups
(``GET /api/consent``), 20 % preference page renders (``GET /p/{token}``: link checked,
session cookie set, page rendered). Latency is counted from the scheduled start.
Every 2 s the resident memory of the server's processes is sampled. Then a short
closed-loop phase (``--max-seconds``, 24 concurrent clients, the same mix) shows the
throughput the workers reach, and ``zeroparty ledger verify`` runs on the result.

Figures go to ``bench/soak.md`` (which ``bench.run_all`` appends to ``BENCHMARKS.md``)
and into ``BENCHMARKS.md``'s "Sustained load" section. The load generator runs on the
same machine (asyncio, one process): on 2 cores it competes with the server for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx2

from bench.databases import PostgresTemplate, SqliteTemplate, postgres_available, workdir
from bench.machine import describe, load_average, source_state
from bench.measured_process import tree_rss_mb
from bench.report import percentile
from bench.servers import Server, free_port
from capture.tokens import CaptureTokens, RenderToken
from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens, current_version
from zeroparty.apikeys import create_api_key
from zeroparty.db import Database
from zeroparty.settings import PROJECT_ROOT, Settings

SECRET = "soak-secret-key-for-zeroparty-bench"  # noqa: S105  (throwaway bench databases)
LEADS = 300
MAX_IN_FLIGHT = 400
MAX_CLIENTS = 24
SAMPLE_EVERY_S = 2.0
REPORT = PROJECT_ROOT / "BENCHMARKS.md"
SECTION = "## Sustained load (soak)"
SOAK_MD = Path(__file__).resolve().parent / "soak.md"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class Traffic:
    """What the load generator needs to build requests for one database."""

    base_url: str
    api_key: str
    emails: list[str]
    links: list[str]
    render: RenderToken
    tokens: CaptureTokens

    def submission(self) -> tuple[str, str, dict[str, object], dict[str, str]]:
        token = replace(self.render, rendered_at=time.time() - 60,
                        submission_id=secrets.token_hex(16))  # fmt: skip
        n = random.randrange(1 << 24)
        body = {
            "fields": {"email": f"soak-{uuid.uuid4().hex[:12]}@example.com",
                       "name": "Soak Lead", "message": "hello"},
            "consent": ["newsletter", "profiling"],
            "render_token": self.tokens.issue_render(token),
        }  # fmt: skip
        headers = {"Accept": "application/json",
                   "X-Forwarded-For": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"}  # fmt: skip
        return "POST", "/f/contact", body, headers

    def lookup(self) -> tuple[str, str, None, dict[str, str]]:
        email = random.choice(self.emails)
        purpose = random.choice(("newsletter", "profiling"))
        return ("GET", f"/api/consent?email={email}&purpose={purpose}", None,
                {"Authorization": f"Bearer {self.api_key}"})  # fmt: skip

    def preference_page(self) -> tuple[str, str, None, dict[str, str]]:
        return "GET", f"/p/{random.choice(self.links)}", None, {"Sec-Fetch-Site": "none"}

    def pick(self) -> tuple[str, tuple[str, str, object, dict[str, str]]]:
        roll = random.random()
        if roll < 0.4:
            return "submission", self.submission()
        if roll < 0.8:
            return "lookup", self.lookup()
        return "preference page", self.preference_page()


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    dropped: int = 0

    def add(self, kind: str, seconds: float, ok: bool) -> None:
        self.latencies.setdefault(kind, []).append(seconds * 1000)
        if not ok:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def all(self) -> list[float]:
        return [v for values in self.latencies.values() for v in values]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + self.dropped


async def _one(client: httpx2.AsyncClient, traffic: Traffic, samples: Samples,
               started: float) -> None:  # fmt: skip
    kind, (method, path, body, headers) = traffic.pick()
    try:
        answer = await client.request(method, path, json=body, headers=headers,
                                      follow_redirects=True)  # fmt: skip
        ok = answer.status_code < 400
    except httpx2.HTTPError:
        ok = False
    samples.add(kind, time.perf_counter() - started, ok)


async def open_loop(traffic: Traffic, rate: float, seconds: float) -> Samples:
    samples = Samples()
    limits = httpx2.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)
    async with httpx2.AsyncClient(base_url=traffic.base_url, timeout=30, limits=limits) as client:
        start = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        for i in range(int(rate * seconds)):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= MAX_IN_FLIGHT:
                samples.dropped += 1  # the server is that far behind: counted as an error
                continue
            task = asyncio.create_task(_one(client, traffic, samples, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=60)
    return samples


async def closed_loop(traffic: Traffic, clients: int, seconds: float) -> tuple[int, int]:
    """Requests answered (and errors) by ``clients`` loops sending back to back."""
    done = [0, 0]
    stop = time.perf_counter() + seconds

    async def loop(client: httpx2.AsyncClient) -> None:
        while time.perf_counter() < stop:
            samples = Samples()
            await _one(client, traffic, samples, time.perf_counter())
            done[0] += 1
            done[1] += samples.error_count

    async with httpx2.AsyncClient(base_url=traffic.base_url, timeout=30) as client:
        await asyncio.gather(*(loop(client) for _ in range(clients)))
    return done[0], done[1]


def seed(url: str) -> tuple[str, list[str], list[str]]:
    """An API key and ``LEADS`` leads with consent; their emails and preference links."""
    database = Database.from_url(url)
    settings = Settings(database_url=url, secret_keys=(SECRET,))
    links = LinkTokens(settings)
    emails = [f"lead{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(LEADS)]
    try:
        with database.write() as session:
            api_key = create_api_key(session, "soak")
            notice = _notice(session, "profiling")
            for email in emails:
                record_consent(session, ConsentRecord(
                    email=email, purpose="profiling", action=ConsentAction.GRANTED,
                    source=ConsentSource.API, method=ConsentMethod.ELECTRONIC,
                    notice_sha256=notice, evidence={"bench": "soak"}))  # fmt: skip
        tokens = []
        with database.read() as session:
            for email in emails:
                subject_id = find_subject_id(session, email)
                assert subject_id is not None
                claim = LinkClaim(subject_id, current_version(session, subject_id))
                tokens.append(links.issue(LinkPurpose.MANAGE, claim))
    finally:
        database.dispose()
    return api_key, emails, tokens


def _notice(session: object, purpose: str) -> str:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from consent_ledger.models import NoticeVersion

    assert isinstance(session, Session)
    stmt = (
        select(NoticeVersion.sha256)
        .where(NoticeVersion.purpose_key == purpose, NoticeVersion.locale == "en")
        .order_by(NoticeVersion.version.desc())
    )
    return str(session.execute(stmt).scalars().first())


@dataclass
class Result:
    db: str
    workers: int
    rate: float
    seconds: float
    samples: Samples
    rss_mb: list[tuple[float, float]]
    max_rps: float
    max_errors: int
    verify_ok: bool
    verify_s: float
    entries: str


def run_config(db: str, url: str, workers: int, args: argparse.Namespace,
               scratch: Path) -> Result:  # fmt: skip
    api_key, emails, links = seed(url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROPARTY_")}
    env.update(
        ZEROPARTY_DATABASE_URL=url,
        ZEROPARTY_SECRET_KEYS=SECRET,
        ZEROPARTY_BASE_URL=f"http://127.0.0.1:{port}",
        ZEROPARTY_OUTBOX_DIR=str(scratch / "outbox"),
        ZEROPARTY_CHECKPOINT_KEY_FILE=str(scratch / "checkpoint.key"),
    )
    command = [sys.executable, "-m", "zeroparty.cli", "serve", "--port", str(port),
               "--workers", str(workers)]  # fmt: skip
    log = scratch / f"serve-{db}-{workers}.log"
    with Server("zeroparty", command, port=port, probe_path="/healthz", env=env,
                log_file=log) as server:  # fmt: skip
        answer = httpx2.get(server.base_url + "/f/contact",
                            headers={"Accept": "application/json"}, timeout=10)  # fmt: skip
        tokens = CaptureTokens((SECRET,))
        traffic = Traffic(server.base_url, api_key, emails, links,
                          tokens.read_render(answer.json()["render_token"]), tokens)  # fmt: skip
        asyncio.run(closed_loop(traffic, 4, 2.0))  # warm-up: every worker, every pool
        rss: list[tuple[float, float]] = []
        stop = [False]

        async def sampler(start: float) -> None:
            while not stop[0]:
                rss.append((time.perf_counter() - start,
                            tree_rss_mb(server.process.pid, os.getpid())))  # fmt: skip
                await asyncio.sleep(SAMPLE_EVERY_S)

        async def soak() -> Samples:
            start = time.perf_counter()
            watcher = asyncio.create_task(sampler(start))
            try:
                return await open_loop(traffic, args.rate, args.seconds)
            finally:
                stop[0] = True
                await watcher

        samples = asyncio.run(soak())
        answered, max_errors = asyncio.run(closed_loop(traffic, MAX_CLIENTS, args.max_seconds))
    started = time.perf_counter()
    verify = subprocess.run(
        [sys.executable, "-m", "zeroparty.cli", "ledger", "verify", "--quiet"],
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    verify_s = time.perf_counter() - started
    counted = re.search(r"([\d,]+) entries", verify.stdout)
    entries = f"{counted.group(1)} entries" if counted else "?"
    return Result(db, workers, args.rate, args.seconds, samples, rss,
                  answered / args.max_seconds, max_errors, verify.returncode == 0,
                  verify_s, entries)  # fmt: skip


def _ms(values: list[float], fraction: float) -> str:
    return f"{percentile(values, fraction):.1f}" if values else "—"


def _rss_text(rss: list[tuple[float, float]]) -> str:
    if len(rss) < 4:
        return "—"
    # At the start, a quarter, half, three quarters and the end of the soak.
    marks = [rss[min(len(rss) - 1, round(q * (len(rss) - 1)))] for q in (0, 0.25, 0.5, 0.75, 1)]
    half = rss[len(rss) // 2 :]
    minutes = (half[-1][0] - half[0][0]) / 60 or 1
    slope = (half[-1][1] - half[0][1]) / minutes
    steps = " → ".join(f"{mb:.0f}" for _, mb in marks)
    return f"{steps} MB ({slope:+.1f} MB/min in the 2nd half)"


def render(results: list[Result], args: argparse.Namespace, started: datetime,
           load_before: float, load_after: float) -> str:  # fmt: skip
    lines = [
        SECTION,
        "",
        f"`python -m bench.soak --seconds {args.seconds:g} --rate {args.rate:g} "
        f"--workers {args.workers} --db {args.db} --max-seconds {args.max_seconds:g}`",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC on {source_state(PROJECT_ROOT)}. Open-loop "
        f"load at a steady {args.rate:g} requests/s for {args.seconds:g} s per row "
        "(40 % JSON form submissions of a new lead, 40 % `GET /api/consent`, 20 % "
        "preference page renders `GET /p/{token}`), latency from each request's scheduled "
        "start; then a closed loop of 24 clients for the throughput column; then "
        "`zeroparty ledger verify` on the database. Server memory: resident memory of "
        "all serve processes, sampled every 2 s. The load generator (Python asyncio, "
        "one process) shares the 2 cores with the server and the database.",
        "",
        *(
            line
            for line in describe(args.postgres_url if "postgresql" in args.db else None)
            if not line.startswith("- load generator")
        ),
        "",
        "| database | workers | requests | errors | p50 ms | p95 ms | p99 ms "
        "| server memory over the soak | closed-loop req/s | ledger verify |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        values = r.samples.all
        errors = r.samples.error_count
        rate = f"{errors} ({100 * errors / max(len(values), 1):.2f} %)"
        verify = f"exit 0, {r.entries} ({r.verify_s:.1f} s)" if r.verify_ok else "**FAILED**"
        lines.append(
            f"| {r.db} | {r.workers} | {len(values):,} | {rate} | {_ms(values, 0.5)} "
            f"| {_ms(values, 0.95)} | {_ms(values, 0.99)} | {_rss_text(r.rss_mb)} "
            f"| {r.max_rps:,.0f} ({r.max_errors} errors) | {verify} |"
        )
    lines += ["", "Per kind of request (p50 / p99 ms):", ""]
    for r in results:
        kinds = ", ".join(
            f"{kind} {_ms(v, 0.5)} / {_ms(v, 0.99)}"
            for kind, v in sorted(r.samples.latencies.items())
        )
        lines.append(f"- {r.db}, {r.workers} worker(s): {kinds}")
    lines += [
        "",
        f"- 1-minute load average {load_before:.1f} at the start, {load_after:.1f} at the end; "
        "the machine was shared with other work (two other engineers' test runs), which "
        "raises every latency here.",
        "",
    ]
    return "\n".join(lines)


def write_report(text: str) -> None:
    SOAK_MD.write_text(text)
    report = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    if SECTION in report:
        head, rest = report.split(SECTION, 1)
        tail = rest[rest.find("\n## ") :] if "\n## " in rest else ""
        report = head + text.rstrip() + "\n" + tail
    else:
        report = report.rstrip() + "\n\n" + text
    REPORT.write_text(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    load_before = load_average()
    results: list[Result] = []
    with workdir() as scratch:
        templates: dict[str, SqliteTemplate | PostgresTemplate] = {}
        try:
            for db in args.db.split(","):
                if db == "postgresql" and not postgres_available(args.postgres_url):
                    print(f"no PostgreSQL at {args.postgres_url}: skipped", file=sys.stderr)
                    continue
                template = templates.setdefault(
                    db, SqliteTemplate(scratch) if db == "sqlite"
                    else PostgresTemplate(args.postgres_url),
                )  # fmt: skip
                for workers in (int(w) for w in args.workers.split(",")):
                    print(f"== {db}, {workers} worker(s)", file=sys.stderr, flush=True)
                    result = run_config(db, template.fresh(), workers, args, scratch)
                    values = result.samples.all
                    print(f"   {len(values)} requests, {result.samples.error_count} errors, "
                          f"p50 {_ms(values, .5)} p99 {_ms(values, .99)} ms, "
                          f"{result.max_rps:.0f} req/s closed loop, "
                          f"memory {_rss_text(result.rss_mb)}, verify ok {result.verify_ok}",
                          file=sys.stderr, flush=True)  # fmt: skip
                    results.append(result)
        finally:
            for template in templates.values():
                if isinstance(template, PostgresTemplate):
                    template.close()
    text = render(results, args, started, load_before, load_average())
    print(text)
    if not args.no_report:
        write_report(text)
    failed = any(not r.verify_ok for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
