"""What a lead had permitted at a past moment, answered from the ledger itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.entries import format_timestamp
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.state import ConsentAnswer, UnknownPurpose, consent_at, consent_now
from consent_ledger.subjects import find_subject_id
from consent_ledger.verify import verify_ledger
from tests.factories import notice_hash, record
from zeroparty.db import Database

NOW = datetime.now(UTC).replace(microsecond=0)
GRANTED_AT = NOW - timedelta(days=10)
WITHDRAWN_AT = NOW - timedelta(days=5)
SECOND = timedelta(seconds=1)
MICRO = timedelta(microseconds=1)


def _at(database: Database, email: str, purpose: str, moment: datetime) -> ConsentAnswer:
    with database.read() as session:
        subject_id = find_subject_id(session, email)
        assert subject_id is not None
        return consent_at(session, subject_id, purpose, moment)


@pytest.fixture
def granted_then_withdrawn(database: Database) -> Database:
    record(database, "gw@example.com", "profiling", occurred_at=GRANTED_AT)
    record(
        database, "gw@example.com", "profiling", ConsentAction.WITHDRAWN, occurred_at=WITHDRAWN_AT
    )
    return database


def test_grant_then_withdrawal_over_time(
    granted_then_withdrawn: Database, subtests: pytest.Subtests
) -> None:
    database = granted_then_withdrawn
    notice = notice_hash(database, "profiling")
    with subtests.test("before any entry nothing is permitted"):
        answer = _at(database, "gw@example.com", "profiling", GRANTED_AT - SECOND)
        assert answer == ConsentAnswer("profiling", False, "none", None, None)
        answer = _at(database, "gw@example.com", "profiling", GRANTED_AT - MICRO)
        assert answer.permitted is False
    with subtests.test("between grant and withdrawal it is permitted"):
        for moment in (GRANTED_AT, GRANTED_AT + SECOND, WITHDRAWN_AT - MICRO):
            answer = _at(database, "gw@example.com", "profiling", moment)
            assert answer == ConsentAnswer("profiling", True, "granted", GRANTED_AT, notice)
    with subtests.test("from the withdrawal on it is not"):
        for moment in (WITHDRAWN_AT, WITHDRAWN_AT + SECOND, NOW, NOW + timedelta(days=365)):
            answer = _at(database, "gw@example.com", "profiling", moment)
            assert answer == ConsentAnswer("profiling", False, "withdrawn", WITHDRAWN_AT, notice)
    with subtests.test("other purposes are unaffected"):
        answer = _at(database, "gw@example.com", "newsletter", GRANTED_AT + SECOND)
        assert (answer.permitted, answer.status) == (False, "none")
    with subtests.test("a moment with an offset means the same instant"):
        tokyo = timezone(timedelta(hours=9))
        just_before = (WITHDRAWN_AT - MICRO).astimezone(tokyo)
        just_at = WITHDRAWN_AT.astimezone(tokyo)
        assert _at(database, "gw@example.com", "profiling", just_before).permitted
        assert not _at(database, "gw@example.com", "profiling", just_at).permitted


def test_recorded_late_counts_from_when_it_happened(database: Database) -> None:
    """An entry recorded today about last week answers for last week."""
    record(database, "late@example.com", "profiling", occurred_at=NOW - timedelta(days=7))
    answer = _at(database, "late@example.com", "profiling", NOW - timedelta(days=6))
    assert (answer.permitted, answer.since) == (True, NOW - timedelta(days=7))


def test_double_opt_in_pending_then_confirmed(database: Database) -> None:
    granted = NOW - timedelta(hours=5)
    confirmed = NOW - timedelta(hours=4)
    record(database, "doi@example.com", "newsletter", occurred_at=granted)
    record(
        database, "doi@example.com", "newsletter", ConsentAction.CONFIRMED, occurred_at=confirmed
    )
    notice = notice_hash(database, "newsletter")

    assert _at(database, "doi@example.com", "newsletter", granted - SECOND).status == "none"
    pending = _at(database, "doi@example.com", "newsletter", granted + SECOND)
    assert pending == ConsentAnswer("newsletter", False, "pending", None, notice)
    live = _at(database, "doi@example.com", "newsletter", confirmed)
    assert live == ConsentAnswer("newsletter", True, "confirmed", confirmed, notice)


def test_double_opt_in_grant_already_confirmed(database: Database) -> None:
    granted = NOW - timedelta(hours=5)
    record(
        database,
        "pre@example.com",
        "newsletter",
        occurred_at=granted,
        method=ConsentMethod.DOUBLE_OPT_IN,
    )
    answer = _at(database, "pre@example.com", "newsletter", granted)
    assert (answer.permitted, answer.status, answer.since) == (True, "granted", granted)


def test_same_instant_grant_and_withdrawal_is_not_permitted(database: Database) -> None:
    moment = NOW - timedelta(hours=1)
    record(database, "tie@example.com", "profiling", ConsentAction.WITHDRAWN, occurred_at=moment)
    record(database, "tie@example.com", "profiling", occurred_at=moment)
    answer = _at(database, "tie@example.com", "profiling", moment)
    assert (answer.permitted, answer.status) == (False, "withdrawn")


# --- opt-out purposes (SPEC rule 8) ---------------------------------------------------


def test_opt_out_purpose_defaults_permitted_only_where_the_law_allows(
    database: Database,
) -> None:
    joined = NOW - timedelta(days=3)
    record(database, "ca@example.com", "profiling", occurred_at=joined, jurisdiction="US-CA")
    record(database, "de@example.com", "profiling", occurred_at=joined, jurisdiction="DE")
    record(database, "unknown@example.com", "profiling", occurred_at=joined)

    california = _at(database, "ca@example.com", "sale_sharing", NOW)
    assert california == ConsentAnswer("sale_sharing", True, "default", None, None)
    for email in ("de@example.com", "unknown@example.com"):
        answer = _at(database, email, "sale_sharing", NOW)
        assert answer == ConsentAnswer("sale_sharing", False, "none", None, None)


def test_opt_out_ends_the_default_from_its_moment(
    database: Database, subtests: pytest.Subtests
) -> None:
    opted_out = NOW - timedelta(days=2)
    for action in (ConsentAction.REFUSED, ConsentAction.GPC_OPT_OUT, ConsentAction.WITHDRAWN):
        with subtests.test(action=action.value):
            email = f"ca-{action.value}@example.com"
            joined = NOW - timedelta(days=4)
            record(database, email, "profiling", occurred_at=joined, jurisdiction="US-CA")
            record(database, email, "sale_sharing", action, occurred_at=opted_out)

            before = _at(database, email, "sale_sharing", opted_out - SECOND)
            assert (before.permitted, before.status) == (True, "default")
            after = _at(database, email, "sale_sharing", opted_out)
            assert (after.permitted, after.status, after.since) == (
                False,
                action.value,
                opted_out,
            )


def test_unknown_subject_gets_the_default(database: Database) -> None:
    with database.read() as session:
        assert consent_at(session, "f" * 32, "profiling", NOW).permitted is False
        assert consent_at(session, "f" * 32, "sale_sharing", NOW).permitted is False


def test_unknown_purpose_is_an_error(database: Database) -> None:
    with database.read() as session, pytest.raises(UnknownPurpose):
        consent_at(session, "f" * 32, "no-such-purpose", NOW)


# --- through the API -----------------------------------------------------------------


def _get(api: TestClient, email: str, purpose: str, moment: datetime | str) -> dict[str, object]:
    when = moment if isinstance(moment, str) else format_timestamp(moment)
    response = api.get("/api/consent", params={"email": email, "purpose": purpose, "at": when})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_api_answers_at_a_moment(api: TestClient, database: Database) -> None:
    record(database, "api@example.com", "profiling", occurred_at=GRANTED_AT)
    record(
        database, "api@example.com", "profiling", ConsentAction.WITHDRAWN, occurred_at=WITHDRAWN_AT
    )
    notice = notice_hash(database, "profiling")

    before = _get(api, "api@example.com", "profiling", GRANTED_AT - SECOND)
    assert before == {
        "purpose": "profiling",
        "permitted": False,
        "status": "none",
        "since": None,
        "notice_sha256": None,
        "at": format_timestamp(GRANTED_AT - SECOND),
    }
    during = _get(api, "API@Example.com", "profiling", GRANTED_AT + timedelta(days=1))
    assert during["permitted"] is True
    assert during["since"] == format_timestamp(GRANTED_AT)
    assert during["notice_sha256"] == notice
    after = _get(api, "api@example.com", "profiling", WITHDRAWN_AT)
    assert (after["permitted"], after["status"]) == (False, "withdrawn")
    assert after["since"] == format_timestamp(WITHDRAWN_AT)

    # Without ``at``: now, from the kept projection, and the same answer.
    now = api.get("/api/consent", params={"email": "api@example.com", "purpose": "profiling"})
    assert now.status_code == 200
    assert now.json()["permitted"] is False
    assert "at" not in now.json()


def test_api_at_accepts_any_offset(api: TestClient, database: Database) -> None:
    record(database, "tz@example.com", "profiling", occurred_at=GRANTED_AT)
    record(
        database, "tz@example.com", "profiling", ConsentAction.WITHDRAWN, occurred_at=WITHDRAWN_AT
    )
    berlin_before = (WITHDRAWN_AT - SECOND).astimezone(timezone(timedelta(hours=2)))
    answer = _get(api, "tz@example.com", "profiling", berlin_before.isoformat())
    assert answer["permitted"] is True
    assert answer["at"] == format_timestamp(WITHDRAWN_AT - SECOND)
    ny_at = WITHDRAWN_AT.astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert _get(api, "tz@example.com", "profiling", ny_at)["permitted"] is False


def test_api_opt_out_default_at_a_moment(api: TestClient, database: Database) -> None:
    record(database, "ca@example.com", "profiling", occurred_at=GRANTED_AT, jurisdiction="US-CA")
    record(
        database,
        "ca@example.com",
        "sale_sharing",
        ConsentAction.GPC_OPT_OUT,
        occurred_at=WITHDRAWN_AT,
    )
    assert _get(api, "ca@example.com", "sale_sharing", WITHDRAWN_AT - SECOND)["permitted"] is True
    assert _get(api, "ca@example.com", "sale_sharing", WITHDRAWN_AT)["status"] == "gpc-opt-out"


BAD_QUERIES = [
    ({"email": "a@example.com", "purpose": "profiling", "at": "yesterday"}, "at"),
    ({"email": "a@example.com", "purpose": "profiling", "at": "2026-01-01T00:00:00"}, "at"),
    ({"email": "a@example.com", "purpose": "profiling", "at": "2026-13-01T00:00:00Z"}, "at"),
    ({"email": "a@example.com", "purpose": "profiling", "at": ""}, "at"),
    ({"email": "not-an-email", "purpose": "profiling", "at": "2026-01-01T00:00:00Z"}, "email"),
    ({"email": "a@example.com", "at": "2026-01-01T00:00:00Z"}, "purpose"),
    ({"email": "a@example.com", "purpose": "profiling", "when": "2026-01-01T00:00:00Z"}, "when"),
]


def test_api_bad_and_unknown_queries(api: TestClient, subtests: pytest.Subtests) -> None:
    for params, field in BAD_QUERIES:
        with subtests.test(params=params):
            response = api.get("/api/consent", params=params)
            assert response.status_code == 422
            assert field in response.json()["error"]["fields"]
    with subtests.test("unknown purpose"):
        response = api.get(
            "/api/consent",
            params={"email": "a@example.com", "purpose": "nope", "at": "2026-01-01T00:00:00Z"},
        )
        assert response.status_code == 404
        assert response.json()["error"]["fields"] == {"purpose": "unknown purpose"}
    with subtests.test("unknown email"):
        answer = _get(api, "nobody@example.com", "profiling", NOW)
        assert (answer["permitted"], answer["status"]) == (False, "none")


def test_api_at_needs_a_key(app_client: TestClient) -> None:
    response = app_client.get(
        "/api/consent",
        params={"email": "a@example.com", "purpose": "profiling", "at": "2026-01-01T00:00:00Z"},
    )
    assert response.status_code == 401


def test_a_lone_confirmation_keeps_an_opt_out_default(database: Database) -> None:
    """Rule 8: an opt-out purpose stays permitted until refused; a confirmation with no
    grant before it is no refusal."""
    record(database, "cal@example.com", "profiling", jurisdiction="US-CA")
    with database.write() as session:
        record_consent(
            session,
            ConsentRecord(
                email="cal@example.com",
                purpose="sale_sharing",
                action=ConsentAction.CONFIRMED,
                source=ConsentSource.API,
                method=ConsentMethod.DOUBLE_OPT_IN,
                evidence={"reference": "stray click"},
            ),
        )
    with database.read() as session:
        now = consent_now(session, "cal@example.com", "sale_sharing")
        subject_id = find_subject_id(session, "cal@example.com")
        assert subject_id is not None
        then = consent_at(session, subject_id, "sale_sharing", datetime.now(UTC))
    assert (now.permitted, now.status) == (True, "default")
    assert (then.permitted, then.status) == (True, "default")
    with database.connect() as connection:
        assert verify_ledger(connection).ok
