"""The suppression list: digests of every address that withdrew a purpose or was erased,
paged in constant memory, scoped, logged; bad input refused."""

from __future__ import annotations

import csv
import hashlib
import io
import uuid

import pytest
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentAction, ConsentMethod
from consent_ledger.api import ConsentLedger
from tests.consent_sync.conftest import staff_log
from tests.factories import record
from zeroparty import cli
from zeroparty.apikeys import Scope, create_api_key
from zeroparty.db import Database


def sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def _people(database: Database, ledger: ConsentLedger) -> None:
    record(database, "ann@example.com", "profiling")
    record(database, "ann@example.com", "profiling", ConsentAction.WITHDRAWN)
    record(database, "bo@example.com", "sale_sharing", ConsentAction.GPC_OPT_OUT,
           method=ConsentMethod.GPC_SIGNAL, jurisdiction="US-CA")  # fmt: skip
    record(database, "cy@example.com", "profiling")  # permitted: not listed
    record(database, "di@example.com", "profiling", ConsentAction.WITHDRAWN)
    record(database, "di@example.com", "profiling")  # granted again: off the list
    record(database, "ed@example.com", "profiling", ConsentAction.EXPIRED,
           method=ConsentMethod.SYSTEM)  # fmt: skip
    record(database, "fay@example.com", "profiling")
    with database.write() as session:
        subject_id = ledger.find_lead(session, "fay@example.com")
        assert subject_id is not None
        ledger.erase(session, subject_id)


def _all(api: TestClient, **params: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    after = ""
    while True:
        response = api.get("/api/suppression", params={**params, "after": after})
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["suppressed"]
        if body["next_after"] is None:
            return found
        after = body["next_after"]


def test_withdrawn_and_erased_addresses_are_listed_by_digest(
    api: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    _people(database, ledger)
    listed = {e["email_sha256"]: e for e in _all(api, limit="1")}
    assert set(listed) == {sha("ann@example.com"), sha("bo@example.com"), sha("fay@example.com")}
    assert listed[sha("ann@example.com")]["reason"] == "withdrawn"
    assert listed[sha("ann@example.com")]["purposes"] == ["profiling"]
    assert listed[sha("bo@example.com")]["purposes"] == ["sale_sharing"]
    assert listed[sha("fay@example.com")]["reason"] == "erased"
    response = api.get("/api/suppression")
    assert "@example.com" not in response.text


def test_one_purpose(api: TestClient, database: Database, ledger: ConsentLedger) -> None:
    _people(database, ledger)
    listed = {e["email_sha256"] for e in _all(api, purpose="sale_sharing")}
    assert listed == {sha("bo@example.com"), sha("fay@example.com")}  # erased: always


def _pages(api: TestClient, limit: str) -> list[dict[str, object]]:
    pages: list[dict[str, object]] = []
    after = ""
    while True:
        response = api.get("/api/suppression", params={"limit": limit, "after": after})
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if pages[-1]["next_after"] is None:
            return pages
        after = str(pages[-1]["next_after"])


@pytest.mark.parametrize("limit", ["1", "2", "3", "4", "1000"])
def test_pages_list_every_address_once_whatever_the_limit(
    api: TestClient, database: Database, ledger: ConsentLedger, limit: str
) -> None:
    """Each source (withdrawals, erasures) walks at most ``limit`` leads a page; a page
    holds what both have walked up to, at most ``limit``, and ``next_after`` moves on:
    nothing is listed twice or left out, also where the two sources' last pages hold
    more than ``limit`` together (limit 4 here: three withdrawals, two erasures)."""
    _people(database, ledger)
    for email in ("gus@example.com", "hal@example.com"):
        record(database, email, "newsletter")
        record(database, email, "newsletter", ConsentAction.WITHDRAWN)
    with database.write() as session:  # gus withdrew, then was erased: listed once
        subject_id = ledger.find_lead(session, "gus@example.com")
        assert subject_id is not None
        ledger.erase(session, subject_id)
    pages = _pages(api, limit)
    listed = [e["email_sha256"] for page in pages for e in page["suppressed"]]  # type: ignore[attr-defined]
    expected = ["ann", "bo", "fay", "gus", "hal"]
    assert sorted(listed) == sorted(sha(f"{name}@example.com") for name in expected)
    assert all(len(page["suppressed"]) <= int(limit) for page in pages)  # type: ignore[arg-type]
    assert pages[-1]["next_after"] is None


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"purpose": "nope"}, 404, "purpose"),
        ({"limit": "0"}, 422, "limit"),
        ({"limit": "10001"}, 422, "limit"),
        ({"after": "not/a/lead"}, 422, "after"),
        ({"after": "x" * 33}, 422, "after"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_logged(
    api: TestClient, database: Database, params: dict[str, str], status: int, field: str
) -> None:
    response = api.get("/api/suppression", params=params)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]["fields"]
    assert staff_log(database) == []


def test_scoped_and_logged(app_client: TestClient, database: Database) -> None:
    with database.write() as session:
        changes_only = create_api_key(session, f"k-{uuid.uuid4().hex[:6]}", {Scope.CHANGES})
        mailer = create_api_key(session, f"m-{uuid.uuid4().hex[:6]}", {Scope.AUDIENCES})
    refused = app_client.get(
        "/api/suppression", headers={"Authorization": f"Bearer {changes_only}"}
    )
    assert refused.status_code == 403
    assert staff_log(database) == []
    ok = app_client.get("/api/suppression", headers={"Authorization": f"Bearer {mailer}"})
    assert ok.status_code == 200
    ((action, detail),) = staff_log(database)
    assert action == "api.suppression"
    assert "suppression list: 0 addresses" in detail


@pytest.mark.usefixtures("cli_env")
def test_cli_export(
    database: Database, ledger: ConsentLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    _people(database, ledger)
    assert cli.main(["suppression", "export"]) == 0
    out, err = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["email_sha256"] for r in rows} == {
        sha("ann@example.com"),
        sha("bo@example.com"),
        sha("fay@example.com"),
    }
    assert "3 addresses suppressed" in err
    assert [a for a, _ in staff_log(database)] == ["api.suppression"]
    assert cli.main(["suppression", "export", "--purpose", "nope"]) == 2
    assert "no purpose 'nope'" in capsys.readouterr().err
