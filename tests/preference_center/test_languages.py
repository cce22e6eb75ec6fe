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

import pytest
from starlette.testclient import TestClient

from preference_center.locale import TEXTS, choose_locale, strings
from tests.fixtures.mail import SmtpServer
from tests.preference_center.conftest import EMAIL
from zeroparty.app import create_app
from zeroparty.db import Database
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
