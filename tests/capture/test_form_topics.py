"""Newsletter topics picked on a form: the lead is subscribed to exactly those (issue 18).

Through HTTP: the form (urlencoded and JSON), the double opt-in link from the queued
mail, then the preference page a manage link opens, as the lead sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson
import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent, ConsentEvidence
from consent_ledger.subjects import find_subject_id
from preference_center.models import TopicSubscription
from tests.capture.conftest import find_all
from tests.preference_center.conftest import issue, open_session
from zeroparty.db import Database
from zeroparty.settings import Settings

LINK_RE = re.compile(r"http://testserver(/confirm/[^/\s]\S*)")


def _confirm(client: TestClient, database: Database) -> None:
    with database.read() as session:
        body = session.execute(text("SELECT body_text FROM mail_outbox")).scalar_one()
    match = LINK_RE.search(body)
    assert match is not None, body
    assert client.post(match.group(1)).status_code == 200


def _page_topics(
    client: TestClient, settings: Settings, database: Database, email: str
) -> dict[str, bool]:
    """The topic boxes of the preference page: key -> ticked."""
    with database.read() as session:
        subject_id = find_subject_id(session, email)
    assert subject_id is not None
    open_session(client, issue(settings, database, subject_id))
    html = client.get("/p/").text
    return {box["value"]: "checked" in box for box in find_all(html, "input", name="topic")}


def _grant_evidence(database: Database) -> dict[str, object]:
    with database.read() as session:
        entry = session.execute(
            select(ConsentEvent).where(
                ConsentEvent.purpose_key == "newsletter", ConsentEvent.action == "granted"
            )
        ).scalar_one()
        body: dict[str, object] = orjson.loads(session.get_one(ConsentEvidence, entry.seq).body)
    return body


@pytest.mark.parametrize("shape", ["urlencoded", "json"])
def test_only_the_picked_topic_is_subscribed(
    app_client: TestClient,
    render: Callable[..., str],
    database: Database,
    settings: Settings,
    shape: str,
) -> None:
    fields = {"email": "mo@example.com", "message": "hi", "topics": ["monthly_digest"]}
    if shape == "json":
        response = app_client.post(
            "/f/contact",
            json={"fields": fields, "consent": ["newsletter"], "render_token": render("contact")},
        )
        assert response.status_code == 201, response.text
    else:
        response = app_client.post(
            "/f/contact",
            data={**fields, "consent": "newsletter", "_rt": render("contact")},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
    # The ledger's grant says which topics were picked, as a preference-page change does.
    assert _grant_evidence(database)["topics"] == "monthly_digest"
    with database.read() as session:
        rows = session.execute(
            select(TopicSubscription.topic_key, TopicSubscription.subscribed).order_by(
                TopicSubscription.topic_key
            )
        ).all()
    assert [tuple(r) for r in rows] == [("monthly_digest", True), ("webinars", False)]
    _confirm(app_client, database)
    topics = _page_topics(app_client, settings, database, "mo@example.com")
    assert topics == {"monthly_digest": True, "webinars": False, "release_notes": False}


def test_both_topics_picked_are_both_subscribed(
    app_client: TestClient, render: Callable[..., str], database: Database, settings: Settings
) -> None:
    app_client.post(
        "/f/contact",
        data={
            "email": "bo@example.com",
            "message": "hi",
            "topics": ["webinars", "monthly_digest"],
            "consent": "newsletter",
            "_rt": render("contact"),
        },
    )
    assert _grant_evidence(database)["topics"] == "monthly_digest,webinars"
    _confirm(app_client, database)
    topics = _page_topics(app_client, settings, database, "bo@example.com")
    assert topics == {"monthly_digest": True, "webinars": True, "release_notes": False}


def test_newsletter_without_a_topic_picked_gets_every_topic(
    app_client: TestClient, render: Callable[..., str], database: Database, settings: Settings
) -> None:
    """The box ticked says "send me the newsletter": all of it (site.toml's help says so)."""
    app_client.post(
        "/f/contact",
        data={"email": "al@example.com", "message": "hi", "consent": "newsletter",
              "_rt": render("contact")},
    )  # fmt: skip
    assert "topics" not in _grant_evidence(database)
    _confirm(app_client, database)
    topics = _page_topics(app_client, settings, database, "al@example.com")
    assert topics == {"monthly_digest": True, "webinars": True, "release_notes": False}


def test_topics_without_the_newsletter_box_subscribe_nothing(
    app_client: TestClient, render: Callable[..., str], database: Database
) -> None:
    app_client.post(
        "/f/contact",
        data={"email": "cy@example.com", "message": "hi", "topics": ["webinars"],
              "_rt": render("contact")},
    )  # fmt: skip
    with database.read() as session:
        assert session.execute(select(TopicSubscription)).all() == []
        assert session.execute(select(ConsentEvent)).all() == []


def test_a_held_submission_sets_the_topics_when_its_owner_confirms(
    app_client: TestClient, render: Callable[..., str], database: Database, settings: Settings
) -> None:
    """An existing lead's address: nothing changes until the mailed link is followed."""
    app_client.post(
        "/f/contact",
        data={"email": "jo@example.com", "message": "hi", "consent": "newsletter",
              "_rt": render("contact")},
    )  # fmt: skip
    _confirm(app_client, database)
    assert _page_topics(app_client, settings, database, "jo@example.com")["webinars"] is True
    app_client.post(
        "/f/contact",
        data={"email": "jo@example.com", "message": "again", "consent": "newsletter",
              "topics": "monthly_digest", "_rt": render("contact")},
    )  # fmt: skip
    with database.read() as session:
        assert session.execute(select(TopicSubscription)).all() == []
        mails = session.execute(text("SELECT body_text FROM mail_outbox")).scalars().all()
    (held,) = [m for b in mails if (m := re.search(r"http://testserver(/confirm/held/\S+)", b))]
    assert app_client.post(held.group(1)).status_code == 200
    topics = _page_topics(app_client, settings, database, "jo@example.com")
    assert topics == {"monthly_digest": True, "webinars": False, "release_notes": False}
