"""Every mail a lead gets ends with the site's footer, read from the bytes a real SMTP
server received: the company of ``[site.mail]``, the postal address and privacy policy
of ``[site.brand]``'s footer (the policy else ``[site]``'s ``policy_url``). A changed
brand reaches the next mail at once in the process that loaded it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.fixtures.mail import SmtpServer
from tests.zeroparty.test_mail_wire import _every_kind_of_mail, body_text, check_wire
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.mail import Mail, deliver_queued, mail_footer, queue_mail, transport_for
from zeroparty.settings import DEFAULT_SITE_FILE, Settings
from zeroparty.site import load_site
from zeroparty.site_info import MailSender, cached_mail_sender, mail_sender

DEMO = DEFAULT_SITE_FILE.read_text("utf-8")
COMPANY = "Northwind Analytics GmbH, Example Street 1, 10115 Berlin"
DEMO_FOOTER = (
    f"This mail was sent by {COMPANY}.\nPrivacy policy: https://northwind.example/privacy\n"
)


@pytest.fixture
def mail_client(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as client:
        yield client


def _text(raw: bytes) -> str:
    return body_text(raw).decode("utf-8").replace("\r\n", "\n")


def _load(database: Database, tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "site.toml"
    path.write_text(text, "utf-8")
    return load_site(database, path).changes


def _send_one(settings: Settings, database: Database, smtp_server: SmtpServer) -> str:
    with database.write() as session:
        mail_id = queue_mail(session, Mail(to="lead@example.com", subject="Hi", text="Hello"))
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_queued(database, transport, [mail_id], base_url=settings.base_url) == 1
    return _text(smtp_server.raw[-1])


def test_every_kind_of_mail_ends_with_the_footer(
    mail_client: TestClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    """The demo's brand footer names the address [site.mail]'s company already spells
    out: not repeated. The privacy policy is linked."""
    mails = _every_kind_of_mail(mail_client, settings, smtp_server)
    assert len(mails) == 5
    for kind, raw in mails.items():
        check_wire(raw)
        assert _text(raw).endswith("\n\n" + DEMO_FOOTER), kind


def test_the_brand_footer_reaches_the_next_mail_at_once(
    settings: Settings, database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    with database.read() as session:  # this process's copy of the sender, now warm
        assert cached_mail_sender(session, settings.base_url).postal_address == COMPANY
    branded = DEMO.replace(
        f'address = "{COMPANY}"', 'address = "Postfach 12 34, 10999 Berlin"'
    ).replace(
        'privacy_policy = "https://northwind.example/privacy"',
        'privacy_policy = "https://northwind.example/datenschutz"',
    )
    assert _load(database, tmp_path, branded) == ["site.brand: updated"]
    with database.read() as session:
        sender = cached_mail_sender(session, settings.base_url)
    assert sender.postal_address == "Postfach 12 34, 10999 Berlin"
    assert mail_footer(sender) == (
        f"This mail was sent by {COMPANY}.\nPostfach 12 34, 10999 Berlin\n"
        "Privacy policy: https://northwind.example/datenschutz"
    )
    text = _send_one(settings, database, smtp_server)
    assert text.endswith(
        "Hello\n\n"
        f"This mail was sent by {COMPANY}.\nPostfach 12 34, 10999 Berlin\n"
        "Privacy policy: https://northwind.example/datenschutz\n"
    )


def test_without_a_brand_the_policy_url_of_site_is_linked(
    settings: Settings, database: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    start, end = DEMO.index("[site.brand]"), DEMO.index("[purposes.")
    assert _load(database, tmp_path, DEMO[:start] + DEMO[end:]) == ["site.brand: removed"]
    assert _send_one(settings, database, smtp_server).endswith("Hello\n\n" + DEMO_FOOTER)
    # No brand and no policy_url: the company only.
    bare = (DEMO[:start] + DEMO[end:]).replace(
        'policy_url = "https://northwind.example/privacy"\n', ""
    )
    assert _load(database, tmp_path, bare) == ["site: updated"]
    assert _send_one(settings, database, smtp_server).endswith(
        f"Hello\n\nThis mail was sent by {COMPANY}.\n"
    )


@pytest.mark.parametrize(
    ("sender", "footer"),
    [
        (
            MailSender("N", "n@x.example", "", "Acme Ltd", "1 High St, London", "https://x/p"),
            "This mail was sent by Acme Ltd.\n1 High St, London\nPrivacy policy: https://x/p",
        ),
        (MailSender("N", "n@x.example", "", "Acme Ltd"), "This mail was sent by Acme Ltd."),
        (
            MailSender("N", "n@x.example", "", "Acme Ltd, 1 High St", "1 High St", ""),
            "This mail was sent by Acme Ltd, 1 High St.",
        ),
    ],
    ids=["all", "company-only", "address-in-company"],
)
def test_footer_lines(sender: MailSender, footer: str) -> None:
    assert mail_footer(sender) == footer


def test_the_sender_reads_alike_in_a_session_and_on_a_plain_connection(
    settings: Settings, database: Database
) -> None:
    """A submission reads the sender on a plain connection (no ORM session): the same
    sender, footer and all, as a session reads."""
    with database.read() as session:
        in_session = mail_sender(session, settings.base_url)
    with database.write_connection() as connection:
        assert mail_sender(connection, settings.base_url) == in_session
    assert in_session.postal_address == COMPANY
