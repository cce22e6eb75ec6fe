"""A message built with the cached headers is byte for byte the one the email package
builds without them, and so are the bytes :func:`zeroparty.mail.wire_message` writes
without building one, for the ``.eml`` file and for SMTP (the wire tests read real SMTP;
this one compares every byte)."""

from __future__ import annotations

import copy
import dataclasses
import email.generator
import io
import time
import uuid
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, getaddresses
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from zeroparty import site_info
from zeroparty.db import Database
from zeroparty.mail import (
    MAX_LINE_OCTETS,
    RAW_HEADERS,
    WIRE_POLICY,
    Attachment,
    FolderTransport,
    OutboxMail,
    WirePolicy,
    _fold_raw,
    attachments_json,
    build_message,
    in_language,
    mail_footer,
    wire_address,
    wire_message,
)
from zeroparty.mail_html import mail_html
from zeroparty.site_info import (
    MailColours,
    MailSender,
    SiteInfo,
    cached_mail_sender,
    site_identity,
    store_site_identity,
)


class _StdlibPolicy(WirePolicy):
    """The wire policy as the email package alone runs it: every header parsed and
    folded anew."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        return EmailPolicy.header_store_parse(self, name, value)  # type: ignore[no-any-return]

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in RAW_HEADERS:
            return _fold_raw(name, str(value), self.linesep)
        return EmailPolicy.fold(self, name, value)  # type: ignore[no-any-return]

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in RAW_HEADERS:
            return _fold_raw(name, str(value), self.linesep).encode("ascii")
        return EmailPolicy.fold_binary(self, name, value)  # type: ignore[no-any-return]


STDLIB = _StdlibPolicy(linesep="\r\n", max_line_length=MAX_LINE_OCTETS, cte_type="7bit")


def _reference(row: OutboxMail, sender: MailSender) -> EmailMessage:
    """``build_message`` as it was written before the caches."""
    message = EmailMessage(policy=STDLIB)
    from_address = wire_address(sender.from_address)
    message["From"] = Address(sender.from_name, addr_spec=from_address)
    if sender.reply_to:
        message["Reply-To"] = wire_address(sender.reply_to)
    message["To"] = wire_address(row.to_address)
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    message["Message-ID"] = f"<{row.id}@{from_address.rpartition('@')[2]}>"
    headers = orjson.loads(row.headers)
    for name, value in headers.items():
        message[name] = value
    language = headers.get("Content-Language", "en")
    footer = mail_footer(sender, language)
    text = f"{row.body_text.rstrip()}\n\n{footer}\n"
    message.set_content(text)
    if row.body_html:
        lines = "<br>".join(escape(line) for line in footer.splitlines())
        message.add_alternative(f"{row.body_html}<p>{lines}</p>", subtype="html")
    elif sender.colours is not None:
        message.make_alternative(boundary=f"=_alt_{row.id}")
        message.add_alternative(mail_html(text, sender.colours), subtype="html")
    for part in message.iter_parts():
        for inner in part.walk():
            del inner["MIME-Version"]
    if language != "en":
        del message["Content-Language"]
        message["Content-Language"] = language
    return message


def _smtp_bytes(message: EmailMessage) -> bytes:
    """What ``smtplib.SMTP.send_message`` sends for ``message`` (its own flattening)."""
    flat = copy.copy(message)
    del flat["Bcc"]
    del flat["Resent-Bcc"]
    with io.BytesIO() as out:
        email.generator.BytesGenerator(out).flatten(flat, linesep="\r\n")
        return out.getvalue()


SENDERS = [
    MailSender(
        "Northwind Analytics",
        "no-reply@northwind.example",
        "privacy@northwind.example",
        "Northwind Analytics GmbH, Example Street 1, 10115 Berlin",
    ),
    MailSender('Jörg & Söhne, "Datenschutz"', "no-reply@bücher.example", "", "Jörg & Söhne <GmbH>"),
    MailSender(
        "A" * 90 + " Very Long Sender Name That Must Fold",
        "x@[127.0.0.1]",
        "r@example.com",
        "Ünïcode Company",
    ),
    MailSender(
        "Northwind",
        "no-reply@northwind.example",
        "",
        "Northwind Analytics GmbH",
        "Postfach 12 34, 10999 Berlin <Tür & Tor>",
        "https://northwind.example/privacy?a=1&b=2",
        MailColours("Nörthwind <b>", "#0b5cad", "#1b1b1f", "#ffffff"),
    ),
]
SUBJECTS = [
    "Please confirm your subscription",
    "Bitte bestätigen Sie Ihr Abonnement \u2013 Newsletter „Wöchentlich“",
    "A long subject " * 12,
    "=?utf-8?q?looks_encoded?= but is not",
]
BODIES = [
    ("Hello,\n\nconfirm: http://testserver/confirm/" + "t" * 140 + "\n", None),
    ("Grüße,\n\nbitte bestätigen: http://testserver/confirm/abc\n", "<p>Grüße</p>"),
    ("x" * 1200 + "\nline\n", "<p>" + "y" * 1500 + "</p>"),
    # Lines that begin with "From " (SMTP's generator marks them), a dot, CRLF, indents.
    ("From here on\r\n.\r\n\r\n    zeroparty receipt verify r.json\nFrom x\n", None),
    ("\n".join(f"Zeile {n}: Grüße" for n in range(30)) + "\n", None),
]
LANGUAGES = [{}, in_language("de"), {"Content-Language": "en"}]


def _row(
    subject: str,
    body: tuple[str, str | None],
    to: str,
    language: dict[str, str] | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> OutboxMail:
    headers = {
        "List-Unsubscribe": "<http://testserver/u/" + uuid.uuid4().hex * 3 + ">",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        **(language or {}),
    }
    return OutboxMail(
        id=uuid.uuid4().hex,
        to_address=to,
        subject=subject,
        body_text=body[0],
        body_html=body[1],
        headers=orjson.dumps(headers).decode(),
        created_at=datetime(2026, 12, 4, 4, 40, 1, 123456, tzinfo=UTC),
        attempts=0,
        attachments=attachments_json(attachments),
    )


@pytest.fixture(autouse=True)
def _fixed_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    import email.generator

    monkeypatch.setattr(
        email.generator.Generator, "_make_boundary", classmethod(lambda cls, text=None: "==b==")
    )


@pytest.mark.parametrize("sender", SENDERS)
def test_cached_build_writes_the_same_bytes(sender: MailSender) -> None:
    for _round in range(2):  # cold, then with every cache warm
        for subject in SUBJECTS:
            for body in BODIES:
                for to in ("lead@example.com", "lead@bücher.example"):
                    row = _row(subject, body, to)
                    built = build_message(row, sender)
                    assert built.policy is WIRE_POLICY
                    expected = _reference(row, sender)
                    assert built.as_bytes() == expected.as_bytes()
                    assert built.as_string() == expected.as_string()
                    assert bytes(built) == bytes(expected)
                    assert [str(v) for v in built.values()] == [str(v) for v in expected.values()]


TO = ["lead@example.com", "lead@bücher.example", "a.b+c@sub.example.org", '"odd one"@example.com']
RECEIPT = (Attachment("receipt.json", "application/json", b'{"a": 1}\n' * 40),)


@pytest.mark.parametrize("sender", SENDERS)
def test_wire_message_writes_the_email_packages_bytes(sender: MailSender) -> None:
    """The bytes written without building a message are the email package's, for the
    ``.eml`` file (``as_bytes``) and for SMTP (``send_message``), with its envelope."""
    for _round in range(2):
        for subject in SUBJECTS:
            for body in BODIES:
                for to in TO:
                    for language in LANGUAGES:
                        for files in ((), RECEIPT):
                            row = _row(subject, body, to, language, files)
                            wire = wire_message(row, sender)
                            expected = build_message(row, sender)
                            assert wire.data == expected.as_bytes()
                            assert wire.smtp_data() == _smtp_bytes(expected)
                            assert wire.envelope_from == getaddresses([expected["From"]])[0][1]
                            assert wire.envelope_to == tuple(
                                address for _, address in getaddresses([expected["To"]])
                            )
                            assert wire.subject == str(expected["Subject"])


def test_the_folder_transport_makes_its_folder_and_writes_the_bytes(tmp_path: Path) -> None:
    wire = wire_message(_row(SUBJECTS[1], BODIES[1], "lead@example.com"), SENDERS[3])
    folder = tmp_path / "missing" / "outbox"
    FolderTransport(folder).send(wire)
    FolderTransport(folder).send(wire)  # the folder is there now
    files = sorted(folder.iterdir())
    assert len(files) == 2
    assert [file.read_bytes() for file in files] == [wire.data, wire.data]


def test_wire_message_refuses_what_build_message_refuses() -> None:
    sender = SENDERS[0]
    for header in ("<http://x/u/a>\r\nBcc: x@example.com", "<http://x/u/é>"):
        row = _row("s", BODIES[0], "lead@example.com")
        row.headers = orjson.dumps({"List-Unsubscribe": header}).decode()
        with pytest.raises(ValueError, match=r"\S") as built:
            build_message(row, sender).as_bytes()
        with pytest.raises(ValueError, match=r"\S") as written:
            wire_message(row, sender)
        assert str(written.value) == str(built.value)


def test_bad_header_text_is_still_refused() -> None:
    message = EmailMessage(policy=WIRE_POLICY)
    with pytest.raises(ValueError, match="linefeed"):
        message["Subject"] = "two\r\nBcc: x@example.com"


def test_the_sender_is_read_once_and_forgotten_when_the_site_changes(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url = "http://testserver"

    def sender() -> MailSender:
        with database.read() as session:
            return cached_mail_sender(session, base_url)

    first = sender()
    assert first.from_address == "no-reply@northwind.example"
    # Changed behind this process's back (as another process's site load would): the
    # copy is used until it is SENDER_CACHE_SECONDS old.
    with database.write() as session:
        session.execute(update(SiteInfo).values(mail_from_address="other@northwind.example"))
    assert sender() == first
    later = time.monotonic() + site_info.SENDER_CACHE_SECONDS + 1
    monkeypatch.setattr(site_info, "time", SimpleNamespace(monotonic=lambda: later))
    assert sender().from_address == "other@northwind.example"
    # Stored by this process (site load): the next mail has the new sender at once.
    with database.write() as session:
        identity = site_identity(session)
        changes = store_site_identity(
            session, dataclasses.replace(identity, mail_from_address="new@northwind.example")
        )
    assert changes == ["site: updated"]
    assert sender().from_address == "new@northwind.example"


def test_content_language_names_only_a_language_the_mail_is_written_in() -> None:
    """A lead whose language has no catalogue gets the mail in English: its header
    must not claim the lead's language (RFC 3282 names the language of the content)."""
    assert in_language("de") == {"Content-Language": "de"}
    assert in_language("de-AT") == {"Content-Language": "de"}
    assert in_language("en") == {}
    assert in_language("en-GB") == {}
    assert in_language("fr") == {}
    assert in_language("pt-BR") == {}
