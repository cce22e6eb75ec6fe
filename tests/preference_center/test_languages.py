"""The preference center's pages and mails from the catalogue: the public request page,
its mail and its confirming link in German when the visitor's browser asks for it; the
lead's own pages and mails keep following the lead's recorded locale."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent, ConsentState, Subject
from preference_center.locale import TEXTS, choose_locale, strings
from tests.factories import notice_hash
from tests.fixtures.mail import SmtpServer
from tests.preference_center.conftest import CSRF_RE, EMAIL, issue, open_session
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.mail import OutboxMail
from zeroparty.settings import Settings

SAME = {"Sec-Fetch-Site": "same-origin"}
GERMAN = {"accept-language": "de-DE,de;q=0.9"}


@pytest.fixture
def client(settings: Settings, database: Database, smtp_server: SmtpServer) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as test_client:
        yield test_client


def test_page_texts_come_from_the_catalogue_with_todays_german() -> None:
    assert strings("de")["title"] == "Ihre Einstellungen"
    assert strings("de")["erase_confirm"] == "Ja, meine Daten löschen"
    assert strings("de-AT") is strings("de"), "built once per language"
    assert strings("fr") == dict(TEXTS), "no catalogue: English"
    assert all(strings("de")[key] != text for key, text in TEXTS.items() if key != "footer")


@pytest.mark.parametrize(
    ("recorded", "header", "expected"),
    [("de", "en", "de"), (None, "de", "de"), ("fr", "de;q=0.5, en", "en"), (None, None, "en")],
)
def test_the_leads_recorded_locale_wins(
    recorded: str | None, header: str | None, expected: str
) -> None:
    assert choose_locale(recorded, header) == expected
    assert choose_locale(recorded, header, "de") == "de", "?lang= comes first"


def test_the_request_page_its_mail_and_link_in_german(
    client: TestClient, smtp_server: SmtpServer, lead: str
) -> None:
    form = client.get("/request", headers=GERMAN).text
    assert '<html lang="de">' in form
    assert "Eine Datenschutzanfrage stellen" in form
    assert "Löschen Sie meine personenbezogenen Daten" in form
    refused = client.post("/request", data={"email": "nope"}, headers={**SAME, **GERMAN})
    assert refused.status_code == 422
    assert "Es wurde nichts gesendet" in refused.text
    assert "wählen Sie eine der aufgeführten Arten von Anfragen" in refused.text
    sent = client.post(
        "/request", data={"email": EMAIL, "kind": "erasure"}, headers={**SAME, **GERMAN}
    )
    assert sent.status_code == 200
    assert "Wir haben einen Link an die angegebene Adresse geschickt" in sent.text
    smtp_server.wait_for(1)
    mail = email.message_from_bytes(smtp_server.raw[0], policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    assert mail["Subject"] == "Bestätigen Sie Ihre Datenschutzanfrage"
    assert mail["Content-Language"] == "de"
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Löschen Sie meine personenbezogenen Daten" in text
    assert "Diese E-Mail wurde gesendet von" in text, "the footer in the mail's language"
    match = re.search(r"http://testserver(/request/confirm/\S+\?lang=de)", text)
    assert match is not None, text
    # The link opens in German whatever the browser that follows it says.
    page = client.get(match.group(1), headers={"accept-language": "en"})
    assert "Meine Anfrage bestätigen" in page.text
    answer = client.post(match.group(1), headers={**SAME, "accept-language": "en"})
    assert "Wir haben Ihre Anfrage erhalten: „Löschen Sie meine personenbezogenen Daten“" in (
        answer.text
    )


def test_the_request_page_stays_english_otherwise(
    client: TestClient, smtp_server: SmtpServer
) -> None:
    assert "Make a data-protection request" in client.get("/request?lang=fr").text
    client.post("/request", data={"email": "x@example.com", "kind": "access"}, headers=SAME)
    smtp_server.wait_for(1)
    assert b"Subject: Confirm your data-protection request" in smtp_server.raw[0]
    assert b"?lang=" not in smtp_server.raw[0]
    assert b"Content-Language" not in smtp_server.raw[0]
    assert b"This mail was sent by" in smtp_server.raw[0]


def _german_lead(database: Database, subject_id: str) -> None:
    with database.write() as session:
        session.execute(update(Subject).where(Subject.id == subject_id).values(locale="de"))


def test_purpose_and_topic_titles_in_the_leads_language(
    client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    """The site file's ``de`` titles and descriptions on a German lead's page; nothing
    of the English ones."""
    _german_lead(database, lead)
    open_session(client, issue(settings, database, lead))
    page = client.get("/p/").text
    assert '<html lang="de">' in page
    legends = [
        re.sub(r"<[^>]+>", "", m).strip() for m in re.findall(r"<legend>(.*?)</legend>", page, re.S)
    ]
    assert "Persönliche Betreuung" in legends
    assert "Produktneuigkeiten" in legends
    assert "Monatsrückblick" in page
    assert "Das Beste des Monats in einer E-Mail." in page
    for english in ("Personalised follow-up", "Product updates", "Monthly digest", "The best of"):
        assert english not in page


def test_lang_in_the_link_overrides_the_recorded_locale_and_stays(
    client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    """A German lead opens the link with ``?lang=en``: the redirect, the page, its forms
    and the answer after a save all stay English; an unknown ``?lang=`` is ignored."""
    _german_lead(database, lead)
    token = issue(settings, database, lead)
    landing = client.get(
        f"/p/{token}?lang=en", headers={"Sec-Fetch-Site": "none"}, follow_redirects=False
    )
    assert landing.status_code == 303
    assert landing.headers["location"] == "/p/?lang=en"
    page = client.get("/p/?lang=en").text
    assert '<html lang="en">' in page
    assert "Your preferences" in page
    assert "Personalised follow-up" in page
    assert 'action="/p/?lang=en"' in page
    assert 'action="/p/erase?lang=en"' in page
    csrf = CSRF_RE.search(page)
    assert csrf is not None
    done = client.post(
        "/p/?lang=en",
        data={"csrf": csrf.group(1), "action": "unsubscribe_all"},
        headers=SAME,
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/p/?done=unsubscribed_all&lang=en"
    assert '<html lang="en">' in client.get(done.headers["location"]).text
    # Without ?lang= the recorded locale speaks again; an unknown one changes nothing.
    assert '<html lang="de">' in client.get("/p/").text
    assert '<html lang="de">' in client.get("/p/?lang=xx").text
    assert "?lang=" not in client.get("/p/?lang=xx").text.split("<main", 1)[-1]


def test_a_mailed_link_opens_in_its_language_through_the_browser_hop(
    client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    """Opened from webmail (a cross-site click), the link answers with a page that goes
    on by itself: to the page in the link's language."""
    token = issue(settings, database, lead)
    hop = client.get(f"/p/{token}?lang=de", headers={"Sec-Fetch-Site": "cross-site"})
    assert hop.status_code == 200
    assert hop.headers["refresh"] == "0; url=/p/?lang=de"
    assert 'href="/p/?lang=de"' in hop.text
    assert '<html lang="de">' in hop.text


def test_changing_topics_on_a_page_in_another_language_keeps_the_consent(
    client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    """The lead agreed to the English newsletter text; on the page in German they turn
    a topic off. The re-affirmation names the text they agreed to, so nothing waits for
    a new confirmation: the newsletter stays permitted and no mail is sent."""
    csrf = open_session(client, issue(settings, database, lead))
    page = client.get("/p/?lang=de").text
    assert "Monatsrückblick" in page
    notices = dict(re.findall(r'name="(notice\.[a-z_]+)" value="([0-9a-f]{64})"', page))
    answer = client.post(
        "/p/?lang=de",
        content=urlencode(
            [
                ("csrf", csrf),
                ("action", "save"),
                ("purpose", "newsletter"),
                ("purpose", "profiling"),
                ("topic", "webinars"),
                *notices.items(),
            ]
        ),
        headers={**SAME, "Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/p/?done=saved&lang=de"
    with database.read() as session:
        state = session.execute(
            select(ConsentState).where(
                ConsentState.subject_id == lead, ConsentState.purpose_key == "newsletter"
            )
        ).scalar_one()
        last = session.execute(
            select(ConsentEvent).order_by(ConsentEvent.seq.desc()).limit(1)
        ).scalar_one()
        mails = session.execute(select(func.count()).select_from(OutboxMail)).scalar_one()
    assert state.permitted
    assert last.purpose_key == "newsletter"
    assert last.notice_sha256 == notice_hash(database, "newsletter", "en")
    assert last.locale == "en"
    assert mails == 0
    assert 'id="t-monthly_digest" checked' not in client.get("/p/?lang=de").text
