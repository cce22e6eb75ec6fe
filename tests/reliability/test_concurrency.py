"""Several ``serve`` workers under concurrent submissions, preference changes and
withdrawals, on the same leads at once: one contiguous chain, no lost update.

``tests/consent_ledger/test_concurrency.py`` races the ledger's service functions in
several processes; this goes through the HTTP surface of ``zeroparty serve --workers 3``
with every kind of writer a deployment has (capture, the preference page, one-click
unsubscribe, the consent API), so the projection, the idempotency and rate-limit rows
and the mail outbox race too.

Checks afterwards: every acknowledged API write is in the ledger at the ``seq`` it was
answered with; entries are numbered 1..N without gaps; the kept consent state of every
(lead, purpose) equals the fold of its entries (what ``ledger verify`` checks too, and it
must exit 0); and for pairs only one client wrote, the final state is that client's
last acknowledged action (a lost update would show as an older one).
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2
from sqlalchemy import select

from consent_ledger.models import ConsentEvent, ConsentState
from consent_ledger.projection import ConsentFact, fold
from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens, current_version
from tests.conftest import TEST_SECRET
from tests.factories import notice_hash
from tests.reliability.live import (
    FormTokens,
    ServeProcess,
    client_address,
    contact_submission,
    sqlite_integrity,
    verify_ledger_cli,
)
from zeroparty.apikeys import create_api_key
from zeroparty.db import Database
from zeroparty.settings import Settings

WORKERS = 3
CLIENTS = 6
OPS_PER_CLIENT = 60
SHARED_LEADS = 6  # every kind of writer, on the same leads
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Outcome:
    acknowledged: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # seq -> …
    owned_last: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.statuses[what] = self.statuses.get(what, 0) + 1


class Driver:
    """What one client thread can do against the live server."""

    def __init__(self, server: ServeProcess, database: Database, api_key: str,
                 notices: dict[str, str], outcome: Outcome) -> None:  # fmt: skip
        self.server = server
        self.database = database
        self.api = {"Authorization": f"Bearer {api_key}"}
        self.notices = notices
        self.outcome = outcome
        self.links = LinkTokens(
            Settings(database_url="sqlite://", secret_keys=(TEST_SECRET,), base_url=server.url)
        )
        self.form = FormTokens(server.url, "contact")

    def consent(self, client: httpx2.Client, email: str, purpose: str, action: str) -> int:
        body: dict[str, object] = {
            "email": email,
            "purpose": purpose,
            "action": action,
            "source": "reliability",
            "evidence": {"test": "concurrency"},
        }
        if action == "granted":
            body.update(notice_sha256=self.notices[purpose], method="double-opt-in")
        answer = client.post("/api/consent", json=body, headers=self.api)
        assert answer.status_code == 201, answer.text
        seq = int(answer.json()["seq"])
        with self.outcome.lock:
            self.outcome.acknowledged[seq] = (email, purpose, action)
        self.outcome.count(f"api {action}")
        return seq

    def submit(self, client: httpx2.Client, email: str, n: int) -> None:
        answer = client.post(
            "/f/contact",
            json=contact_submission(email, self.form.fresh()),
            headers={"Accept": "application/json", **client_address(n)},
        )
        assert answer.status_code == 201, answer.text
        self.outcome.count("submission")

    def _link(self, email: str, purpose: LinkPurpose, purposes: tuple[str, ...] = ()) -> str:
        with self.database.read() as session:
            subject_id = find_subject_id(session, email)
            assert subject_id is not None
            version = current_version(session, subject_id)
        return self.links.issue(purpose, LinkClaim(subject_id, version, purposes))

    def unsubscribe_all(self, email: str) -> None:
        """The preference page as a browser uses it: open the link, post the form."""
        token = self._link(email, LinkPurpose.MANAGE)
        with httpx2.Client(base_url=self.server.url, timeout=30) as browser:
            opened = browser.get(
                f"/p/{token}", headers={"Sec-Fetch-Site": "none"}, follow_redirects=True
            )
            assert opened.status_code == 200, opened.text
            csrf = CSRF_RE.search(opened.text)
            assert csrf is not None
            saved = browser.post(
                "/p/",
                data={"csrf": csrf.group(1), "action": "unsubscribe_all"},
                headers={"Origin": self.server.url},
                follow_redirects=False,
            )
            assert saved.status_code == 303, saved.text
        self.outcome.count("preference page")

    def one_click(self, client: httpx2.Client, email: str) -> None:
        token = self._link(email, LinkPurpose.UNSUBSCRIBE, ("newsletter",))
        answer = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200, answer.text
        self.outcome.count("one-click")


def _client(driver: Driver, n: int, shared: list[str], errors: list[str]) -> None:
    chance = random.Random(n)
    owned = f"owner{n}-{uuid.uuid4().hex[:6]}@example.com"
    owned_writes = 0
    try:
        with httpx2.Client(base_url=driver.server.url, timeout=30) as client:
            for i in range(OPS_PER_CLIENT):
                email = chance.choice(shared)
                kind = chance.choice(("api", "api", "submit", "page", "one-click", "owned"))
                if kind == "api":
                    action = chance.choice(("granted", "withdrawn"))
                    driver.consent(
                        client, email, chance.choice(("profiling", "newsletter")), action
                    )
                elif kind == "submit":
                    driver.submit(client, email, n * 1000 + i)
                elif kind == "page":
                    driver.unsubscribe_all(email)
                elif kind == "one-click":
                    driver.one_click(client, email)
                else:  # a pair only this client writes: its last word must stand
                    owned_writes += 1
                    action = "granted" if owned_writes % 2 else "withdrawn"
                    driver.consent(client, owned, "product_updates", action)
                    with driver.outcome.lock:
                        driver.outcome.owned_last[(owned, "product_updates")] = action
    except BaseException as exc:  # reported to the test thread
        errors.append(f"client {n}: {exc!r}")


def test_concurrent_writers_through_http_keep_one_chain_and_every_update(
    database_url: str, serve_process: Callable[..., ServeProcess]
) -> None:
    database = Database.from_url(database_url)
    try:
        with database.write() as session:
            api_key = create_api_key(session, "concurrency")
        notices = {p: notice_hash(database, p) for p in ("newsletter", "profiling",
                                                         "product_updates")}  # fmt: skip
        server = serve_process(database_url, workers=WORKERS).start()
        outcome = Outcome()
        driver = Driver(server, database, api_key, notices, outcome)
        shared = [f"shared{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(SHARED_LEADS)]
        with httpx2.Client(base_url=server.url, timeout=30) as client:
            for email in shared:
                driver.consent(client, email, "newsletter", "granted")
        errors: list[str] = []
        threads = [
            threading.Thread(target=_client, args=(driver, n, shared, errors))
            for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not errors, errors
        server.stop()

        with database.read() as session:
            events = session.execute(select(ConsentEvent).order_by(ConsentEvent.seq)).scalars()
            events = list(events)
            states = list(session.execute(select(ConsentState)).scalars())
            emails = {
                email: find_subject_id(session, email)
                for email in {e for e, _p, _a in outcome.acknowledged.values()}
            }
    finally:
        database.dispose()

    context = str(outcome.statuses)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), context
    by_seq = {e.seq: e for e in events}
    for seq, (email, purpose, action) in outcome.acknowledged.items():
        entry = by_seq[seq]
        assert (entry.subject_id, entry.purpose_key, entry.action) == (
            emails[email],
            purpose,
            action,
        ), seq

    facts: dict[tuple[str, str], list[ConsentFact]] = {}
    for e in events:
        facts.setdefault((e.subject_id, e.purpose_key), []).append(
            ConsentFact(e.seq, e.action, e.confirmation_required, e.notice_sha256, e.occurred_at)
        )
    kept = {(s.subject_id, s.purpose_key): (s.status, s.permitted, s.last_seq) for s in states}
    folded = {}
    for pair, pair_facts in facts.items():
        value = fold(pair_facts)
        assert value is not None
        folded[pair] = (value.status, value.permitted, value.last_seq)
    assert kept == folded

    for (email, purpose), action in outcome.owned_last.items():
        status, permitted, _last = kept[(emails[email], purpose)]
        assert permitted is (action == "granted"), (email, status)

    sqlite_integrity(database_url)
    verify_ledger_cli(server.env)
