"""The sender of every mail: ``[site.mail]`` in ``site.toml``, checked and stored; the
old undocumented ``?from=`` SMTP URL parameter is refused, pointing to that table."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from zeroparty.config_errors import SiteConfigError
from zeroparty.db import Database
from zeroparty.mail import SmtpTransport
from zeroparty.settings import DEFAULT_SITE_FILE, Settings, SettingsError
from zeroparty.site import load_site
from zeroparty.site_info import SiteInfo, site_identity

DEMO = DEFAULT_SITE_FILE.read_text("utf-8")
DEMO_MAIL = DEMO[DEMO.index("[site.mail]") : DEMO.index("[site.brand]")]


def _with_mail_table(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(DEMO.replace(DEMO_MAIL, table + "\n"), "utf-8")
    return path


def _stored(database: Database) -> tuple[str, ...]:
    with database.read() as session:
        row = session.execute(select(SiteInfo)).scalar_one()
        return (row.mail_from_name, row.mail_from_address, row.mail_reply_to, row.mail_company)


@pytest.mark.parametrize(
    "url",
    ["smtp://relay.example:587?from=x%40example.com", "smtp://relay.example?starttls=1&from=a"],
)
def test_smtp_url_from_parameter_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match=r"ZEROPARTY_SMTP_URL: \?from= .*\[site\.mail\]"):
        Settings.from_env({"ZEROPARTY_SMTP_URL": url})
    with pytest.raises(ValueError, match=r"site\.toml, table \[site\.mail\]"):
        SmtpTransport(url)


def test_unknown_smtp_url_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        SmtpTransport("smtp://relay.example?sender=x")
    assert SmtpTransport("smtp://relay.example:587?starttls=1").starttls is True


def test_demo_sender_is_stored(database: Database) -> None:
    assert _stored(database) == (
        "Northwind Analytics",
        "no-reply@northwind.example",
        "privacy@northwind.example",
        "Northwind Analytics GmbH, Example Street 1, 10115 Berlin",
    )


def test_without_the_table_nothing_is_configured(database: Database, tmp_path: Path) -> None:
    assert load_site(database, _with_mail_table(tmp_path, "")).changes == ["site: updated"]
    assert _stored(database) == ("", "", "", "")
    with database.read() as session:
        assert site_identity(session).mail_from_address == ""


@pytest.mark.parametrize(
    ("table", "where", "what"),
    [
        ('[site.mail]\nfrom_address = "not an address"', "site.mail.from_address", "valid"),
        ('[site.mail]\nfrom_address = "a@b@example.com"', "site.mail.from_address", "valid"),
        ('[site.mail]\nreply_to = "privacy@"', "site.mail.reply_to", "valid"),
        ('[site.mail]\nfrom_address = "jörg@example.com"', "site.mail.from_address", "valid"),
        ('[site.mail]\nreply_to = "jörg@example.com"', "site.mail.reply_to", "valid"),
        (
            '[site.mail]\nfrom_name = "Evil\\r\\nBcc: x@example.com"',
            "site.mail.from_name",
            "one line",
        ),
        ("[site.mail]\nfrom_name = 7", "site.mail.from_name", "one line"),
        ('[site.mail]\nsender = "a@example.com"', "site.mail.sender", "unknown key"),
        ('[site]\nmail = "no-reply@example.com"', "site.mail", "must be a table"),
    ],
)
def test_bad_sender_is_refused_by_key_path(
    database: Database, tmp_path: Path, table: str, where: str, what: str
) -> None:
    before = _stored(database)
    path = tmp_path / "site.toml"
    if table.startswith("[site]\n"):
        # A value instead of the table, inside the [site] table itself.
        text = DEMO.replace(DEMO_MAIL, "").replace("[site]\n", table + "\n", 1)
    else:
        text = DEMO.replace(DEMO_MAIL, table + "\n")
    path.write_text(text, "utf-8")
    with pytest.raises(SiteConfigError) as raised:
        load_site(database, path)
    problems = dict(raised.value.problems)
    assert what in problems[f"site.toml: {where}"]
    assert _stored(database) == before
