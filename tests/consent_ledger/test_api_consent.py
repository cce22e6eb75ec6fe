"""The ledger's JSON API through HTTP: ``GET/POST /api/consent`` and ``GET /api/notices``.

Every bad input is checked three ways: the 4xx status, the one JSON error shape naming
the field at fault, and that nothing was written (SPEC rule 6).
"""

from __future__ import annotations

import hashlib
import threading
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from consent_ledger.models import (
    ConsentEvent,
    ConsentEvidence,
    ConsentState,
    Subject,
    SubjectProfile,
)
from consent_ledger.state import UnknownPurpose, consent_now_on_cursor
from tests.factories import notice_hash
from zeroparty.apikeys import ApiKey, create_api_key, revoke_api_key
from zeroparty.db import KEPT_LOOKUP, Database
from zeroparty.settings import DEFAULT_SITE_FILE

HEX64 = "0123456789abcdef" * 4
COUNTED = (ConsentEvent, ConsentEvidence, ConsentState, Subject, SubjectProfile)

Body = dict[str, Any]


def row_counts(database: Database) -> dict[str, int]:
    """Rows in every table a consent write touches."""
    with database.read() as session:
        return {
            model.__tablename__: session.execute(
                select(func.count()).select_from(model)
            ).scalar_one()
            for model in COUNTED
        }


def assert_error(response: Any, status: int, field: str | None) -> dict[str, Any]:
    """The response is the one JSON error shape, naming ``field`` when given."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "fields"}
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["fields"], dict)
    if field is not None:
        assert field in error["fields"], error
        assert isinstance(error["fields"][field], str)
        assert error["fields"][field]
    return error


def grant_body(database: Database, email: str, purpose: str, **extra: Any) -> Body:
    body: Body = {
        "email": email,
        "purpose": purpose,
        "action": "granted",
        "notice_sha256": notice_hash(database, purpose),
        "source": "signup-page",
        "evidence": {"ip": "203.0.113.7", "user_agent": "pytest", "page": "/signup"},
    }
    body.update(extra)
    return body


def withdraw_body(email: str, purpose: str, **extra: Any) -> Body:
    body: Body = {"email": email, "purpose": purpose, "action": "withdrawn", "source": "crm"}
    body.update(extra)
    return body


def consent(api: TestClient, email: str, purpose: str) -> dict[str, Any]:
    response = api.get("/api/consent", params={"email": email, "purpose": purpose})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def post(api: TestClient, body: Body) -> dict[str, Any]:
    response = api.post("/api/consent", json=body)
    assert response.status_code == 201, response.text
    entry: dict[str, Any] = response.json()
    return entry


# --- GET /api/consent -------------------------------------------------------------------


def test_lookup_connections_kept_by_threads_go_back_when_the_threads_end(
    database: Database,
) -> None:
    """SQLite: a thread keeps its look-up connection (no pool checkout per look-up); one
    whose thread ended goes back to the pool before another thread takes one, and at
    most KEPT_LOOKUP threads keep one, so threads that come and go (a test client each)
    or many at once never drain the pool; dispose gives every one back."""
    pool = database.engine.pool

    def look() -> None:
        with database.lookup_cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone()[0] == 1

    look()
    look()
    in_use = pool.checkedout()  # type: ignore[attr-defined]
    for _ in range(40):  # more threads than the pool holds connections
        thread = threading.Thread(target=look)
        thread.start()
        thread.join()
    assert pool.checkedout() <= in_use + 1  # type: ignore[attr-defined]
    # Threads alive at once: a few keep theirs, the others check out and give back.
    start = threading.Barrier(KEPT_LOOKUP + 4)
    ready, done = threading.Barrier(KEPT_LOOKUP + 5), threading.Event()

    def look_and_stay() -> None:
        start.wait()  # all at once: the cap holds for threads arriving together
        look()
        ready.wait()
        done.wait()

    threads = [threading.Thread(target=look_and_stay) for _ in range(KEPT_LOOKUP + 4)]
    for thread in threads:
        thread.start()
    ready.wait()
    assert pool.checkedout() <= KEPT_LOOKUP  # type: ignore[attr-defined]
    done.set()
    for thread in threads:
        thread.join()
    database.dispose()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_lookup_leaves_its_pooled_connection_transactional(database: Database) -> None:
    """The look-up reads outside any transaction (PostgreSQL: autocommit for the one
    statement); the connection goes back to the pool as it came, even when the look-up
    fails, so the next write on it is one transaction again."""
    engine = database.engine
    for purpose in ("profiling", "no-such-purpose"):
        with database.lookup_cursor() as cursor:
            driver = cursor.connection
            try:
                consent_now_on_cursor(cursor, engine.dialect, "ann@example.com", purpose)
            except UnknownPurpose:
                assert purpose == "no-such-purpose"
        if database.dialect == "postgresql":
            assert driver.autocommit is False
        else:
            assert driver.in_transaction is False
    with database.write_connection() as connection:
        assert connection.in_transaction()


def test_unknown_email_is_not_permitted(api: TestClient, database: Database) -> None:
    answer = consent(api, "nobody@example.com", "newsletter")
    assert answer["permitted"] is False
    assert answer["since"] is None
    assert answer["notice_sha256"] is None
    assert row_counts(database)["subjects"] == 0


def test_grant_then_permitted_with_since_and_notice(api: TestClient, database: Database) -> None:
    body = grant_body(database, "ann@example.com", "profiling")
    entry = post(api, body)
    answer = consent(api, "ann@example.com", "profiling")
    assert answer["permitted"] is True
    assert answer["status"] == "granted"
    assert answer["notice_sha256"] == body["notice_sha256"]
    assert answer["since"] == entry["occurred_at"]
    assert answer["since"].endswith("Z")


def test_grant_is_for_its_purpose_only(api: TestClient, database: Database) -> None:
    post(api, grant_body(database, "ann@example.com", "profiling"))
    assert consent(api, "ann@example.com", "product_updates")["permitted"] is False


def test_double_opt_in_grant_is_pending_until_confirmed(
    api: TestClient, database: Database
) -> None:
    entry = post(api, grant_body(database, "ann@example.com", "newsletter"))
    assert entry["confirmation_required"] is True
    assert entry["consent"]["status"] == "pending"
    answer = consent(api, "ann@example.com", "newsletter")
    assert answer["status"] == "pending"
    assert answer["permitted"] is False

    post(
        api,
        {
            "email": "ann@example.com",
            "purpose": "newsletter",
            "action": "confirmed",
            "source": "confirmation-mail",
            "evidence": {"ip": "203.0.113.9"},
        },
    )
    answer = consent(api, "ann@example.com", "newsletter")
    assert answer["permitted"] is True
    assert answer["status"] == "confirmed"


def test_double_opt_in_method_is_permitted_at_once(api: TestClient, database: Database) -> None:
    body = grant_body(database, "ann@example.com", "newsletter", method="double-opt-in")
    entry = post(api, body)
    assert entry["confirmation_required"] is False
    assert entry["method"] == "double-opt-in"
    answer = consent(api, "ann@example.com", "newsletter")
    assert answer["permitted"] is True
    assert answer["status"] == "granted"
    assert answer["notice_sha256"] == body["notice_sha256"]


def test_withdrawal_is_effective_on_the_next_request(api: TestClient, database: Database) -> None:
    """SPEC rule 2: a withdrawal takes one step and is effective at once."""
    post(api, grant_body(database, "ann@example.com", "profiling"))
    assert consent(api, "ann@example.com", "profiling")["permitted"] is True
    entry = post(api, withdraw_body("ann@example.com", "profiling"))
    assert entry["action"] == "withdrawn"
    assert entry["consent"]["permitted"] is False
    answer = consent(api, "ann@example.com", "profiling")
    assert answer["permitted"] is False
    assert answer["status"] == "withdrawn"


def test_withdrawal_wins_over_a_grant_at_the_same_moment(
    api: TestClient, database: Database
) -> None:
    """SPEC rule 8: a refusal or withdrawal always wins over an earlier grant."""
    moment = "2025-03-01T10:00:00Z"
    post(api, withdraw_body("ann@example.com", "profiling", occurred_at=moment))
    post(api, grant_body(database, "ann@example.com", "profiling", occurred_at=moment))
    assert consent(api, "ann@example.com", "profiling")["permitted"] is False


def test_email_spellings_are_one_lead(api: TestClient, database: Database) -> None:
    post(api, grant_body(database, "Ann@Example.COM", "profiling"))
    assert consent(api, "ann@example.com", "profiling")["permitted"] is True
    assert consent(api, "ANN@example.com", "profiling")["permitted"] is True
    post(api, withdraw_body("ann@example.com", "profiling"))
    assert consent(api, "Ann@Example.COM", "profiling")["permitted"] is False
    counts = row_counts(database)
    assert counts["subjects"] == 1
    assert counts["subject_profiles"] == 1
    with database.read() as session:
        assert session.execute(select(SubjectProfile.email)).scalar_one() == "ann@example.com"


def test_a_non_ascii_local_part_is_refused_and_an_idn_domain_is_one_lead(
    api: TestClient, database: Database
) -> None:
    """zeroparty sends no SMTPUTF8: a local part it could not mail is refused with a
    field error that says why; an internationalized domain is fine, in any spelling."""
    before = row_counts(database)
    body = grant_body(database, "jörg@example.com", "profiling")
    error = assert_error(api.post("/api/consent", json=body), 422, "email")
    assert "before the @-sign are not supported" in error["fields"]["email"]
    assert row_counts(database) == before
    post(api, grant_body(database, "Joerg@Bücher.Example", "profiling"))
    assert consent(api, "joerg@bücher.example", "profiling")["permitted"] is True
    assert consent(api, "JOERG@BÜCHER.example", "profiling")["permitted"] is True
    with database.read() as session:
        assert session.execute(select(SubjectProfile.email)).scalar_one() == "joerg@bücher.example"


@pytest.mark.parametrize(
    ("jurisdiction", "permitted"),
    [("US-CA", True), ("US-NY", False), ("DE", False), (None, False)],
)
def test_opt_out_purpose_default_depends_on_jurisdiction(
    api: TestClient, database: Database, jurisdiction: str | None, permitted: bool
) -> None:
    """SPEC rule 8: opt-out is permitted until refused, only where the law allows it."""
    extra = {"jurisdiction": jurisdiction} if jurisdiction else {}
    post(api, grant_body(database, "lead@example.com", "profiling", **extra))
    answer = consent(api, "lead@example.com", "sale_sharing")
    assert answer["permitted"] is permitted
    assert answer["since"] is None


def test_opt_out_purpose_unknown_lead_is_not_permitted(api: TestClient) -> None:
    assert consent(api, "stranger@example.com", "sale_sharing")["permitted"] is False


def test_opt_out_refusal_wins_in_california(api: TestClient, database: Database) -> None:
    post(api, grant_body(database, "lead@example.com", "profiling", jurisdiction="US-CA"))
    assert consent(api, "lead@example.com", "sale_sharing")["permitted"] is True
    post(
        api,
        {
            "email": "lead@example.com",
            "purpose": "sale_sharing",
            "action": "refused",
            "source": "do-not-sell-link",
        },
    )
    answer = consent(api, "lead@example.com", "sale_sharing")
    assert answer["permitted"] is False
    assert answer["status"] == "refused"


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"purpose": "newsletter"}, 422, "email"),
        ({"email": "not-an-address", "purpose": "newsletter"}, 422, "email"),
        ({"email": "ann@example.com"}, 422, "purpose"),
        ({"email": "ann@example.com", "purpose": "no_such_purpose"}, 404, "purpose"),
        ({"email": "ann@example.com", "purpose": "newsletter", "colour": "red"}, 422, "colour"),
        ({"email": "ann@example.com", "purpose": "newsletter", "at": "yesterday"}, 422, "at"),
        (
            {"email": "a@example.com", "purpose": "newsletter", "at": "0001-01-01T00:00:00+01:00"},
            422,
            "at",
        ),
    ],
    ids=[
        "no-email",
        "bad-email",
        "no-purpose",
        "unknown-purpose",
        "unknown-param",
        "bad-at",
        "at-before-year-one-in-utc",
    ],
)
def test_get_consent_bad_query(
    api: TestClient, params: dict[str, str], status: int, field: str
) -> None:
    assert_error(api.get("/api/consent", params=params), status, field)


# --- POST /api/consent ------------------------------------------------------------------


def test_post_answers_201_with_the_chained_entry(api: TestClient, database: Database) -> None:
    first = post(api, grant_body(database, "ann@example.com", "profiling", jurisdiction="DE"))
    second = post(api, withdraw_body("ann@example.com", "profiling"))
    for entry in (first, second):
        for key in (
            "seq",
            "hash",
            "prev_hash",
            "subject_id",
            "purpose",
            "action",
            "source",
            "source_ref",
            "method",
            "occurred_at",
            "recorded_at",
            "evidence_sha256",
        ):
            assert key in entry, key
        assert len(entry["hash"]) == 64
        assert "email" not in entry  # the entry holds no personal data
        assert "evidence" not in entry
    assert first["purpose"] == "profiling"
    assert first["action"] == "granted"
    assert first["source"] == "api"
    assert first["source_ref"] == "signup-page"
    assert first["jurisdiction"] == "DE"
    assert first["locale"] == "en"
    assert first["evidence_sha256"] is not None
    assert second["evidence_sha256"] is None
    assert second["seq"] == first["seq"] + 1
    assert second["prev_hash"] == first["hash"]
    assert second["subject_id"] == first["subject_id"]
    counts = row_counts(database)
    assert counts["consent_events"] == 2
    assert counts["consent_evidence"] == 1


def test_post_keeps_minimised_evidence(api: TestClient, database: Database) -> None:
    entry = post(api, grant_body(database, "ann@example.com", "profiling"))
    with database.read() as session:
        body = session.execute(
            select(ConsentEvidence.body).where(ConsentEvidence.seq == entry["seq"])
        ).scalar_one()
    evidence = orjson.loads(body)
    assert evidence["ip"] == "203.0.113.0/24"
    assert evidence["page"] == "/signup"


def test_post_occurred_at_is_kept_in_utc(api: TestClient, database: Database) -> None:
    body = grant_body(
        database, "ann@example.com", "profiling", occurred_at="2025-01-31T10:30:00+01:00"
    )
    entry = post(api, body)
    assert entry["occurred_at"] == "2025-01-31T09:30:00.000000Z"
    assert consent(api, "ann@example.com", "profiling")["since"] == entry["occurred_at"]


def _mutate(**changes: Any) -> Callable[[Body], Body]:
    def apply(body: Body) -> Body:
        return {**body, **changes}

    return apply


def _drop(*keys: str) -> Callable[[Body], Body]:
    def apply(body: Body) -> Body:
        return {k: v for k, v in body.items() if k not in keys}

    return apply


def _other_purpose_notice(body: Body) -> Body:
    # The profiling notice's hash offered for the newsletter purpose.
    return {**body, "purpose": "newsletter", "notice_sha256": body["notice_sha256"]}


BAD_BODIES: list[tuple[str, Callable[[Body], Body], int, str]] = [
    ("missing-email", _drop("email"), 422, "email"),
    ("email-not-a-string", _mutate(email=42), 422, "email"),
    ("email-invalid", _mutate(email="ann.example.com"), 422, "email"),
    ("email-no-domain", _mutate(email="ann@"), 422, "email"),
    ("email-too-long", _mutate(email="a" * 320 + "@example.com"), 422, "email"),
    ("email-non-ascii-local-part", _mutate(email="jörg@example.com"), 422, "email"),
    ("unknown-purpose", _mutate(purpose="no_such_purpose"), 404, "purpose"),
    ("missing-purpose", _drop("purpose"), 422, "purpose"),
    ("missing-action", _drop("action"), 422, "action"),
    ("bad-action", _mutate(action="maybe"), 422, "action"),
    ("action-not-for-api", _mutate(action="erased"), 422, "action"),
    ("granted-without-notice", _drop("notice_sha256"), 422, "notice_sha256"),
    ("notice-of-another-purpose", _other_purpose_notice, 422, "notice_sha256"),
    ("notice-unknown", _mutate(notice_sha256=HEX64), 422, "notice_sha256"),
    ("notice-malformed", _mutate(notice_sha256="abc123"), 422, "notice_sha256"),
    ("notice-upper-case", _mutate(notice_sha256=HEX64.upper()), 422, "notice_sha256"),
    ("occurred-at-not-rfc3339", _mutate(occurred_at="yesterday"), 422, "occurred_at"),
    ("occurred-at-date-only", _mutate(occurred_at="2025-01-31"), 422, "occurred_at"),
    ("occurred-at-no-offset", _mutate(occurred_at="2025-01-31T10:00:00"), 422, "occurred_at"),
    ("occurred-at-not-a-string", _mutate(occurred_at=1738317600), 422, "occurred_at"),
    ("occurred-at-far-future", _mutate(occurred_at="2999-01-01T00:00:00Z"), 422, "occurred_at"),
    ("missing-source", _drop("source"), 422, "source"),
    ("blank-source", _mutate(source="   "), 422, "source"),
    ("source-too-long", _mutate(source="x" * 201), 422, "source"),
    ("bad-method", _mutate(method="telepathy"), 422, "method"),
    ("granted-without-evidence", _drop("evidence"), 422, "evidence"),
    ("evidence-empty", _mutate(evidence={}), 422, "evidence"),
    ("evidence-not-an-object", _mutate(evidence="from the form"), 422, "evidence"),
    ("evidence-a-list", _mutate(evidence=["ip", "1.2.3.4"]), 422, "evidence"),
    ("evidence-nested-object", _mutate(evidence={"form": {"id": 1}}), 422, "evidence"),
    ("evidence-nested-list", _mutate(evidence={"ids": [1, 2]}), 422, "evidence"),
    ("evidence-float", _mutate(evidence={"score": 0.5}), 422, "evidence"),
    (
        "evidence-too-many-keys",
        _mutate(evidence={f"k{i}": "v" for i in range(33)}),
        422,
        "evidence",
    ),
    ("evidence-key-too-long", _mutate(evidence={"k" * 65: "v"}), 422, "evidence"),
    ("evidence-value-too-long", _mutate(evidence={"note": "x" * 2001}), 422, "evidence"),
    ("evidence-bad-ip", _mutate(evidence={"ip": "999.1.2.3"}), 422, "evidence"),
    ("unknown-field", _mutate(colour="red"), 422, "colour"),
    ("bad-jurisdiction", _mutate(jurisdiction="california"), 422, "jurisdiction"),
    ("bad-jurisdiction-lower", _mutate(jurisdiction="us-ca"), 422, "jurisdiction"),
    ("bad-locale", _mutate(locale="English"), 422, "locale"),
    ("bad-locale-underscore", _mutate(locale="en_US"), 422, "locale"),
    ("name-not-a-string", _mutate(name=["Ann"]), 422, "name"),
    # Single-line text: no line break, no other control character (C0, DEL, C1).
    ("name-carriage-return", _mutate(name="Ann\rSmith"), 422, "name"),
    ("name-line-feed", _mutate(name="Ann\nSmith"), 422, "name"),
    ("name-crlf", _mutate(name="Ann\r\nBcc: x@example.com"), 422, "name"),
    ("name-nul", _mutate(name="Ann\x00"), 422, "name"),
    ("name-escape", _mutate(name="Ann\x1b[2J"), 422, "name"),
    ("name-delete", _mutate(name="Ann\x7fSmith"), 422, "name"),
    ("name-next-line", _mutate(name="Ann\x85Smith"), 422, "name"),
    ("source-line-feed", _mutate(source="signup\npage"), 422, "source"),
    ("purpose-carriage-return", _mutate(purpose="profiling\rx"), 422, "purpose"),
]


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [pytest.param(m, s, f, id=i) for i, m, s, f in BAD_BODIES],
)
def test_post_bad_body_changes_nothing(
    api: TestClient,
    database: Database,
    mutate: Callable[[Body], Body],
    status: int,
    field: str,
) -> None:
    body = mutate(grant_body(database, "ann@example.com", "profiling"))
    before = row_counts(database)
    error = assert_error(api.post("/api/consent", json=body), status, field)
    assert error["code"] in {"invalid_input", "not_found"}
    assert row_counts(database) == before
    assert consent(api, "ann@example.com", "profiling")["permitted"] is False


def test_post_keeps_a_name_with_a_tab_and_trims_its_ends(
    api: TestClient, database: Database
) -> None:
    post(api, grant_body(database, "ann@example.com", "profiling", name=" Ann\tSmith\r\n"))
    with database.read() as session:
        names = session.execute(select(SubjectProfile.name)).scalars().all()
    assert names == ["Ann\tSmith"]


def test_post_bad_body_for_known_lead_changes_nothing(api: TestClient, database: Database) -> None:
    post(api, grant_body(database, "ann@example.com", "profiling"))
    before = row_counts(database)
    body = withdraw_body("ann@example.com", "profiling", jurisdiction="nowhere")
    assert_error(api.post("/api/consent", json=body), 422, "jurisdiction")
    assert row_counts(database) == before
    assert consent(api, "ann@example.com", "profiling")["permitted"] is True


def test_post_reports_every_problem_at_once(api: TestClient) -> None:
    body = {"email": "nope", "purpose": "profiling", "action": "maybe", "colour": 1}
    error = assert_error(api.post("/api/consent", json=body), 422, None)
    assert {"email", "action", "source", "colour"} <= set(error["fields"])


RAW_BODIES: list[tuple[str, bytes, str, int]] = [
    ("not-json", b"email=ann%40example.com", "application/json", 422),
    ("truncated-json", b'{"email": "ann@example.com"', "application/json", 422),
    ("empty-body", b"", "application/json", 422),
    ("json-array", b'[{"email": "ann@example.com"}]', "application/json", 422),
    ("json-string", b'"granted"', "application/json", 422),
    ("json-null", b"null", "application/json", 422),
    ("form-encoded", b"email=ann%40example.com", "application/x-www-form-urlencoded", 415),
    ("text-plain", b'{"email": "ann@example.com"}', "text/plain", 415),
    ("no-content-type", b'{"email": "ann@example.com"}', "", 415),
    ("oversized", b'{"source": "' + b"x" * (256 * 1024) + b'"}', "application/json", 413),
]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [pytest.param(c, t, s, id=i) for i, c, t, s in RAW_BODIES],
)
def test_post_bad_payload_changes_nothing(
    api: TestClient, database: Database, content: bytes, content_type: str, status: int
) -> None:
    before = row_counts(database)
    headers = {"content-type": content_type} if content_type else {}
    error = assert_error(api.post("/api/consent", content=content, headers=headers), status, None)
    assert error["fields"] == {}
    assert row_counts(database) == before


def test_post_oversized_valid_body_is_refused(api: TestClient, database: Database) -> None:
    """A well-formed body over 256 KiB is refused too, not just garbage."""
    body = grant_body(database, "ann@example.com", "profiling")
    body["evidence"] = {f"k{i}": "x" * 1990 for i in range(32)}
    body["name"] = "Ann"
    content = orjson.dumps(body) + b" " * (256 * 1024)
    before = row_counts(database)
    response = api.post(
        "/api/consent", content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, None)
    assert row_counts(database) == before


def test_post_json_content_type_with_charset_is_accepted(
    api: TestClient, database: Database
) -> None:
    body = grant_body(database, "ann@example.com", "profiling")
    response = api.post(
        "/api/consent",
        content=orjson.dumps(body),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201, response.text


# --- GET /api/notices -------------------------------------------------------------------


def test_notices_list_every_purpose_and_locale(api: TestClient) -> None:
    response = api.get("/api/notices")
    assert response.status_code == 200
    notices = response.json()["notices"]
    demo = tomllib.loads(DEFAULT_SITE_FILE.read_text("utf-8"))
    expected = {
        (purpose, locale): text.strip()
        for purpose, table in demo["purposes"].items()
        for locale, text in table["notice"].items()
    }
    assert {(n["purpose"], n["locale"]): n["text"] for n in notices} == expected
    for notice in notices:
        assert notice["notice_sha256"] == hashlib.sha256(notice["text"].encode()).hexdigest()
        assert notice["version"] == 1
        assert notice["mechanism"] in {"opt-in", "opt-out"}
    mechanisms = {n["purpose"]: n["mechanism"] for n in notices}
    assert mechanisms["sale_sharing"] == "opt-out"
    assert mechanisms["newsletter"] == "opt-in"


def test_notices_filtered_by_locale(api: TestClient) -> None:
    notices = api.get("/api/notices", params={"locale": "de"}).json()["notices"]
    assert notices
    assert {n["locale"] for n in notices} == {"de"}
    assert "sale_sharing" not in {n["purpose"] for n in notices}


@pytest.mark.parametrize(
    "locale", ["\x11\x00", "e", "english please", "en-" + "x" * 9, "<script>", "de/../en"]
)
def test_notices_refuse_a_value_that_is_no_locale(api: TestClient, locale: str) -> None:
    assert_error(api.get("/api/notices", params={"locale": locale}), 422, "locale")


def test_notice_hash_from_the_api_records_a_grant(api: TestClient, database: Database) -> None:
    notices = api.get("/api/notices", params={"locale": "de"}).json()["notices"]
    german = next(n for n in notices if n["purpose"] == "profiling")
    body = grant_body(
        database, "ann@example.com", "profiling", notice_sha256=german["notice_sha256"]
    )
    entry = post(api, body)
    assert entry["locale"] == "de"
    assert consent(api, "ann@example.com", "profiling")["notice_sha256"] == german["notice_sha256"]


# --- authentication ---------------------------------------------------------------------


def _routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Route):
            yield prefix + route.path, route
        elif isinstance(route, Mount):
            yield from _routes(route.routes, prefix + route.path)


# Routes a sending tool calls with its own webhook signature, not an API key: their
# refusals of bad signatures are tested in tests/consent_sync/test_inbound.py.
SIGNED_BY_SENDER = {"/api/inbound/{provider}"}


def _api_routes(client: TestClient) -> list[tuple[str, str]]:
    routes = [
        (method, path)
        for path, route in _routes(client.app.routes)  # type: ignore[attr-defined]
        if path.startswith("/api/") and path not in SIGNED_BY_SENDER
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]
    assert ("POST", "/api/consent") in routes
    return routes


def _request(
    client: TestClient, method: str, path: str, body: Body, headers: dict[str, str]
) -> Any:
    if method == "GET":
        params = {"email": body["email"], "purpose": body["purpose"]}
        return client.get(path, params=params, headers=headers)
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(
    "authorization",
    ["missing", "empty", "basic", "bearer-lower-junk", "wrong-key", "malformed-key", "revoked"],
)
def test_every_api_route_refuses_bad_credentials(
    app_client: TestClient, database: Database, authorization: str
) -> None:
    with database.write() as session:
        good = create_api_key(session, "good")
        revoked = create_api_key(session, "old")
        revoke_api_key(session, "old")
    prefix = good.split("_")[1]
    values = {
        "missing": None,
        "empty": "",
        "basic": "Basic dXNlcjpwYXNz",
        "bearer-lower-junk": "bearer nonsense",
        "wrong-key": f"Bearer zp_{prefix}_{'A' * 43}",
        "malformed-key": "Bearer not-a-key",
        "revoked": f"Bearer {revoked}",
    }
    value = values[authorization]
    headers = {} if value is None else {"Authorization": value}
    body = grant_body(database, "ann@example.com", "profiling")
    before = row_counts(database)
    for method, path in _api_routes(app_client):
        response = _request(app_client, method, path, body, headers)
        error = assert_error(response, 401, None)
        assert error["code"] == "unauthorized", (method, path)
    assert row_counts(database) == before
    # The good key still works, so the 401s above were about the credentials.
    response = _request(
        app_client, "POST", "/api/consent", body, {"Authorization": f"Bearer {good}"}
    )
    assert response.status_code == 201


def test_unauthenticated_bad_body_gets_401_not_422(
    app_client: TestClient, database: Database
) -> None:
    before = row_counts(database)
    response = app_client.post(
        "/api/consent", content=b"not json", headers={"content-type": "application/json"}
    )
    assert_error(response, 401, None)
    response = app_client.post("/api/consent", content=b"x", headers={"content-type": "text/plain"})
    assert_error(response, 401, None)
    assert row_counts(database) == before


def test_revoked_key_stops_working(api: TestClient, database: Database, api_key: str) -> None:
    assert api.get("/api/notices").status_code == 200
    with database.write() as session:
        prefix = api_key.split("_")[1]
        name = session.execute(select(ApiKey.name).where(ApiKey.prefix == prefix)).scalar_one()
        revoke_api_key(session, name)
    assert_error(api.get("/api/notices"), 401, None)
    before = row_counts(database)
    assert_error(
        api.post("/api/consent", json=grant_body(database, "a@example.com", "profiling")), 401, None
    )
    assert row_counts(database) == before


def test_post_streamed_oversized_body_is_refused(api: TestClient, database: Database) -> None:
    """Without a Content-Length the limit is enforced while reading."""

    def chunks() -> Iterator[bytes]:
        yield b'{"source": "'
        for _ in range(300):
            yield b"x" * 1024
        yield b'"}'

    before = row_counts(database)
    response = api.post(
        "/api/consent", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, None)
    assert row_counts(database) == before
