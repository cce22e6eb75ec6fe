"""The console's audience download: staff whose role may export get the audience as CSV
(one snapshot, streamed), noted in the staff log with who took it; others are refused,
people without a session are sent to log in, an unknown purpose or topic is refused."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.api import ConsentLedger
from consent_sync.audience_rows import CSV_COLUMNS
from console.models import StaffAuditEntry
from tests.consent_sync.conftest import staff_log
from tests.consent_sync.test_audiences import grant
from tests.console.conftest import log_in, make_staff
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings


@pytest.fixture
def client(settings: Settings, database: Database) -> TestClient:
    return TestClient(create_app(settings, database))


def test_compliance_downloads_the_audience(
    client: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    grant(ledger, database, "ann@example.com", name="=HYPERLINK(1)")
    grant(ledger, database, "bo@example.com")
    staff_id = make_staff(database, "co@staff.example", "compliance")
    with client:
        log_in(client, "co@staff.example")
        response = client.get("/console/audiences/newsletter.csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith(
        'attachment; filename="audience-newsletter-'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == CSV_COLUMNS
    assert sorted(r["email"] for r in rows) == ["ann@example.com", "bo@example.com"]
    ann = next(r for r in rows if r["email"] == "ann@example.com")
    assert ann["name"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    assert ann["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    with database.read() as session:
        entry = session.execute(
            select(StaffAuditEntry).where(StaffAuditEntry.action == "audience.export")
        ).scalar_one()
    assert entry.user_id == staff_id
    assert entry.action == "audience.export"
    assert "console download: audience newsletter as of entry" in entry.detail


def test_a_role_that_may_not_export_is_refused(
    client: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    grant(ledger, database, "ann@example.com")
    make_staff(database, "mk@staff.example", "marketer")
    with client:
        log_in(client, "mk@staff.example")
        before = staff_log(database)
        response = client.get("/console/audiences/newsletter.csv")
    assert response.status_code == 403
    assert "ann@example.com" not in response.text
    assert staff_log(database) == before


def test_without_a_session_people_are_sent_to_log_in(
    client: TestClient, database: Database, ledger: ConsentLedger
) -> None:
    grant(ledger, database, "ann@example.com")
    with client:
        response = client.get("/console/audiences/newsletter.csv", follow_redirects=False)
    assert response.status_code in (302, 303)
    assert "/console/login" in response.headers["location"]
    assert staff_log(database) == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console/audiences/nope.csv", 404),
        ("/console/audiences/newsletter.csv?topic=release_notes", 422),
    ],
)
def test_unknown_purpose_or_topic_is_refused(
    client: TestClient, database: Database, path: str, status: int
) -> None:
    make_staff(database, "co@staff.example", "compliance")
    with client:
        log_in(client, "co@staff.example")
        before = staff_log(database)
        response = client.get(path)
    assert response.status_code == status
    assert staff_log(database) == before
