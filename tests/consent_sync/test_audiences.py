"""GET /api/audiences/{purpose}: who may receive a purpose, in signed-cursor pages that
are one snapshot of the ledger, with working per-recipient links; bad input refused."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.api import ConsentLedger, ConsentRecord
from consent_sync import cursors
from tests.consent_sync.conftest import staff_log
from tests.factories import notice_hash, record
from tests.fixtures.statements import StatementCounter
from zeroparty.apikeys import Scope, create_api_key
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings


def grant(
    ledger: ConsentLedger,
    database: Database,
    email: str,
    purpose: str = "newsletter",
    *,
    topics: str | None = None,
    name: str | None = None,
    locale: str | None = "en",
) -> None:
    """A live grant (confirmed where the purpose asks for double opt-in)."""
    evidence: dict[str, str | int | bool | None] = {"ip": "198.51.100.23"}
    if topics is not None:
        evidence["topics"] = topics
    with database.write() as session:
        ledger.record_by_email(
            session,
            ConsentRecord(
                email=email,
                purpose=purpose,
                action=ConsentAction.GRANTED,
                source=ConsentSource.FORM,
                method=ConsentMethod.CHECKBOX,
                notice_sha256=notice_hash(database, purpose),
                name=name,
                locale=locale,
                evidence=evidence,
            ),
        )
    if purpose == "newsletter":
        record(
            database, email, purpose, ConsentAction.CONFIRMED, method=ConsentMethod.DOUBLE_OPT_IN
        )


def export(api: TestClient, purpose: str = "newsletter", **params: str) -> list[dict[str, Any]]:
    """Every page of one export, walked by its cursors."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = api.get(f"/api/audiences/{purpose}", params=query)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages


def emails(pages: list[dict[str, Any]]) -> list[str]:
    return [m["email"] for page in pages for m in page["members"]]


def test_a_member_carries_what_a_sending_tool_merges(
    api: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    grant(ledger, database, "ann@example.com", name="Ann Example", locale="de")
    record(database, "bo@example.com", "newsletter")  # pending: not in the audience
    (page,) = export(api)
    assert page["purpose"] == "newsletter"
    assert page["topic"] is None
    assert page["as_of_seq"] == 3
    (ann,) = page["members"]
    assert ann["email"] == "ann@example.com"
    assert ann["name"] == "Ann Example"
    assert ann["locale"] == "de"
    assert ann["topics"] == ["monthly_digest", "webinars"]  # named none: every topic
    assert ann["permitted_since"]
    assert ann["notice_version"] == 1
    assert len(ann["notice_sha256"]) == 64
    assert urlsplit(ann["preference_url"]).path.startswith("/p/")
    assert urlsplit(ann["unsubscribe_url"]).path.startswith("/u/")
    assert ann["headers"] == {
        "List-Unsubscribe": f"<{ann['unsubscribe_url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert api.get(urlsplit(ann["preference_url"]).path).status_code == 200


def test_pages_are_one_snapshot_however_the_ledger_moves(
    api: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    first_five = [f"lead{n}@example.com" for n in range(5)]
    for email in first_five:
        grant(ledger, database, email, "profiling")
    first = api.get("/api/audiences/profiling", params={"limit": "2"}).json()
    seen = [m["email"] for m in first["members"]]
    assert len(seen) == 2
    # After the first page: one not yet exported withdraws, a new lead grants, one
    # already exported withdraws too.
    later = sorted(set(first_five) - set(seen))
    record(database, later[0], "profiling", ConsentAction.WITHDRAWN)
    record(database, seen[0], "profiling", ConsentAction.WITHDRAWN)
    grant(ledger, database, "new@example.com", "profiling")
    cursor = first["next_cursor"]
    while cursor:
        page = api.get("/api/audiences/profiling", params={"limit": "2", "cursor": cursor}).json()
        assert page["as_of_seq"] == first["as_of_seq"]
        seen += [m["email"] for m in page["members"]]
        cursor = page["next_cursor"]
    assert sorted(seen) == sorted(first_five)  # exactly the audience as of the snapshot
    now = emails(export(api, "profiling"))
    assert sorted(now) == sorted({*first_five, "new@example.com"} - {later[0], seen[0]})


def test_an_erased_lead_is_never_exported(
    api: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    for email in ("ann@example.com", "bo@example.com", "cy@example.com"):
        grant(ledger, database, email, "profiling")
    first = api.get("/api/audiences/profiling", params={"limit": "1"}).json()
    for email in ("ann@example.com", "bo@example.com", "cy@example.com"):
        if email not in [m["email"] for m in first["members"]]:
            with database.write() as session:
                subject_id = ledger.find_lead(session, email)
                assert subject_id is not None
                ledger.erase(session, subject_id)
            break
    rest = api.get("/api/audiences/profiling", params={"cursor": first["next_cursor"]}).json()
    assert len(rest["members"]) == 1
    assert email not in [m["email"] for m in rest["members"]]


def test_topics_follow_the_last_grant(
    api: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    grant(ledger, database, "webinars@example.com", topics="webinars")
    grant(ledger, database, "all@example.com")
    grant(ledger, database, "none@example.com", topics="")
    assert sorted(emails(export(api, topic="webinars"))) == [
        "all@example.com",
        "webinars@example.com",
    ]
    assert emails(export(api, topic="monthly_digest")) == ["all@example.com"]
    members = {m["email"]: m["topics"] for m in export(api)[0]["members"]}
    assert members == {
        "webinars@example.com": ["webinars"],
        "all@example.com": ["monthly_digest", "webinars"],
        "none@example.com": [],
    }


def test_the_exported_one_click_header_unsubscribes_as_a_mail_client_would(
    api: TestClient, app_client: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    grant(ledger, database, "ann@example.com")
    (ann,) = export(api)[0]["members"]
    # RFC 8058 section 3.2: the client POSTs the List-Unsubscribe-Post value, as a form,
    # to the https URI of List-Unsubscribe, with no cookie and no other credential.
    url = ann["headers"]["List-Unsubscribe"].strip("<>")
    body = ann["headers"]["List-Unsubscribe-Post"].encode()
    mail_client = TestClient(app_client.app)
    response = mail_client.post(
        urlsplit(url).path,
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert emails(export(api)) == []
    consent = api.get("/api/consent", params={"email": "ann@example.com", "purpose": "newsletter"})
    assert consent.json()["status"] == "withdrawn"


def test_every_page_read_is_in_the_staff_log(
    api: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    for n in range(3):
        grant(ledger, database, f"lead{n}@example.com", "profiling")
    pages = export(api, "profiling", limit="2")
    log = staff_log(database)
    assert [action for action, _ in log] == ["api.audience"] * len(pages) == ["api.audience"] * 2
    assert "audience profiling as of entry 3: 2 leads (first page)" in log[0][1]


def _cursor(api: TestClient, database: Database, ledger: ConsentLedger) -> str:
    for n in range(2):
        grant(ledger, database, f"lead{n}@example.com", "profiling")
    cursor = api.get("/api/audiences/profiling", params={"limit": "1"}).json()["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


@pytest.mark.parametrize(
    ("purpose", "params", "status", "field"),
    [
        ("nope", {}, 404, "purpose"),
        ("NEWSLETTER", {}, 404, "purpose"),
        ("newsletter", {"topic": "nope"}, 422, "topic"),
        ("newsletter", {"topic": "release_notes"}, 422, "topic"),  # product_updates' topic
        ("profiling", {"limit": "0"}, 422, "limit"),
        ("profiling", {"limit": "1001"}, 422, "limit"),
        ("profiling", {"limit": "x"}, 422, "limit"),
        ("profiling", {"cursor": "tampered"}, 400, "cursor"),
        ("profiling", {"cursor": "CHANGED"}, 400, "cursor"),
        ("newsletter", {"cursor": "OTHER-PURPOSE"}, 400, "cursor"),
        ("profiling", {"cursor": "TOO-OLD"}, 410, "cursor"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_logged(
    api: TestClient,
    database: Database,
    ledger: ConsentLedger,
    monkeypatch: pytest.MonkeyPatch,
    purpose: str,
    params: dict[str, str],
    status: int,
    field: str,
) -> None:
    cursor = _cursor(api, database, ledger)
    if params.get("cursor") == "CHANGED":
        params = {"cursor": cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")}
    elif params.get("cursor") in ("OTHER-PURPOSE", "TOO-OLD"):
        if params["cursor"] == "TOO-OLD":
            monkeypatch.setattr(cursors, "MAX_AGE_SECONDS", -1)
        params = {"cursor": cursor}
    before = staff_log(database)
    response = api.get(f"/api/audiences/{purpose}", params=params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    assert field in error["fields"]
    assert staff_log(database) == before


def test_a_key_without_the_audiences_scope_is_refused(
    app_client: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    grant(ledger, database, "ann@example.com", "profiling")
    with database.write() as session:
        key = create_api_key(session, f"k-{uuid.uuid4().hex[:6]}", {Scope.CHANGES})
    response = app_client.get(
        "/api/audiences/profiling", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert staff_log(database) == []


def test_exported_links_carry_the_current_link_version(
    api: TestClient, app_client: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    """Links revoked before the export (a new version) are not handed out again: the
    exported one-click link is the lead's current one, and it works."""
    from preference_center.tokens import revoke_links

    grant(ledger, database, "ann@example.com")
    grant(ledger, database, "bo@example.com")
    with database.write() as session:
        subject_id = ledger.find_lead(session, "ann@example.com")
        assert subject_id is not None
        revoke_links(session, subject_id)
    members = {m["email"]: m for m in export(api)[0]["members"]}
    mail_client = TestClient(app_client.app)
    for email in ("ann@example.com", "bo@example.com"):
        response = mail_client.post(
            urlsplit(members[email]["unsubscribe_url"]).path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200, (email, response.text)
    assert emails(export(api)) == []


def test_a_page_costs_the_same_statements_however_many_members(
    settings: Settings, database: Database, ledger: ConsentLedger, api_key: str,
    statement_counter: StatementCounter,
) -> None:  # fmt: skip
    for n in range(24):
        grant(ledger, database, f"lead{n:02d}@example.com", topics="webinars" if n % 2 else None)
    first = TestClient(statement_counter.wrap(create_app(settings, database)))
    with first:
        first.headers["Authorization"] = f"Bearer {api_key}"
        assert first.get("/api/audiences/newsletter", params={"limit": "1"}).status_code == 200
        counts = []
        for limit in ("2", "20"):
            with statement_counter.count() as sql:
                response = first.get("/api/audiences/newsletter", params={"limit": limit})
            assert len(response.json()["members"]) == int(limit)
            counts.append(len(sql))
    # BEGIN, the key, the purpose, its topics, the head, the page's leads, the walk,
    # the last grants, their topics, the notice versions, the link versions, COMMIT;
    # the log line's BEGIN, INSERT, COMMIT. None per member. PostgreSQL sets its
    # planner around the walk (two statements more).
    assert counts[0] == counts[1], counts
    assert counts[0] <= {"sqlite": 15, "postgresql": 17}[database.dialect], counts
