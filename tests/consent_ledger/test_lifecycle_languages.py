"""The lifecycle's mails in the lead's language: the re-permission mail in the language
of the notice the lead agreed to, the expiry reminder in the lead's recorded locale (dates
written the way the language writes them), English where there is no catalogue."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from consent_ledger.actions import ConsentMethod
from consent_ledger.lifecycle import StaleGrant, reminder_mail, repermission_mail, run_lifecycle
from consent_ledger.models import Subject
from tests.consent_ledger.test_lifecycle_expiry import NOW, PERIOD, lead, load
from tests.factories import record
from zeroparty.db import Database
from zeroparty.site import load_site
from zeroparty.wiring import build_ledger

ENDS = datetime(2027, 3, 4, 12, tzinfo=UTC)


def _grant(locale: str, summary: str | None = None) -> StaleGrant:
    return StaleGrant(
        subject_id="s" * 32,
        purpose="newsletter",
        title="Newsletter",
        email="anna@example.de",
        stale_sha256="0" * 64,
        new_version=2,
        new_locale=locale,
        new_sha256="1" * 64,
        new_text="Ja, zweimal im Monat.",
        summary=summary,
    )


def test_the_repermission_mail_in_the_notices_language() -> None:
    mail = repermission_mail(_grant("de"))
    assert mail.subject == "Bitte stimmen Sie erneut zu: Newsletter"
    assert mail.headers == {"Content-Language": "de"}
    assert mail.text.startswith("Hallo,\n\nwir haben geändert, wofür wir Sie")
    assert "Was sich geändert hat: Der Text, dem Sie zugestimmt haben, hat sich geändert." in (
        mail.text
    )
    assert "Der neue Text:\nJa, zweimal im Monat." in mail.text


def test_a_notice_language_without_a_catalogue_gets_an_english_mail() -> None:
    mail = repermission_mail(_grant("fr", summary="Deux fois par mois."))
    assert mail.subject == "Please agree again: Newsletter"
    assert mail.headers == {}
    assert "What changed: Deux fois par mois." in mail.text


def test_the_reminder_writes_the_date_as_the_language_does() -> None:
    german = reminder_mail("a@example.de", "Newsletter", ENDS, "de")
    assert german.subject == "Ihre Einwilligung endet am 4. März 2027: Newsletter"
    assert german.headers == {"Content-Language": "de"}
    english = reminder_mail("a@example.com", "Newsletter", ENDS, None)
    assert english.subject == "Your consent ends on 04 March 2027: Newsletter"
    assert english.headers == {}


def test_a_german_lead_is_reminded_in_german(database: Database, tmp_path: Path) -> None:
    load(database, tmp_path, "expires_after_days = 30\nremind_before_days = 7\n")
    for email in ("anna@example.de", "ann@example.com"):
        record(database, email, "newsletter", occurred_at=NOW - timedelta(days=25),
               method=ConsentMethod.DOUBLE_OPT_IN)  # fmt: skip
    with database.write() as session:
        session.get_one(Subject, lead(database, "anna@example.de")).locale = "de"
        session.get_one(Subject, lead(database, "ann@example.com")).locale = "en"
    run_lifecycle(database, build_ledger(database), lead_links=None, now=NOW)
    with database.read() as session:
        rows = dict(session.execute(text("SELECT to_address, subject FROM mail_outbox")).all())
    ends = NOW - timedelta(days=25) + PERIOD
    assert rows["anna@example.de"].startswith("Ihre Einwilligung endet am ")
    assert rows["ann@example.com"] == (
        f"Your consent ends on {ends.strftime('%d %B %Y')}: Newsletter"
    )


def test_the_purpose_title_in_the_mails_language() -> None:
    translations = '{"de": {"title": "Rundbrief"}}'
    german = repermission_mail(dataclasses.replace(_grant("de"), translations=translations))
    assert german.subject == "Bitte stimmen Sie erneut zu: Rundbrief"
    assert "wofür wir Sie um Ihre Einwilligung bitten: „Rundbrief“." in german.text
    assert "Newsletter" not in german.text
    english = repermission_mail(dataclasses.replace(_grant("en"), translations=translations))
    assert english.subject == "Please agree again: Newsletter"
    reminder = reminder_mail("a@example.de", "Newsletter", ENDS, "de", translations)
    assert reminder.subject == "Ihre Einwilligung endet am 4. März 2027: Rundbrief"


def test_a_german_lead_is_reminded_with_the_german_title(
    database: Database, tmp_path: Path
) -> None:
    load(database, tmp_path, "expires_after_days = 30\nremind_before_days = 7\n")
    demo = (tmp_path / "site.toml").read_text(encoding="utf-8")
    title = 'title = { en = "Newsletter", de = "Newsletter" }'
    assert title in demo
    (tmp_path / "site.toml").write_text(
        demo.replace(title, 'title = { en = "Newsletter", de = "Rundbrief" }'), encoding="utf-8"
    )
    load_site(database, tmp_path / "site.toml")
    record(database, "anna@example.de", "newsletter", occurred_at=NOW - timedelta(days=25),
           method=ConsentMethod.DOUBLE_OPT_IN)  # fmt: skip
    with database.write() as session:
        session.get_one(Subject, lead(database, "anna@example.de")).locale = "de"
    run_lifecycle(database, build_ledger(database), lead_links=None, now=NOW)
    with database.read() as session:
        (subject,) = session.execute(text("SELECT subject FROM mail_outbox")).scalars()
    assert subject.startswith("Ihre Einwilligung endet am ")
    assert subject.endswith(": Rundbrief")
