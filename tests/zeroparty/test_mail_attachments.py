"""Files sent with a mail: kept in the outbox row, refused before anything is written
when they cannot be sent, and on the wire as ``multipart/mixed`` after the text (and
its HTML alternative), read back from the bytes a real SMTP server received."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select

from tests.fixtures.mail import SmtpServer
from tests.zeroparty.test_mail_wire import check_wire
from zeroparty import mail as mail_module
from zeroparty.db import Database
from zeroparty.mail import (
    MAX_ATTACHMENT_BYTES,
    Attachment,
    AttachmentError,
    Mail,
    OutboxMail,
    QueuedMail,
    claimed_mails,
    deliver_queued,
    queue_mail,
    queued_mail_ids,
    send_claimed,
    transport_for,
)
from zeroparty.settings import Settings

EMAIL = "nora@example.com"
HEADERS = {
    "List-Unsubscribe": "<http://testserver/u/abc>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
# Every byte value, CR and LF alone, a line far over 998 octets: base64 carries them all.
AWKWARD = bytes(range(256)) + b"\r" + b"\n" + b"\n\r" + b"x" * 5000


def _count(database: Database) -> int:
    with database.read() as session:
        return session.execute(select(func.count()).select_from(OutboxMail)).scalar_one()


@pytest.mark.parametrize(
    ("attachments", "error"),
    [
        ((Attachment("", "application/json", b"{}"),), "attachment name ''"),
        ((Attachment("../x.json", "application/json", b"{}"),), "attachment name '../x.json'"),
        ((Attachment("a b.json", "application/json", b"{}"),), "attachment name 'a b.json'"),
        ((Attachment("bélé.json", "application/json", b"{}"),), "ASCII letters"),
        ((Attachment('x".json', "application/json", b"{}"),), "attachment name"),
        ((Attachment("x" * 101, "application/json", b"{}"),), "1 to 100"),
        ((Attachment("a.json", "application", b"{}"),), "content type 'application'"),
        ((Attachment("a.json", "Application/JSON", b"{}"),), "lower-case type/subtype"),
        ((Attachment("a.json", "text/plain; charset=x", b"{}"),), "content type"),
        ((Attachment("a.json", "text/plain\r\nBcc: x@example.com", b""),), "content type"),
        (
            (Attachment("a.json", "application/json", b"{}"),) * 2,
            "attachment name 'a.json' is given twice",
        ),
        (
            (
                Attachment("a.bin", "application/octet-stream", b"0" * MAX_ATTACHMENT_BYTES),
                Attachment("b.bin", "application/octet-stream", b"1"),
            ),
            "attachments of 1,000,001 bytes; a mail carries at most 1,000,000",
        ),
    ],
    ids=[
        "empty-name",
        "path",
        "space",
        "non-ascii",
        "quote",
        "long-name",
        "no-subtype",
        "upper-case-type",
        "parameters",
        "header-injection",
        "twice",
        "too-big",
    ],
)
def test_attachments_that_cannot_be_sent_are_refused_and_nothing_is_written(
    database: Database, attachments: tuple[Attachment, ...], error: str
) -> None:
    before = _count(database)
    with database.write() as session:
        with pytest.raises(AttachmentError, match=error.replace("(", r"\(")) as raised:
            queue_mail(session, Mail(to=EMAIL, subject="x", text="y", attachments=attachments))
        assert queued_mail_ids(session) == ()
    assert error in str(raised.value)
    assert _count(database) == before


def test_files_after_text_and_html_arrive_byte_for_byte(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    files = (
        Attachment("consent-receipt.json", "application/json", '{"ü": "ß"}\n'.encode()),
        Attachment("raw.bin", "application/octet-stream", AWKWARD),
    )
    with database.write() as session:
        mail_id = queue_mail(
            session,
            Mail(to=EMAIL, subject="Files", text="See the files.", html="<p>See</p>",
                 headers=HEADERS, attachments=files),
        )  # fmt: skip
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_queued(database, transport, [mail_id], base_url=settings.base_url) == 1
    (raw,) = smtp_server.raw
    check_wire(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/mixed"
    body, *parts = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body.iter_parts()] == ["text/plain", "text/html"]  # type: ignore[attr-defined]
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        ("consent-receipt.json", "application/json"),
        ("raw.bin", "application/octet-stream"),
    ]
    assert [p.get_payload(decode=True) for p in parts] == [f.data for f in files]
    assert all(p.get_content_disposition() == "attachment" for p in parts)
    # MIME-Version is the message's header, not a part's (RFC 2045 section 4).
    assert message["MIME-Version"] == "1.0"
    assert all(p["MIME-Version"] is None for p in parts)


def test_a_boundary_is_not_kept_in_the_header_cache(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """Each multipart mail has its own boundary: parsing its Content-Type is not cached
    (the cache is for headers that repeat), so mails with files do not crowd it."""
    mail_module._stored_header.cache_clear()
    files = (Attachment("a.txt", "text/plain", b"a"),)
    with database.write() as session:
        ids = [
            queue_mail(session, Mail(to=EMAIL, subject="F", text="t", attachments=files))
            for _ in range(3)
        ]
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    deliver_queued(database, transport, ids, base_url=settings.base_url)
    assert len(smtp_server.raw) == 3
    cached = mail_module._stored_header.cache_info().currsize
    with database.write() as session:
        more = [
            queue_mail(session, Mail(to=EMAIL, subject="F", text="t", attachments=files))
            for _ in range(3)
        ]
    deliver_queued(database, transport, more, base_url=settings.base_url)
    assert len(smtp_server.raw) == 6
    assert mail_module._stored_header.cache_info().currsize == cached


def test_a_mail_queued_claimed_sends_its_files_after_the_commit(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """The hot path's way (queued claimed, sent by the request after its commit) carries
    the files as the outbox's retry does."""
    files = (Attachment("a.json", "application/json", b'{"a": 1}\n'),)
    with database.write_connection() as connection:
        claims: list[QueuedMail] = []
        queue_mail(
            connection,
            Mail(to=EMAIL, subject="Claimed", text="t", headers=HEADERS, attachments=files),
            claims=claims,
        )
        mails = claimed_mails(connection, claims, settings.base_url)
    live = dataclasses.replace(settings, smtp_url=smtp_server.url)
    assert send_claimed(database, live, mails) == 1
    (raw,) = smtp_server.raw
    check_wire(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    (attachment,) = message.iter_attachments()
    assert attachment.get_payload(decode=True) == files[0].data
