"""Global Privacy Control on the preference center (issue 16, SPEC rule 7).

A known lead's browser sending ``Sec-GPC: 1`` to a ``/p/`` page opts them out of sale
and sharing: recorded once (a gpc-opt-out entry, method gpc-signal, per sale-or-sharing
purpose not already refused), effective at once for the site's backend, and shown on
the page as honoured. Tested for a California lead, for whom sale/sharing is permitted
until refused (an opt-out purpose).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.actions import ConsentMethod
from consent_ledger.models import ConsentEvent
from tests.factories import record
from tests.preference_center.conftest import EMAIL, issue, ledger_size, open_session
from zeroparty.db import Database
from zeroparty.settings import Settings

GPC = {"Sec-GPC": "1"}


@pytest.fixture
def california_lead(database: Database) -> str:
    entry = record(database, EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN,
                   jurisdiction="US-CA")  # fmt: skip
    return entry.subject_id


def sharing(api: TestClient) -> dict[str, object]:
    response = api.get("/api/consent", params={"email": EMAIL, "purpose": "sale_sharing"})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def gpc_entries(database: Database) -> list[tuple[str, str, str, str]]:
    with database.read() as session:
        stmt = select(
            ConsentEvent.purpose_key, ConsentEvent.action, ConsentEvent.source, ConsentEvent.method
        ).where(ConsentEvent.action == "gpc-opt-out")
        return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


def test_gpc_from_a_california_leads_browser_is_honoured_once(
    api: TestClient, settings: Settings, database: Database, california_lead: str
) -> None:
    assert sharing(api)["permitted"] is True  # opt-out purpose, US-CA: on by default
    open_session(api, issue(settings, database, california_lead))
    page = api.get("/p/", headers=GPC)
    assert page.status_code == 200
    assert 'data-gpc="honoured"' in page.text
    assert "Global Privacy Control honoured" in page.text
    assert gpc_entries(database) == [
        ("sale_sharing", "gpc-opt-out", "preference-center", "gpc-signal")
    ]
    answer = sharing(api)
    assert (answer["permitted"], answer["status"]) == (False, "gpc-opt-out")
    assert api.get("/api/consent", params={"email": EMAIL, "purpose": "newsletter"}).json()[
        "permitted"
    ]
    # Every later request carries the signal too: nothing is recorded twice.
    size = ledger_size(database)
    assert 'data-gpc="honoured"' in api.get("/p/", headers=GPC).text
    assert ledger_size(database) == size
    # Without the signal the page still shows the opt-out as the GPC's.
    plain = api.get("/p/").text
    assert 'data-gpc="honoured"' not in plain
    assert "Global Privacy Control honoured" in plain


@pytest.mark.parametrize("value", ["0", "yes", "", "1, 1"])
def test_anything_but_sec_gpc_1_records_nothing(
    api: TestClient, settings: Settings, database: Database, california_lead: str, value: str
) -> None:
    open_session(api, issue(settings, database, california_lead))
    size = ledger_size(database)
    page = api.get("/p/", headers={"Sec-GPC": value})
    assert page.status_code == 200
    assert 'data-gpc="honoured"' not in page.text
    assert ledger_size(database) == size
    assert sharing(api)["permitted"] is True


def test_a_refusal_already_recorded_is_not_recorded_again(
    api: TestClient, settings: Settings, database: Database, california_lead: str
) -> None:
    from consent_ledger.actions import ConsentAction

    record(database, EMAIL, "sale_sharing", ConsentAction.REFUSED)
    open_session(api, issue(settings, database, california_lead))
    size = ledger_size(database)
    assert 'data-gpc="honoured"' in api.get("/p/", headers=GPC).text
    assert ledger_size(database) == size
    assert gpc_entries(database) == []
