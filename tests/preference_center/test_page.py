"""The preference page: scanner-safe GET, changes reaching ledger and API at once,
bad input and cross-site POSTs refused with nothing written, locales."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent, ConsentEvidence, Subject
from consent_ledger.verify import verify_ledger
from preference_center import services
from preference_center.models import TopicSubscription, TopicSubscriptionChange
from tests.factories import notice_hash
from tests.preference_center.conftest import EMAIL, counts, issue, ledger_size, open_session
from zeroparty.db import Database
from zeroparty.mail import OutboxMail
from zeroparty.settings import Settings

SAME = {"Sec-Fetch-Site": "same-origin"}


def _post(
    client: TestClient,
    path: str,
    pairs: list[tuple[str, str]],
    headers: dict[str, str] | None = None,
) -> Any:
    """POST repeated fields (``purpose=a&purpose=b``) as a browser encodes a form."""
    return client.post(
        path,
        content=urlencode(pairs),
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or SAME)},
    )


def _consent(api: TestClient, purpose: str) -> dict[str, Any]:
    response = api.get("/api/consent", params={"email": EMAIL, "purpose": purpose})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _form(
    database: Database, csrf: str, purposes: list[str], topics: list[str]
) -> list[tuple[str, str]]:
    fields = [("csrf", csrf), ("action", "save")]
    fields += [("purpose", p) for p in purposes]
    fields += [("topic", t) for t in topics]
    for key in ("newsletter", "product_updates", "profiling", "sale_sharing"):
        fields.append((f"notice.{key}", notice_hash(database, key)))
    return fields


def _entries(database: Database, after: int) -> list[ConsentEvent]:
    with database.read() as session:
        stmt = select(ConsentEvent).where(ConsentEvent.seq > after).order_by(ConsentEvent.seq)
        return list(session.execute(stmt).scalars())


def test_get_changes_nothing(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    before = counts(database)
    token = issue(settings, database, lead)
    # A mail scanner follows links: GET, HEAD, with or without redirects, many times.
    for _ in range(3):
        app_client.get(f"/p/{token}")
        app_client.head(f"/p/{token}")
        app_client.get(f"/u/{issue(settings, database, lead)}")
    assert counts(database) == before


def test_page_shows_purposes_notices_states_topics(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    open_session(app_client, issue(settings, database, lead))
    page = app_client.get("/p/")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    html = page.text
    assert EMAIL in html
    assert "Yes, send me the Northwind newsletter by email" in html
    assert re.search(r'value="newsletter" id="p-newsletter"\s+checked', html)
    assert re.search(r'value="product_updates" id="p-product_updates"\s+>', html)
    assert re.search(r'value="monthly_digest" id="t-monthly_digest"\s+checked', html)
    assert 'data-state="on"' in html
    assert 'data-state="off"' in html


def test_page_in_german_from_accept_language(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    # The lead's recorded locale is en (they saw English notices): it wins.
    open_session(app_client, issue(settings, database, lead))
    assert "Your preferences" in app_client.get("/p/", headers={"Accept-Language": "de"}).text
    with database.write() as session:
        session.get_one(Subject, lead).locale = None
    page = app_client.get("/p/", headers={"Accept-Language": "de-AT, en;q=0.5"}).text
    assert '<html lang="de">' in page
    assert "Ihre Einstellungen" in page
    assert "Ja, schickt mir den Northwind-Newsletter" in page
    # A purpose without a German notice shows its English one, marked as English.
    assert 'lang="en">Northwind may share my contact details' in page


def test_recorded_german_locale_wins(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    with database.write() as session:
        session.get_one(Subject, lead).locale = "de"
    open_session(app_client, issue(settings, database, lead))
    assert "Ihre Einstellungen" in app_client.get("/p/", headers={"Accept-Language": "en"}).text


def test_each_change_reaches_ledger_and_api_at_once(
    api: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    csrf = open_session(api, issue(settings, database, lead))
    assert _consent(api, "newsletter")["permitted"] is True
    assert _consent(api, "product_updates")["permitted"] is False
    start = ledger_size(database)
    # newsletter with one topic only; product updates on; profiling off.
    response = _post(
        api,
        "/p/",
        _form(database, csrf, ["newsletter", "product_updates"], ["webinars", "release_notes"]),
    )
    assert response.status_code == 200
    # product_updates was never confirmed by this lead: it waits for the mailed link.
    assert "we have mailed you a link to confirm" in response.text
    entries = _entries(database, start)
    assert [(e.purpose_key, e.action) for e in entries] == [
        ("newsletter", "granted"),
        ("product_updates", "granted"),
        ("profiling", "withdrawn"),
    ]
    for entry in entries:
        assert entry.source == "preference-center"
        assert entry.method == "email-link"
        assert entry.evidence_sha256 is not None
    assert [e.confirmation_required for e in entries] == [False, True, False]
    assert _consent(api, "product_updates")["permitted"] is False
    with database.read() as session:
        body = session.execute(
            select(OutboxMail.body_text).where(OutboxMail.subject.like("Please confirm%"))
        ).scalar_one()
    confirm_path = re.search(r"https?://[^/\s]+(/p/confirm/\S+)", body)
    assert confirm_path is not None
    assert api.post(confirm_path.group(1), headers=SAME).status_code == 200
    assert entries[1].notice_sha256 == notice_hash(database, "product_updates")
    with database.read() as session:
        evidence = session.get_one(ConsentEvidence, entries[0].seq).body
        topics = dict(
            session.execute(
                select(TopicSubscription.topic_key, TopicSubscription.subscribed).where(
                    TopicSubscription.subject_id == lead
                )
            ).all()
        )
        history = (
            session.execute(
                select(TopicSubscriptionChange.ledger_seq).where(
                    TopicSubscriptionChange.topic_key == "monthly_digest"
                )
            )
            .scalars()
            .all()
        )
    assert '"topics":"webinars"' in evidence
    assert '"user_agent":"testclient"' in evidence
    assert topics == {"monthly_digest": False, "release_notes": True}
    assert history == [entries[0].seq]
    # Effective at once for the site's backend.
    assert _consent(api, "product_updates")["permitted"] is True
    assert _consent(api, "profiling")["permitted"] is False
    assert _consent(api, "newsletter")["permitted"] is True
    # Saving the same choices again records nothing.
    _post(
        api,
        "/p/",
        _form(database, csrf, ["newsletter", "product_updates"], ["webinars", "release_notes"]),
    )
    assert ledger_size(database) == start + 4  # three changes and one confirmation
    with database.connect() as connection:
        assert verify_ledger(connection).ok


def test_unsubscribe_from_everything_in_one_step(
    api: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    csrf = open_session(api, issue(settings, database, lead))
    start = ledger_size(database)
    response = api.post("/p/", data={"csrf": csrf, "action": "unsubscribe_all"}, headers=SAME)
    assert response.status_code == 200
    assert "You are unsubscribed from everything." in response.text
    assert {(e.purpose_key, e.action) for e in _entries(database, start)} == {
        ("newsletter", "withdrawn"),
        ("profiling", "withdrawn"),
    }
    for purpose in ("newsletter", "profiling", "product_updates"):
        assert _consent(api, purpose)["permitted"] is False
    assert 'data-state="on"' not in response.text
    api.post("/p/", data={"csrf": csrf, "action": "unsubscribe_all"}, headers=SAME)
    assert ledger_size(database) == start + 2


def test_opt_out_purpose_is_refused_not_withdrawn(
    api: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    with database.write() as session:
        session.get_one(Subject, lead).jurisdiction = "US-CA"
    assert _consent(api, "sale_sharing")["permitted"] is True  # opt-out default in California
    csrf = open_session(api, issue(settings, database, lead))
    start = ledger_size(database)
    _post(
        api,
        "/p/",
        _form(database, csrf, ["newsletter", "profiling"], ["monthly_digest", "webinars"]),
    )
    assert [(e.purpose_key, e.action) for e in _entries(database, start)] == [
        ("sale_sharing", "refused")
    ]
    assert _consent(api, "sale_sharing")["permitted"] is False


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"purpose": ["no_such_purpose"]}, 422, "purpose"),
        ({"topic": ["no_such_topic"]}, 422, "topic"),
        ({"purpose": ["Bad Key!"]}, 422, "purpose"),
        ({"notice.product_updates": ["0" * 64]}, 422, "notice.product_updates"),
        ({"notice.product_updates": ["not-a-hash"]}, 422, "notice.product_updates"),
        ({"notice.product_updates": [None]}, 422, "notice.product_updates"),
        ({"action": ["explode"]}, 422, "action"),
        ({"csrf": [None]}, 403, None),
        ({"csrf": ["wrong"]}, 403, None),
    ],
)
def test_bad_input_changes_nothing(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    change: dict[str, list[str | None]],
    status: int,
    field: str | None,
) -> None:
    csrf = open_session(app_client, issue(settings, database, lead))
    fields = dict(_form(database, csrf, ["newsletter", "product_updates"], []))
    multi: list[tuple[str, str]] = [(k, v) for k, v in fields.items() if k not in change]
    for name, values in change.items():
        multi += [(name, v) for v in values if v is not None]
    for name in ("newsletter", "product_updates"):
        if ("purpose", name) not in multi and "purpose" not in change:
            multi.append(("purpose", name))
    before = counts(database)
    response = _post(app_client, "/p/", multi)
    assert response.status_code == status, response.text
    assert "Nothing was changed" in response.text
    if field:
        assert f"<strong>{field}</strong>" in response.text
    assert counts(database) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
    ],
)
def test_cross_site_posts_refused(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    headers: dict[str, str],
) -> None:
    csrf = open_session(app_client, issue(settings, database, lead))
    before = counts(database)
    for path, data in (
        ("/p/", {"csrf": csrf, "action": "unsubscribe_all"}),
        ("/p/erase", {"csrf": csrf}),
        ("/p/request-link", {"email": EMAIL}),
    ):
        response = app_client.post(path, data=data, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert "cross-site request refused" in response.text
    assert counts(database) == before


def test_same_origin_header_allows(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    csrf = open_session(app_client, issue(settings, database, lead))
    response = app_client.post(
        "/p/",
        data={"csrf": csrf, "action": "unsubscribe_all"},
        headers={"Origin": "http://testserver"},
    )
    assert response.status_code == 200


def test_post_without_session_refused(
    app_client: TestClient, database: Database, lead: str
) -> None:
    before = counts(database)
    response = app_client.post("/p/", data={"csrf": "x", "action": "unsubscribe_all"}, headers=SAME)
    assert response.status_code == 401
    assert counts(database) == before


def test_post_to_token_url(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    token = issue(settings, database, lead)
    csrf = open_session(app_client, token)
    response = app_client.post(
        f"/p/{token}", data={"csrf": csrf, "action": "unsubscribe_all"}, headers=SAME
    )
    assert response.status_code == 200
    assert "You are unsubscribed from everything." in response.text


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"action": "save"}', 415),
        ("text/plain", b"action=save", 415),
    ],
)
def test_wrong_body_type_refused(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    open_session(app_client, issue(settings, database, lead))
    before = counts(database)
    response = app_client.post("/p/", content=body, headers={**SAME, "Content-Type": content_type})
    assert response.status_code == status
    assert counts(database) == before


def test_oversized_form_refused(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    csrf = open_session(app_client, issue(settings, database, lead))
    before = counts(database)
    data = [("csrf", csrf), ("action", "save")] + [("topic", "webinars")] * 400
    response = _post(app_client, "/p/", data)
    assert response.status_code in (400, 413)
    assert counts(database) == before


def test_the_lead_is_read_in_the_statements_column_order() -> None:
    """``lead_on_cursor`` reads the driver's rows by position: ``LEAD_COLUMNS`` is the
    statement's order, with and without the notices."""
    with_notices = tuple(c.key for c in services._LEAD_WITH_NOTICES.selected_columns)
    assert with_notices == services.LEAD_COLUMNS
    without = tuple(c.key for c in services._LEAD.selected_columns)
    assert without == services.LEAD_COLUMNS[: len(without)]
    assert services.LEAD_COLUMNS[len(without)] == "notice_locale"
