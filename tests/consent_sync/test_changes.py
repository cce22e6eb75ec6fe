"""GET /api/changes: every consent change in ledger order, gap-free paging, erased leads
by pseudonymous id and address digest only, bad input refused, every read logged."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentChange, ConsentLedger
from consent_ledger.models import ConsentEvent
from consent_sync import changes
from tests.consent_sync.conftest import count, staff_log
from tests.factories import notice_hash, record
from tests.fixtures.statements import StatementCounter
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.wiring import build_ledger

ANN = "ann@example.com"
ANN_SHA = hashlib.sha256(b"ann@example.com").hexdigest()


def _all(api: TestClient, limit: int = 2) -> list[dict[str, Any]]:
    """Every change, walked page by page as a consumer would."""
    seen: list[dict[str, Any]] = []
    after = 0
    while True:
        response = api.get("/api/changes", params={"after": after, "limit": limit})
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["changes"]) <= limit
        seen.extend(body["changes"])
        after = body["next_after"]
        if not body["has_more"]:
            assert after == body["head"]
            return seen


def _lifecycle(database: Database) -> None:
    record(database, ANN, "profiling")  # granted (no double opt-in)
    record(database, ANN, "newsletter")  # pending: waits for its confirmation
    record(database, ANN, "newsletter", ConsentAction.CONFIRMED, method=ConsentMethod.DOUBLE_OPT_IN)
    _change_topics(database, ANN, "newsletter", "monthly_digest,webinars")
    record(database, ANN, "newsletter", ConsentAction.WITHDRAWN)
    record(database, ANN, "profiling", ConsentAction.EXPIRED, method=ConsentMethod.SYSTEM)
    record(database, "bo@example.com", "sale_sharing", ConsentAction.GPC_OPT_OUT,
           method=ConsentMethod.GPC_SIGNAL, jurisdiction="US-CA")  # fmt: skip


def _change_topics(database: Database, email: str, purpose: str, topics: str) -> None:
    """A new topic set through the preference center, while the purpose stays permitted
    (as preference_center.services records it: a confirmed grant naming the topics)."""
    ledger = build_ledger(database)
    with database.write() as session:
        subject_id = ledger.find_lead(session, email)
        assert subject_id is not None
        ledger.record(
            session,
            [
                ConsentChange(
                    subject_id=subject_id,
                    purpose=purpose,
                    action=ConsentAction.GRANTED,
                    source=ConsentSource.PREFERENCE_CENTER,
                    method=ConsentMethod.EMAIL_LINK,
                    notice_sha256=notice_hash(database, purpose),
                    confirmed=True,
                    evidence={"topics": topics},
                )
            ],
        )


def _erase(database: Database, ledger: ConsentLedger, email: str) -> None:
    with database.write() as session:
        subject_id = ledger.find_lead(session, email)
        assert subject_id is not None
        ledger.erase(session, subject_id)


def test_every_change_in_ledger_order(api: TestClient, database: Database) -> None:
    _lifecycle(database)
    feed = _all(api)
    assert [(c["type"], c["purpose"]) for c in feed] == [
        ("granted", "profiling"),
        ("pending", "newsletter"),
        ("confirmed", "newsletter"),
        ("topic-change", "newsletter"),
        ("withdrawn", "newsletter"),
        ("expired", "profiling"),
        ("gpc-opt-out", "sale_sharing"),
    ]
    assert [c["seq"] for c in feed] == list(range(feed[0]["seq"], feed[0]["seq"] + 7))
    assert feed[3]["topics"] == ["monthly_digest", "webinars"]
    assert {c["email"] for c in feed[:6]} == {"ann@example.com"}
    assert feed[0]["email_sha256"] == ANN_SHA
    assert feed[0]["lead_id"] == feed[5]["lead_id"] != feed[6]["lead_id"]
    assert not any(c["erased"] for c in feed)


def test_a_consumer_catches_up_from_where_it_stopped(api: TestClient, database: Database) -> None:
    record(database, ANN, "profiling")
    first = api.get("/api/changes", params={"after": 0}).json()
    record(database, ANN, "profiling", ConsentAction.WITHDRAWN)
    later = api.get("/api/changes", params={"after": first["next_after"]}).json()
    assert [c["type"] for c in later["changes"]] == ["withdrawn"]
    assert later["changes"][0]["seq"] == first["next_after"] + 1
    empty = api.get("/api/changes", params={"after": later["head"]}).json()
    assert empty["changes"] == []
    assert empty["has_more"] is False
    assert empty["next_after"] == later["head"]


def test_an_erased_lead_appears_only_by_id_and_address_digest(
    api: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    _lifecycle(database)
    _erase(database, ledger, "ann@example.com")
    response = api.get("/api/changes", params={"limit": 1000})
    assert "ann@example.com" not in response.text.lower()
    feed = response.json()["changes"]
    ann = [c for c in feed if c["lead_id"] == feed[0]["lead_id"]]
    assert [c["type"] for c in ann[-2:]] == ["erased", "erased"]  # one per purpose
    for change in ann:  # the changes before the erasure too
        assert change["email"] is None
        assert change["email_sha256"] == ANN_SHA
        assert change["erased"] is True
    bo = [c for c in feed if c["lead_id"] != feed[0]["lead_id"]]
    assert bo[0]["email"] == "bo@example.com"
    assert bo[0]["erased"] is False


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "-1"}, "after"),
        ({"after": "abc"}, "after"),
        ({"after": "1e3"}, "after"),
        ({"after": "99"}, "after"),  # beyond the head
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_logged(
    api: TestClient, database: Database, params: dict[str, str], field: str
) -> None:
    record(database, ANN, "profiling")
    before = staff_log(database)
    response = api.get("/api/changes", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["message"]
    assert field in error["fields"]
    assert staff_log(database) == before


def test_without_a_key_nothing_is_read(app_client: TestClient, database: Database) -> None:
    record(database, ANN, "profiling")
    response = app_client.get("/api/changes")
    assert response.status_code == 401
    assert "error" in response.json()
    assert staff_log(database) == []


def test_every_read_is_in_the_staff_log(api: TestClient, database: Database) -> None:
    record(database, ANN, "profiling")
    api.get("/api/changes", params={"after": 0, "limit": 5})
    ((action, detail),) = staff_log(database)
    assert action == "api.changes"
    assert "API key 'test-" in detail
    assert "changes after 0: 1" in detail


def test_reading_changes_nothing_in_the_ledger(api: TestClient, database: Database) -> None:
    _lifecycle(database)
    entries = count(database, ConsentEvent)
    _all(api, limit=3)
    assert count(database, ConsentEvent) == entries


def _plans(database: Database, run: Callable[[Connection], object]) -> list[str]:
    """The plan of every statement ``run`` sends that reads the ledger's entries."""
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "consent_events" in statement:
            statements.append((statement, parameters))

    with database.read() as session:
        connection = session.connection()
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Tables this small are read whole otherwise, index or not.
            for table in ("consent_events", "subjects", "subject_profiles"):
                connection.exec_driver_sql(f"ANALYZE {table}")
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        event.listen(database.engine, "before_cursor_execute", capture)
        try:
            run(connection)
        finally:
            event.remove(database.engine, "before_cursor_execute", capture)
        explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
        return [
            "\n".join(str(row[-1]) for row in connection.exec_driver_sql(explain + sql, params))
            for sql, params in statements
        ]


def test_a_page_is_an_index_walk_never_a_scan(database: Database) -> None:
    _lifecycle(database)
    for n in range(20):
        record(database, f"lead{n}@example.com", "profiling")
    plans = _plans(database, lambda c: changes.changes_page(c, 3, 5))
    assert len(plans) >= 2, plans  # the head, then the page
    for plan in plans:
        assert "SCAN " not in plan, plan  # no table read whole (SQLite)
        assert "Seq Scan" not in plan, plan  # nor on PostgreSQL
    page = plans[1]
    if database.dialect == "sqlite":
        # The walk from ``after`` in key order; only a lead's few entries of one purpose
        # are sorted (for the entry before each grant).
        walk, _, previous = page.partition("CORRELATED SCALAR SUBQUERY")
        assert "(seq>?)" in walk.splitlines()[0], page
        assert "TEMP B-TREE" not in walk, page
        assert "ix_consent_events_subject_purpose_time" in previous, page
    else:
        assert "Index Scan using pk_consent_events" in page, page
        assert "ix_consent_events_subject_purpose_time" in page, page


def test_a_page_costs_the_same_statements_however_long(
    settings: Settings, database: Database, api_key: str, statement_counter: StatementCounter
) -> None:
    for n in range(30):
        record(database, f"lead{n}@example.com", "profiling")
        _change_topics(database, f"lead{n}@example.com", "newsletter", "webinars")
    with TestClient(statement_counter.wrap(create_app(settings, database))) as client:
        client.headers["Authorization"] = f"Bearer {api_key}"
        assert client.get("/api/changes", params={"limit": 1}).status_code == 200  # warm
        counts = []
        for limit in (2, 50):
            with statement_counter.count() as sql:
                response = client.get("/api/changes", params={"limit": limit})
            assert len(response.json()["changes"]) == limit
            counts.append(len(sql))
    # BEGIN, the key, the head, the page, the grants' topics, COMMIT; then BEGIN, the
    # staff-log line, COMMIT (the log is written in a short transaction of its own).
    assert counts[0] == counts[1], counts
    assert counts[0] <= 9, counts
