"""The CRM endpoint slow, failing and down: the service keeps answering, retries with
backoff, dead-letters after the configured attempts, and delivers each webhook once
when the CRM is back.

A real HTTP server on loopback plays the CRM (:class:`FaultyCrm`: answers 2xx, or
500s, or too slowly, or is not there at all: connection refused on its port). The
first fault is met by ``zeroparty serve`` itself (its background dispatcher, with
``ZEROPARTY_WEBHOOK_TIMEOUT_SECONDS=1`` against a CRM that takes 3 s), while a client
keeps submitting forms and looking up scores on the same server: every one of those
succeeds, some while a post hangs. The retries are then driven in-process with
``scoring.webhooks.dispatch_pending(now=…)`` hours apart (the product's backoff is
30 s, 1 min, 2 min, …; no test-only setting shortens it), with a server still
answering load meanwhile:

- attempts are counted and spaced by the backoff (a retry is not due before it);
- after ``ZEROPARTY_WEBHOOK_MAX_ATTEMPTS`` a webhook is dead-lettered and listed by
  ``zeroparty dispatch --dead-letters``, never sent again;
- once the CRM is back, every other webhook is accepted exactly once per webhook-id,
  even with several dispatchers at once, and a further run sends nothing.

The CRM counts as accepted only what it answered 2xx in time; everything it got while
failing, slow or overloaded (it answers 503 after the delay) was refused, so a
dispatcher that retries it is right to.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
from sqlalchemy import select

from consent_ledger.entries import format_timestamp
from scoring.models import Webhook
from scoring.webhooks import BACKOFF_BASE_SECONDS, DispatchConfig, dispatch_pending, verify
from tests.reliability.live import (
    FormTokens,
    ServeProcess,
    client_address,
    free_port,
    run_cli,
    verify_ledger_cli,
)
from tests.scoring.conftest import WEBHOOK_SECRET
from zeroparty.apikeys import create_api_key
from zeroparty.db import Database, utcnow

MAX_ATTEMPTS = 4
TIMEOUT_S = 1.0
SLOW_S = 3.0
FIT = {"company_size": "201-1000", "job_title": "Head of Data", "industry": "software"}
STEP = timedelta(hours=7)  # past the longest backoff (6 h): every retry is due


@dataclass
class Request:
    webhook_id: str
    mode: str
    started: float
    ended: float = 0.0


class FaultyCrm:
    """A CRM on a fixed loopback port: ``mode`` is ``ok`` (204), ``error`` (500),
    ``slow`` (503 after :data:`SLOW_S`) or ``down`` (the port closed)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/crm"
        self.mode = "ok"
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def set(self, mode: str) -> None:
        if mode == "down":
            self._close()
        elif self._server is None:
            self._open()
        self.mode = mode

    def _open(self) -> None:
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                assert verify(WEBHOOK_SECRET, headers, body)
                mode = crm.mode
                request = Request(headers["webhook-id"], mode, time.monotonic())
                with crm.lock:
                    crm.requests.append(request)
                if mode == "slow":
                    time.sleep(SLOW_S)
                status = {"ok": 204, "error": 500}.get(mode, 503)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the dispatcher gave up waiting
                request.ended = time.monotonic()

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _close(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def accepted(self) -> list[str]:
        with self.lock:
            return [r.webhook_id for r in self.requests if r.mode == "ok"]

    def close(self) -> None:
        self._close()


@dataclass
class Load:
    """Submissions and look-ups against a server, in a thread, until stopped."""

    server: ServeProcess
    api_key: str
    done: list[tuple[str, float]] = field(default_factory=list)  # (what, monotonic)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        tokens = FormTokens(self.server.url, "contact")
        api = {"Authorization": f"Bearer {self.api_key}"}
        n = 0
        try:
            with httpx2.Client(base_url=self.server.url, timeout=60) as client:
                while not self.stop.is_set():
                    n += 1
                    email = f"load{n}-{uuid.uuid4().hex[:6]}@example.com"
                    answer = client.post(
                        "/f/contact",
                        json={
                            "fields": {"email": email, "message": "hi", **FIT},
                            "consent": ["profiling"],
                            "render_token": tokens.fresh(),
                        },
                        headers={"Accept": "application/json", **client_address(50_000 + n)},
                    )
                    assert answer.status_code == 201, answer.text
                    self.done.append(("submission", time.monotonic()))
                    score = client.get("/api/leads/score", params={"email": email}, headers=api)
                    assert score.status_code == 200, score.text
                    assert score.json()["score"] == 45, score.text
                    consent = client.get(
                        "/api/consent", params={"email": email, "purpose": "profiling"},
                        headers=api,
                    )  # fmt: skip
                    assert consent.status_code == 200, consent.text
                    self.done.append(("look-up", time.monotonic()))
        except BaseException as exc:  # reported to the test thread
            self.errors.append(repr(exc))

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(timeout=120)
        assert not self.errors, self.errors
        return len(self.done)


def _to_mql(server: ServeProcess, api_key: str, count: int, start: int) -> list[str]:
    """``count`` new leads, each an MQL (45 points of fit, +20 for the pricing page):
    one webhook queued each."""
    tokens = FormTokens(server.url, "contact")
    api = {"Authorization": f"Bearer {api_key}"}
    emails = [f"mql{start + i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(count)]
    with httpx2.Client(base_url=server.url, timeout=60) as client:
        for i, email in enumerate(emails):
            answer = client.post(
                "/f/contact",
                json={"fields": {"email": email, "message": "hi", **FIT},
                      "consent": ["profiling"], "render_token": tokens.fresh()},
                headers={"Accept": "application/json", **client_address(start + i)},
            )  # fmt: skip
            assert answer.status_code == 201, answer.text
            event = {"id": uuid.uuid4().hex, "email": email, "type": "pricing_page_viewed",
                     "occurred_at": format_timestamp(utcnow())}  # fmt: skip
            stored = client.post("/api/events", json={"events": [event]}, headers=api)
            assert stored.status_code == 201, stored.text
            score = client.get("/api/leads/score", params={"email": email}, headers=api)
            assert score.json()["stage"] == "MQL", score.text
    return emails


def _hooks(database: Database) -> dict[str, Webhook]:
    with database.read() as session:
        return {h.id: h for h in session.scalars(select(Webhook))}


def _wait_for_attempts(database: Database, ids: set[str], attempts: int,
                       timeout: float = 40.0) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        hooks = _hooks(database)
        if all(hooks[i].attempts >= attempts for i in ids):
            return
        assert time.monotonic() < deadline, {i: hooks[i].attempts for i in ids}
        time.sleep(0.25)


def test_crm_slow_failing_and_down_then_back_delivers_each_webhook_once(
    database_url: str, serve_process: Callable[..., ServeProcess]
) -> None:
    crm = FaultyCrm()
    database = Database.from_url(database_url)
    try:
        with database.write() as session:
            api_key = create_api_key(session, "crm-faults")
        crm_env = {
            "ZEROPARTY_CRM_WEBHOOK_URL": crm.url,
            "ZEROPARTY_CRM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "ZEROPARTY_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "ZEROPARTY_WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_S),
        }
        config = DispatchConfig(crm.url, WEBHOOK_SECRET, MAX_ATTEMPTS, TIMEOUT_S)

        # 1. Slow (serve's own dispatcher): each post times out; the server keeps
        #    answering submissions and look-ups meanwhile, some while a post hangs.
        crm.set("slow")
        first = serve_process(database_url, workers=2, **crm_env).start()
        load = Load(first, api_key)
        _to_mql(first, api_key, 2, 0)
        doomed = set(_hooks(database))
        assert len(doomed) == 2
        _wait_for_attempts(database, doomed, 1)
        time.sleep(0.5)
        assert load.finish() > 0
        first.stop()
        hooks = _hooks(database)
        assert all("timed out" in (hooks[i].last_error or "") for i in doomed), hooks
        assert all(hooks[i].delivered_at is None for i in doomed)
        posts = [r for r in crm.requests if r.webhook_id in doomed]
        assert posts
        during = [
            moment
            for _what, moment in load.done
            if any(p.started <= moment <= (p.ended or moment) for p in posts)
        ]
        assert during, "no request was answered while a post hung"
        for i in doomed:  # the retry waits for the backoff
            assert hooks[i].next_attempt_at - utcnow() > timedelta(seconds=BACKOFF_BASE_SECONDS / 2)
        report = dispatch_pending(database, config)  # nothing is due yet
        assert (report.delivered, report.retried, report.dead_lettered) == (0, 0, 0)

        # A server without a CRM configured answers load while the test's dispatcher
        # meets the next faults; two more leads reach MQL there.
        second = serve_process(database_url, workers=2).start()
        recovering = set(_to_mql(second, api_key, 2, 100))
        recovering_ids = set(_hooks(database)) - doomed
        assert len(recovering_ids) == len(recovering) == 2
        load = Load(second, api_key)
        now = utcnow()

        # 2. Answering 500.
        crm.set("error")
        now += STEP
        report = dispatch_pending(database, config, now=now)
        assert (report.retried, report.delivered) == (4, 0), report
        hooks = _hooks(database)
        assert all("500" in (h.last_error or "") for h in hooks.values()), hooks
        assert {h.attempts for h in hooks.values() if h.id in doomed} == {2}
        # Backoff: nothing is due a moment later.
        assert dispatch_pending(database, config, now=now + timedelta(seconds=1)).retried == 0

        # 3. Down: connection refused, twice; the doomed webhooks reach the limit.
        crm.set("down")
        now += STEP
        report = dispatch_pending(database, config, now=now)
        assert (report.retried, report.dead_lettered) == (4, 0), report
        now += STEP
        report = dispatch_pending(database, config, now=now)
        assert (report.retried, report.dead_lettered) == (2, 2), report
        hooks = _hooks(database)
        assert all("refused" in (h.last_error or "").lower() for h in hooks.values()), hooks
        assert all(hooks[i].failed_at is not None and hooks[i].attempts == 4 for i in doomed)
        dead = run_cli(second.env, "dispatch", "--dead-letters")
        assert dead.returncode == 0, dead.stderr
        assert all(i in dead.stdout for i in doomed), dead.stdout
        assert not any(i in dead.stdout for i in recovering_ids), dead.stdout

        # 4. Back: several dispatchers at once; each webhook accepted exactly once.
        crm.set("ok")
        now += STEP
        reports = []
        dispatchers = [
            threading.Thread(
                target=lambda: reports.append(dispatch_pending(database, config, now=now))
            )
            for _ in range(3)
        ]
        for thread in dispatchers:
            thread.start()
        for thread in dispatchers:
            thread.join(timeout=60)
        assert sum(r.delivered for r in reports) == 2, reports
        now += STEP
        assert dispatch_pending(database, config, now=now).delivered == 0
        assert load.finish() > 0
        second.stop()
        hooks = _hooks(database)
    finally:
        database.dispose()
        crm.close()

    accepted = crm.accepted()
    assert sorted(accepted) == sorted(recovering_ids), accepted  # each once, none dead
    assert all(hooks[i].delivered_at is not None and hooks[i].attempts == 4
               for i in recovering_ids)  # fmt: skip
    assert all(hooks[i].delivered_at is None for i in doomed)
    # Every refused post was retried, not dropped: the CRM saw each webhook once per
    # attempt it was up for (the slow post, the 500s, the final 204).
    seen: dict[str, int] = {}
    for r in crm.requests:
        seen[r.webhook_id] = seen.get(r.webhook_id, 0) + 1
    assert {seen[i] for i in doomed} == {2}, seen  # slow, 500 (down twice: never reached)
    assert {seen[i] for i in recovering_ids} == {2}, seen  # 500, then accepted
    verify_ledger_cli(second.env)
