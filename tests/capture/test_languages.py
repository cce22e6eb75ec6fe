"""One form in several languages: chosen by ``?lang=`` or ``Accept-Language`` among
the form's locales; its texts from ``site.toml``, the page's own from the catalogue;
the notices, the ledger entry and the lead in the language shown; and the site file's
syntax for it, every mistake named by key path."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable

import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from consent_ledger.models import ConsentEvent, ConsentEvidence, Subject
from tests.capture.conftest import find_all, one, token_in
from tests.fixtures.mail import SmtpServer
from zeroparty.app import create_app
from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.mail import OutboxMail
from zeroparty.settings import Settings

NEWSLETTER_DE = (
    "Ja, schickt mir den Northwind-Newsletter per E-Mail, etwa einmal im Monat. "
    "Ich kann mich jederzeit mit einem Klick abmelden."
)
NEWSLETTER_EN = (
    "Yes, send me the Northwind newsletter by email, about once a month. "
    "I can unsubscribe at any time with one click."
)


def _aged(tokens: CaptureTokens, html: str) -> str:
    token = tokens.read_render(token_in(html))
    return tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))


def _german(html: str) -> None:
    assert '<html lang="de">' in html
    assert one(html, "h1")["text"] == "Sprechen Sie mit Northwind"
    assert one(html, "label", for_="f-email")["text"].split() == [
        "Geschäftliche",
        "E-Mail-Adresse",
        "(erforderlich)",
    ]
    assert find_all(html, "legend")[-1]["text"] == "Ihre Auswahl"
    assert one(html, "button", type="submit")["text"] == "Senden"
    sizes = [o["text"] for o in find_all(html, "option") if o["value"] == "1-10"]
    assert sizes == ["1 bis 10 Personen"], "built-in choices from the catalogue"
    assert "(required)" not in html
    assert "Your choices" not in html


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?lang=de", {}),
        ("", {"accept-language": "de-DE,de;q=0.9,en;q=0.5"}),
        ("?lang=de", {"accept-language": "en"}),
        ("", {"accept-language": "fr, de;q=0.2"}),
    ],
)
def test_the_form_is_shown_in_german(
    app_client: TestClient, query: str, headers: dict[str, str]
) -> None:
    html = app_client.get(f"/f/contact{query}", headers=headers).text
    _german(html)
    notice = one(html, "label", for_="c-newsletter")
    assert notice["text"] == NEWSLETTER_DE
    assert notice["data-notice-sha256"] == hashlib.sha256(NEWSLETTER_DE.encode()).hexdigest()
    assert one(html, "form")["action"] == "/f/contact?lang=de"


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", {}),
        ("?lang=en", {"accept-language": "de"}),
        ("?lang=fr", {}),  # not offered: the form's own language
        ("?lang=" + "x" * 300, {}),
        ("", {"accept-language": "fr, es;q=0.5"}),
    ],
)
def test_otherwise_the_form_is_in_its_own_language(
    app_client: TestClient, query: str, headers: dict[str, str]
) -> None:
    html = app_client.get(f"/f/contact{query}", headers=headers).text
    assert '<html lang="en">' in html
    assert one(html, "h1")["text"] == "Talk to Northwind"
    assert one(html, "label", for_="c-newsletter")["text"] == NEWSLETTER_EN


def test_a_form_in_one_language_stays_in_it(app_client: TestClient) -> None:
    html = app_client.get("/f/newsletter?lang=de", headers={"accept-language": "de"}).text
    assert '<html lang="en">' in html
    assert one(html, "label", for_="c-newsletter")["text"] == NEWSLETTER_EN


def test_json_definition_in_the_chosen_language(app_client: TestClient) -> None:
    body = app_client.get("/f/contact?lang=de", headers={"accept": "application/json"}).json()
    assert body["title"] == "Sprechen Sie mit Northwind"
    assert body["locale"] == "de"
    assert [c["text"] for c in body["consent"] if c["purpose"] == "newsletter"] == [NEWSLETTER_DE]


def test_a_german_error_keeps_the_language_and_stores_nothing(
    app_client: TestClient, tokens: CaptureTokens, counts: Callable[[], dict[str, int]]
) -> None:
    page = app_client.get("/f/contact", headers={"accept-language": "de"}).text
    before = counts()
    # Posted without ?lang and with an English browser: the token says what was shown.
    response = app_client.post(
        "/f/contact",
        data={
            "_rt": _aged(tokens, page),
            "email": "kein-gueltige-adresse",
            "consent": "newsletter",
        },
        headers={"accept-language": "en"},
    )
    assert response.status_code == 422
    html = response.text
    _german(html)
    assert one(html, "h2", id="error-summary-title")["text"] == "Es gibt ein Problem"
    error = one(html, "p", id="f-email-error")["text"]
    assert error.startswith("Fehler: Geben Sie eine gültige E-Mail-Adresse ein")
    assert one(html, "p", id="f-message-error")["text"] == "Fehler: Dieses Feld ist erforderlich"
    assert counts() == before


def test_machines_get_the_errors_in_english(app_client: TestClient, tokens: CaptureTokens) -> None:
    page = app_client.get("/f/contact?lang=de").text
    response = app_client.post(
        "/f/contact?lang=de",
        json={"fields": {"email": "nope"}, "render_token": _aged(tokens, page)},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"] == "Please correct the marked fields."
    assert error["fields"]["message"] == "This field is required"


def test_a_german_submission_records_the_german_notice_and_locale(
    app_client: TestClient, tokens: CaptureTokens, database: Database
) -> None:
    page = app_client.get("/f/contact?lang=de").text
    response = app_client.post(
        "/f/contact?lang=de",
        data={"_rt": _aged(tokens, page), "email": "anna@example.de", "message": "Hallo",
              "consent": ["newsletter", "profiling"]},
    )  # fmt: skip
    assert response.status_code == 200
    html = response.text
    assert '<html lang="de">' in html
    assert one(html, "h1")["text"] == "Vielen Dank"
    assert "Jemand aus unserem Team meldet sich" in html
    with database.read() as session:
        entries = list(session.execute(select(ConsentEvent).order_by(ConsentEvent.seq)).scalars())
        evidence = [orjson.loads(e.body) for e in session.execute(select(ConsentEvidence))
                    .scalars()]  # fmt: skip
        subject = session.execute(select(Subject)).scalar_one()
    newsletter = next(e for e in entries if e.purpose_key == "newsletter")
    assert newsletter.notice_sha256 == hashlib.sha256(NEWSLETTER_DE.encode()).hexdigest()
    assert {e.locale for e in entries} == {"de"}
    assert {body.get("locale") for body in evidence} == {"de"}
    assert subject.locale == "de"
    # The double opt-in mail is German too, and its link opens the page in German.
    with database.read() as session:
        mail = session.execute(select(OutboxMail)).scalar_one()
    assert mail.subject == "Bitte bestätigen Sie: Newsletter"
    assert mail.body_text.startswith("Hallo,\n\njemand, hoffentlich Sie, möchte Folgendes")
    match = re.search(r"http://testserver(/confirm/\S+\?lang=de)\n", mail.body_text)
    assert match is not None, mail.body_text
    page = app_client.get(match.group(1), headers={"accept-language": "en"})
    assert one(page.text, "h1")["text"] == "Bitte bestätigen Sie"
    assert one(page.text, "button", type="submit")["text"] == "Bestätigen"


# --- site.toml ----------------------------------------------------------------------------

BILINGUAL = """
[forms.bilingual]
title = { en = "Hello", de = "Hallo" }
locales = ["en", "de"]
consent = ["newsletter"]

[[forms.bilingual.fields]]
name = "email"
type = "email"
label = { en = "Email", de = "E-Mail" }

[[forms.bilingual.fields]]
name = "size"
type = "radio"
label = { en = "Size", de = "Größe" }
choices = [{ value = "s", label = { en = "Small", de = "Klein" } }]
"""


def test_a_bilingual_form_loads_and_is_shown_in_both(
    app_client: TestClient, load_toml: Callable[..., list[str]]
) -> None:
    load_toml(BILINGUAL)
    german = app_client.get("/f/bilingual?lang=de").text
    assert one(german, "h1")["text"] == "Hallo"
    assert one(german, "label", for_="f-size-0")["text"] == "Klein"
    assert one(german, "button", type="submit")["text"] == "Absenden", "default from catalogue"
    english = app_client.get("/f/bilingual").text
    assert one(english, "h1")["text"] == "Hello"
    assert one(english, "button", type="submit")["text"] == "Submit"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('title = { en = "Hello", de = "Hallo" }', 'title = "Hello"',
         "forms.bilingual.title: this form is in ['en', 'de']: give the text in each"),
        ('label = { en = "Email", de = "E-Mail" }', 'label = { en = "Email" }',
         "forms.bilingual.fields[0].label: no text in 'de'"),
        ('label = { en = "Email", de = "E-Mail" }', 'label = { en = "Email", de = "" }',
         "forms.bilingual.fields[0].label: no text in 'de'"),
        ('label = { en = "Email", de = "E-Mail" }',
         'label = { en = "Email", de = "E-Mail", fr = "Courriel" }',
         "forms.bilingual.fields[0].label.fr: not one of this form's locales"),
        ('{ value = "s", label = { en = "Small", de = "Klein" } }', '"s"',
         "forms.bilingual.fields[1].choices[0]: this form is in several languages"),
        ('{ value = "s", label = { en = "Small", de = "Klein" } }',
         '{ value = "s", label = { en = "Small" } }',
         "forms.bilingual.fields[1].choices[0].label: no text in 'de'"),
        ('locales = ["en", "de"]', 'locales = ["de"]',
         "forms.bilingual.locales: must name the form's own locale 'en'"),
        ('locales = ["en", "de"]', 'locales = ["en", "fr"]',
         "forms.bilingual.locales: 'fr' is not in site.locales ['en', 'de']"),
        ('locales = ["en", "de"]', 'locales = []',
         "forms.bilingual.locales: must be a non-empty list"),
        ('consent = ["newsletter"]', 'consent = ["sale_sharing"]',
         "forms.bilingual.consent: purpose 'sale_sharing' has no notice text in 'de'"),
    ],
)  # fmt: skip
def test_site_load_names_each_mistake_by_key_path(
    load_toml: Callable[..., list[str]],
    counts: Callable[[], dict[str, int]],
    old: str,
    new: str,
    problem: str,
) -> None:
    before = counts()
    assert old in BILINGUAL
    with pytest.raises(SiteConfigError) as caught:
        load_toml(BILINGUAL.replace(old, new))
    assert problem in str(caught.value)
    assert counts() == before


def test_a_form_in_one_language_keeps_its_version(load_toml: Callable[..., list[str]]) -> None:
    """Forms in one language hash as before: loading the demo again publishes nothing."""
    assert load_toml("") == []


QUIZ = """
[quizzes.fit]
title = { en = "Which fits?", de = "Was passt?" }
locales = ["en", "de"]
consent = ["newsletter"]
default_outcome = "small"

[[quizzes.fit.fields]]
name = "email"
type = "email"
label = { en = "Email", de = "E-Mail" }
required = false

[[quizzes.fit.steps]]
key = "size"
title = { en = "Your team", de = "Ihr Team" }

[[quizzes.fit.steps.questions]]
key = "size"
text = { en = "How big is your team?", de = "Wie groß ist Ihr Team?" }
answers = [
  { value = "one", label = { en = "Just me", de = "Nur ich" }, outcome = "small" },
  { value = "many", label = { en = "Many", de = "Viele" }, outcome = "large" },
]

[quizzes.fit.outcomes.small]
title = { en = "Start small", de = "Klein anfangen" }
text = { en = "A light setup.", de = "Eine schlanke Lösung." }

[quizzes.fit.outcomes.large]
title = { en = "Go big", de = "Groß denken" }
text = { en = "A platform.", de = "Eine Plattform." }
"""


def test_a_quiz_in_german_step_by_step(
    app_client: TestClient, load_toml: Callable[..., list[str]]
) -> None:
    load_toml(QUIZ)
    step = app_client.get("/f/fit", headers={"accept-language": "de"}).text
    assert one(step, "h1")["text"] == "Was passt?"
    assert one(step, "p", class_="progress")["text"] == "Schritt 1: Ihr Team"
    assert one(step, "legend")["text"] == "Wie groß ist Ihr Team?"
    assert one(step, "label", for_="f-size-1")["text"] == "Viele"
    assert one(step, "button", value="next")["text"] == "Weiter"
    answered = app_client.post(
        "/f/fit",
        data={"_rt": token_in(step), "_at": "size", "_action": "next", "size": "many"},
        headers={"accept-language": "en"},  # the token keeps the language shown
    )
    assert answered.status_code == 200
    result = answered.text
    assert '<html lang="de">' in result
    assert one(result, "h2", id="outcome-title")["text"] == "Groß denken"
    assert "Eine Plattform." in result
    assert one(result, "label", for_="c-newsletter")["text"] == NEWSLETTER_DE


def test_the_german_confirmation_mail_on_the_wire(
    settings: Settings, database: Database, smtp_server: SmtpServer, tokens: CaptureTokens
) -> None:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as client:
        page = client.get("/f/contact?lang=de").text
        client.post(
            "/f/contact",
            data={"_rt": _aged(tokens, page), "email": "jonas@example.de", "message": "Hallo",
                  "consent": "newsletter"},
        )  # fmt: skip
    (mail,) = smtp_server.wait_for(1)
    assert mail["Subject"] == "Bitte bestätigen Sie: Newsletter"
    assert mail["Content-Language"] == "de"
    text = SmtpServer.text_of(mail)
    assert "jemand, hoffentlich Sie, möchte Folgendes erhalten: Newsletter." in text
    assert "Einstellungen verwalten oder abmelden: http" in text
    assert "Diese E-Mail wurde gesendet von Northwind Analytics GmbH" in text
    assert "Datenschutzerklärung: https://northwind.example/privacy" in text
    assert "unsubscribe" not in text.replace("/unsubscribe", "")


def test_purpose_titles_in_the_language_shown(
    app_client: TestClient, tokens: CaptureTokens, database: Database
) -> None:
    """The site file's ``de`` purpose titles on the German thank-you page, in the
    confirmation mail and on the page its link opens; English ones nowhere."""
    page = app_client.get("/f/contact?lang=de").text
    response = app_client.post(
        "/f/contact?lang=de",
        data={"_rt": _aged(tokens, page), "email": "lena@example.de", "message": "Hallo",
              "consent": ["product_updates", "profiling"]},
    )  # fmt: skip
    assert response.status_code == 200
    assert "Produktneuigkeiten, Persönliche Betreuung" in response.text
    assert "Product updates" not in response.text
    with database.read() as session:
        mail = session.execute(select(OutboxMail)).scalar_one()
    assert mail.subject == "Bitte bestätigen Sie: Produktneuigkeiten"
    assert "möchte Folgendes erhalten: Produktneuigkeiten." in mail.body_text
    match = re.search(r"http://testserver(/confirm/\S+\?lang=de)\n", mail.body_text)
    assert match is not None, mail.body_text
    confirm = app_client.get(match.group(1))
    assert '<html lang="de">' in confirm.text, "the page's language, not the default"
    assert [li["text"] for li in find_all(confirm.text, "li")] == ["Produktneuigkeiten"]
    # The same link in English (?lang=en) names the English title.
    english = app_client.get(match.group(1).replace("?lang=de", "?lang=en"))
    assert [li["text"] for li in find_all(english.text, "li")] == ["Product updates"]
    done = app_client.post(match.group(1))
    assert "Produktneuigkeiten" in done.text
    assert "Product updates" not in done.text
