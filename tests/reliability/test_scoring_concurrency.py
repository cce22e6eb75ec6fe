"""Several ``serve`` workers scoring, staging and handing off leads while the same
leads withdraw and grant again: a withdrawal that committed is never followed by
scoring or by a webhook claimed for that lead.

Clients race on a handful of shared leads through the HTTP surface of ``zeroparty serve
--workers 3`` (which dispatches webhooks itself, to a real receiver on loopback), with
form submissions carrying fit answers (a grant of the gating purpose ``profiling``),
``POST /api/events``, withdrawals through ``POST /api/consent`` and one-click
unsubscribe; a dispatcher in the test process (``scoring.webhooks.dispatch_pending``,
as a second host would run it) claims webhooks meanwhile, so claims race withdrawals.
Each withdrawal's client logs when its 2xx answer came and, for the API, the ``seq``
answered (one-click answers no seq: its entry is the lead's withdrawal recorded while
the request was in flight).

Afterwards, from the database and from what the receiver got:

- the ledger is contiguous and ``ledger verify`` passes;
- every kept event and point counts an input that happened while the gating consent
  was live (the ledger folded up to the input's time); a lead whose last word is a
  withdrawal has no events, points or answers and is at stage Lead;
- no webhook was claimed after a withdrawal of its lead committed, unless the lead
  granted again before the claim: the claim time is the body's ``timestamp`` (the
  dispatcher's clock when it claimed), the withdrawal's commit is at the latest its
  answer time, and a new grant counts only once recorded (``recorded_at``, taken under
  the ledger lock, before its commit). This is what :mod:`scoring.webhooks` promises: a
  webhook claimed before the withdrawal committed may still arrive, none is started
  after;
- a lead without live consent has no webhook waiting (each is cancelled, delivered or
  dead-lettered), every delivered row reached the receiver, each webhook-id arrived
  once (no dispatcher is killed here) and every signature verifies.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx2
import orjson
from sqlalchemy import select

from consent_ledger import projection
from consent_ledger.entries import format_timestamp, parse_timestamp
from consent_ledger.models import ConsentEvent
from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens, current_version
from scoring.jobs import DISPATCH_POLL_SECONDS
from scoring.models import LeadAttribute, LeadEvent, ScoredLead, ScorePoint, Webhook
from scoring.webhooks import DispatchConfig, dispatch_pending, verify
from tests.conftest import TEST_SECRET
from tests.factories import notice_hash
from tests.fixtures.webhooks import WebhookReceiver
from tests.reliability.live import (
    FormTokens,
    ServeProcess,
    client_address,
    sqlite_integrity,
    verify_ledger_cli,
)
from tests.scoring.conftest import WEBHOOK_SECRET
from zeroparty.apikeys import create_api_key
from zeroparty.db import Database
from zeroparty.settings import Settings

WORKERS = 3
CLIENTS = 4
OPS_PER_CLIENT = 45
LEADS = 6
THINK_S = 0.3
MIN_RACE_S = DISPATCH_POLL_SECONDS + 3  # serve's dispatchers run during the race
GATE = "profiling"
# 45 points of fit: an MQL (60) after one pricing-page view, an SQL (80) after a webinar.
FIT = {"company_size": "201-1000", "job_title": "Head of Data", "industry": "software"}
EVENT_TYPES = ("pricing_page_viewed", "webinar_attended", "usage_limit_reached")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Withdrawal:
    email: str
    seq: int | None  # None: one-click, matched to its entry afterwards
    sent: datetime
    answered: datetime


@dataclass
class Log:
    withdrawals: list[Withdrawal] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1


class Driver:
    def __init__(self, server: ServeProcess, database: Database, api_key: str, log: Log) -> None:
        self.server = server
        self.database = database
        self.api = {"Authorization": f"Bearer {api_key}"}
        self.log = log
        self.form = FormTokens(server.url, "contact")
        self.links = LinkTokens(
            Settings(database_url="sqlite://", secret_keys=(TEST_SECRET,), base_url=server.url)
        )
        self.notice = notice_hash(database, GATE)

    def submit(self, client: httpx2.Client, email: str, n: int) -> None:
        """The contact form with fit answers and the gating consent ticked: a grant."""
        answer = client.post(
            "/f/contact",
            json={
                "fields": {"email": email, "name": "Lead", "message": "hello", **FIT},
                "consent": [GATE],
                "render_token": self.form.fresh(),
            },
            headers={"Accept": "application/json", **client_address(n)},
        )
        assert answer.status_code == 201, answer.text
        self.log.count("submission")

    def event(self, client: httpx2.Client, email: str, chance: random.Random) -> None:
        batch = [
            {
                "id": uuid.uuid4().hex,
                "email": email,
                "type": chance.choice(EVENT_TYPES),
                "occurred_at": format_timestamp(_now()),
            }
        ]
        answer = client.post("/api/events", json={"events": batch}, headers=self.api)
        assert answer.status_code in (200, 201), answer.text
        body = answer.json()
        self.log.count("event stored" if body["accepted"] else "event dropped")

    def withdraw_api(self, client: httpx2.Client, email: str) -> None:
        sent = _now()
        answer = client.post(
            "/api/consent",
            json={"email": email, "purpose": GATE, "action": "withdrawn",
                  "source": "reliability", "evidence": {"test": "scoring"}},
            headers=self.api,
        )  # fmt: skip
        answered = _now()
        assert answer.status_code == 201, answer.text
        seq = int(answer.json()["seq"])
        with self.log.lock:
            self.log.withdrawals.append(Withdrawal(email, seq, sent, answered))
        self.log.count("api withdrawal")

    def one_click(self, client: httpx2.Client, email: str) -> None:
        with self.database.read() as session:
            subject_id = find_subject_id(session, email)
            assert subject_id is not None
            version = current_version(session, subject_id)
        token = self.links.issue(LinkPurpose.UNSUBSCRIBE, LinkClaim(subject_id, version, (GATE,)))
        sent = _now()
        answer = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        answered = _now()
        assert answer.status_code == 200, answer.text
        with self.log.lock:
            self.log.withdrawals.append(Withdrawal(email, None, sent, answered))
        self.log.count("one-click")


def _client(driver: Driver, n: int, leads: list[str], errors: list[str]) -> None:
    chance = random.Random(n)
    until = time.monotonic() + MIN_RACE_S
    try:
        with httpx2.Client(base_url=driver.server.url, timeout=60) as client:
            i = 0
            while i < OPS_PER_CLIENT or time.monotonic() < until:
                i += 1
                time.sleep(chance.uniform(0, THINK_S))
                email = chance.choice(leads)
                kind = chance.choice(("submit", "submit", *("event",) * 4, "api", "one-click"))
                if kind == "submit":
                    driver.submit(client, email, 1000 * (n + 1) + i)
                elif kind == "event":
                    driver.event(client, email, chance)
                elif kind == "api":
                    driver.withdraw_api(client, email)
                else:
                    driver.one_click(client, email)
    except BaseException as exc:  # reported to the test thread
        errors.append(f"client {n}: {exc!r}")


def _dispatcher(database: Database, config: DispatchConfig, stop: threading.Event,
                errors: list[str]) -> None:  # fmt: skip
    """A second host's dispatcher, polling far more often than ``serve``'s job."""
    try:
        while not stop.wait(0.05):
            dispatch_pending(database, config)
    except BaseException as exc:
        errors.append(f"dispatcher: {exc!r}")


def test_a_committed_withdrawal_is_never_followed_by_scoring_or_a_claimed_webhook(
    database_url: str, serve_process: Callable[..., ServeProcess]
) -> None:
    receiver = WebhookReceiver()
    database = Database.from_url(database_url)
    try:
        with database.write() as session:
            api_key = create_api_key(session, "scoring-concurrency")
        server = serve_process(
            database_url,
            workers=WORKERS,
            ZEROPARTY_CRM_WEBHOOK_URL=receiver.url,
            ZEROPARTY_CRM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ).start()
        log = Log()
        driver = Driver(server, database, api_key, log)
        leads = [f"lead{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(LEADS)]
        # A lead no client touches reaches MQL first: serve's own dispatcher (each
        # worker polls every 10 s) hands it off while the race runs, before the test's
        # dispatcher joins in.
        sentinel = f"sentinel-{uuid.uuid4().hex[:6]}@example.com"
        with httpx2.Client(base_url=server.url, timeout=60) as client:
            for i, email in enumerate([*leads, sentinel]):
                driver.submit(client, email, i)
            event = {"id": uuid.uuid4().hex, "email": sentinel, "type": "pricing_page_viewed",
                     "occurred_at": format_timestamp(_now())}  # fmt: skip
            stored = client.post("/api/events", json={"events": [event]}, headers=driver.api)
            assert stored.status_code == 201, stored.text
        with database.read() as session:
            sentinel_id = find_subject_id(session, sentinel)
        assert sentinel_id is not None
        config = DispatchConfig(
            receiver.url + "?by=test", WEBHOOK_SECRET, max_attempts=8, timeout=5.0
        )
        errors: list[str] = []
        stop = threading.Event()
        clients = [
            threading.Thread(target=_client, args=(driver, n, leads, errors))
            for n in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + DISPATCH_POLL_SECONDS + 10
        while not any(sentinel_id in m.body.decode() for m in receiver.received):
            assert time.monotonic() < deadline, "serve did not dispatch the hand-off"
            time.sleep(0.1)
        dispatcher = threading.Thread(target=_dispatcher, args=(database, config, stop, errors))
        dispatcher.start()
        for thread in clients:
            thread.join(timeout=300)
        stop.set()
        dispatcher.join(timeout=60)
        assert not errors, errors
        server.stop()
        dispatch_pending(database, config)  # what is still due goes out now

        with database.read() as session:
            entries = list(session.scalars(select(ConsentEvent).order_by(ConsentEvent.seq)))
            subjects = {email: find_subject_id(session, email) for email in [*leads, sentinel]}
            events = list(session.scalars(select(LeadEvent)))
            points = list(session.scalars(select(ScorePoint)))
            answers = list(session.scalars(select(LeadAttribute)))
            stages = {r.subject_id: r.stage for r in session.scalars(select(ScoredLead))}
            hooks = list(session.scalars(select(Webhook)))
    finally:
        database.dispose()
        receiver.close()

    context = f"{log.counts}, {len(receiver.received)} webhooks received"
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1)), context
    sqlite_integrity(database_url)
    verify_ledger_cli(server.env)

    # The gating purpose's entries, lead by lead, and what a fold says at a moment.
    gate_entries: dict[str, list[ConsentEvent]] = {}
    for e in entries:
        if e.purpose_key == GATE:
            gate_entries.setdefault(e.subject_id, []).append(e)

    def live_at(subject_id: str, moment: datetime) -> bool:
        facts = [
            projection.ConsentFact(
                e.seq, e.action, e.confirmation_required, e.notice_sha256, e.occurred_at
            )
            for e in gate_entries.get(subject_id, [])
            if e.occurred_at <= moment
        ]
        state = projection.fold(facts) if facts else None
        return state is not None and state.permitted

    live_now = {sid: live_at(sid, _now() + timedelta(days=1)) for sid in gate_entries}

    # Each withdrawal entry, with the latest time its commit can have happened.
    committed_by: dict[int, datetime] = {}
    by_seq = {e.seq: e for e in entries}
    for w in log.withdrawals:
        sid = subjects[w.email]
        if w.seq is not None:
            entry = by_seq[w.seq]
            assert (entry.subject_id, entry.purpose_key, entry.action) == (sid, GATE, "withdrawn")
            committed_by[w.seq] = w.answered
            continue
        # One-click: the lead's withdrawal recorded while this request was in flight (a
        # lead already withdrawn gets none: the earlier entry stands).
        for e in gate_entries.get(sid or "", []):
            if e.action == "withdrawn" and w.sent <= e.recorded_at <= w.answered:
                committed_by[e.seq] = max(committed_by.get(e.seq, w.answered), w.answered)
    negative = [e for e in entries if e.purpose_key == GATE and projection.is_negative(e.action)]
    assert negative, context
    assert {e.seq for e in negative} <= set(committed_by), "a withdrawal no client made"

    # Scoring: only inputs from while the consent was live; nothing for a lead without it.
    for kept in (*events, *points):
        assert live_at(kept.subject_id, kept.occurred_at), (type(kept).__name__, kept.id)
        assert live_now[kept.subject_id], (type(kept).__name__, kept.id)
    for answer in answers:
        assert live_now[answer.subject_id], answer.id
    for sid, stage in stages.items():
        if not live_now[sid]:
            assert stage == "Lead", (sid, stage)

    # Webhooks: what arrived, each id once, signed, and claimed while the lead was live.
    arrived: dict[str, dict[str, object]] = {}
    for message in receiver.received:
        assert verify(WEBHOOK_SECRET, message.headers, message.body), message.headers
        webhook_id = message.headers["webhook-id"]
        assert webhook_id not in arrived, f"{webhook_id} delivered twice"
        arrived[webhook_id] = orjson.loads(message.body)
    rows = {h.id: h for h in hooks}
    for webhook_id, body in arrived.items():
        data = body["data"]
        assert isinstance(data, dict)
        sid = str(data["lead_id"])
        assert rows[webhook_id].subject_id == sid
        claimed = parse_timestamp(str(body["timestamp"]))
        for w in negative:
            if w.subject_id != sid or committed_by[w.seq] >= claimed:
                continue
            # Claimed after this withdrawal committed: only a webhook of a stage reached
            # after a new grant (the withdrawal cancelled every older one).
            created = rows[webhook_id].created_at
            regranted = [
                e
                for e in gate_entries[sid]
                if e.seq > w.seq and e.action == "granted" and e.recorded_at <= created
            ]
            assert regranted, (
                f"webhook {webhook_id} claimed at {claimed} after withdrawal {w.seq} "
                f"committed by {committed_by[w.seq]}"
            )
    for hook in hooks:
        if hook.delivered_at is not None:
            assert hook.id in arrived, hook.id
        for w in negative:  # queued before a withdrawal: cancelled by it, or sent before
            if w.subject_id == hook.subject_id and hook.created_at < w.recorded_at:
                assert hook.cancelled_at is not None or hook.delivered_at is not None, hook.id
        if not live_now[hook.subject_id]:
            assert (
                hook.cancelled_at is not None
                or hook.delivered_at is not None
                or hook.failed_at is not None
            ), hook.id

    # The run exercised what it claims to: hand-offs by serve's workers and by the
    # other dispatcher, and withdrawals that stopped some.
    by_test = sum(m.path.endswith("?by=test") for m in receiver.received)
    context += f", {by_test} from the test's dispatcher"
    assert len(receiver.received) > by_test, context  # serve's workers sent some
    assert arrived, context
    assert log.counts.get("event stored", 0) > 0, context
    assert any(h.cancel_reason == "consent" for h in hooks) or any(
        not live_now[sid] for sid in gate_entries
    ), context
