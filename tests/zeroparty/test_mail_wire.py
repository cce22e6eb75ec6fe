"""Every kind of mail, read as a mailbox provider reads it: the bytes a real SMTP server
received, checked by regular expressions, never parsed back with the email package that
wrote them. Then the one-click unsubscribe URL taken from those bytes is POSTed the way
a provider does (RFC 8058), urlencoded and multipart, and the withdrawal is checked."""

from __future__ import annotations

import base64
import dataclasses
import quopri
import re
import ssl
from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from consent_ledger.actions import ConsentMethod
from consent_ledger.subjects import find_subject_id
from preference_center.links import mail_headers
from tests.capture.conftest import token_in
from tests.factories import record
from tests.fixtures.mail import SmtpServer
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.mail import (
    Mail,
    OutboxMail,
    deliver_pending,
    deliver_queued,
    queue_mail,
    tls_context,
    transport_for,
)
from zeroparty.settings import Settings
from zeroparty.site_info import site_identity, store_site_identity

EMAIL = "nora@example.com"
SAME = {"Sec-Fetch-Site": "same-origin"}
COMPANY = b"Northwind Analytics GmbH, Example Street 1, 10115 Berlin"
DAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
MONTH = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# RFC 2369 as RFC 8058 writes it; a header may fold at whitespace, nothing else.
LIST_UNSUBSCRIBE = re.compile(
    rb"^List-Unsubscribe:[ \t]*(?:\r\n[ \t]+)?<(http://testserver/u/[A-Za-z0-9._~-]+)>\r\n"
    rb"(?![ \t])",
    re.M,
)
ONE_CLICK = re.compile(rb"^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n(?![ \t])", re.M)


@pytest.fixture
def mail_client(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> Iterator[TestClient]:
    """The app sending through the real SMTP server; no outbox poll runs."""
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as client:
        yield client


def header_block(raw: bytes) -> bytes:
    head, separator, _body = raw.partition(b"\r\n\r\n")
    assert separator, "no empty line between header and body"
    return head + b"\r\n"


def header_fields(raw: bytes) -> dict[bytes, list[bytes]]:
    """Field name (lower case) → raw values, folding kept (RFC 5322 2.2.3)."""
    fields: dict[bytes, list[bytes]] = {}
    last = b""
    for line in header_block(raw).split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            fields[last][-1] += b"\r\n" + line
            continue
        name, colon, value = line.partition(b":")
        assert colon, line
        assert re.fullmatch(rb"[!-9;-~]+", name), line
        last = name.lower()
        fields.setdefault(last, []).append(value)
    return fields


def check_wire(raw: bytes) -> dict[bytes, list[bytes]]:
    """What every mail must satisfy on the wire; returns its header fields."""
    assert raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")[:-1]
    assert all(b"\r" not in line and b"\n" not in line for line in lines), "bare CR or LF"
    assert max(len(line) for line in lines) <= 998
    assert all(byte < 128 for byte in raw), "8-bit data in a 7-bit mail"
    fields = header_fields(raw)
    for name in (b"from", b"to", b"date", b"message-id", b"subject"):
        assert len(fields.get(name, [])) == 1, name
    head = header_block(raw)
    assert re.search(
        rb"^Date: " + DAY + rb", \d{1,2} " + MONTH + rb" \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n",
        head,
        re.M,
    )
    assert re.search(rb"^Message-ID: <[0-9a-f]{32}@northwind\.example>\r\n", head, re.M)
    assert re.search(rb"^From: Northwind Analytics <no-reply@northwind\.example>\r\n", head, re.M)
    assert re.search(rb"^Reply-To: privacy@northwind\.example\r\n", head, re.M)
    assert re.search(rb"^MIME-Version: 1\.0\r\n", head, re.M)
    assert len(LIST_UNSUBSCRIBE.findall(head)) == 1, head
    assert len(ONE_CLICK.findall(head)) == 1, head
    for name in (b"list-unsubscribe", b"list-unsubscribe-post"):
        assert all(b"=?" not in value for value in fields[name])
    return fields


def body_text(raw: bytes) -> bytes:
    """The text part's bytes, undoing its transfer encoding by hand. In a multipart
    mail (text and HTML alternatives, then files: multipart/mixed around
    multipart/alternative), the part whose own header says text/plain."""
    boundaries = re.findall(
        rb'^Content-Type: multipart/[\w-]+;\s*boundary="?([^"\r]+)"?', raw, re.M
    )
    part = raw
    if boundaries:
        parts = [p for b in boundaries for p in raw.split(b"\r\n--" + b)]
        part = next(
            p
            for p in parts
            if re.search(rb"^Content-Type: text/plain", p.partition(b"\r\n\r\n")[0], re.M)
        )
    head, _, body = part.partition(b"\r\n\r\n")
    encoding = re.search(rb"^Content-Transfer-Encoding: ([\w-]+)\r?$", head, re.M)
    assert encoding is not None, head
    if encoding.group(1).lower() == b"quoted-printable":
        return quopri.decodestring(body)
    if encoding.group(1).lower() == b"base64":
        return base64.b64decode(body)
    return body


def unsubscribe_url(raw: bytes) -> str:
    match = LIST_UNSUBSCRIBE.search(header_block(raw))
    assert match is not None
    return match.group(1).decode("ascii")


def _render_token(client: TestClient, settings: Settings, slug: str) -> str:
    page = client.get(f"/f/{slug}")
    assert page.status_code == 200
    tokens = CaptureTokens(settings.secret_keys)
    token = tokens.read_render(token_in(page.text))
    return tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))


def _every_kind_of_mail(
    client: TestClient, settings: Settings, smtp_server: SmtpServer, locale: str = "en"
) -> dict[str, bytes]:
    """Drive every flow that mails a lead; each mail arrives with no outbox poll run."""
    language = {"Accept-Language": locale}
    answer = client.post(
        "/f/newsletter",
        data={
            "email": EMAIL,
            "consent": "newsletter",
            "_rt": _render_token(client, settings, "newsletter"),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    (confirmation,) = smtp_server.raw
    link = re.search(rb"http://testserver(/confirm/\S+)", body_text(confirmation))
    assert link is not None
    assert client.post(link.group(1).decode()).status_code == 200
    assert len(smtp_server.raw) == 2  # the receipt
    # The same address again, now a lead's: held until its owner confirms, by mail.
    again = client.post(
        "/f/newsletter",
        data={
            "email": EMAIL,
            "consent": "newsletter",
            "_rt": _render_token(client, settings, "newsletter"),
        },
        follow_redirects=False,
    )
    assert again.status_code == 303, again.text
    assert len(smtp_server.raw) == 3  # the held submission's mail
    asked = client.post("/p/request-link", data={"email": EMAIL}, headers={**SAME, **language})
    assert asked.status_code == 200
    preference_link = smtp_server.raw[3]
    manage = re.search(rb"http://testserver(/p/[A-Za-z0-9._~-]+)", body_text(preference_link))
    assert manage is not None
    opened = client.get(manage.group(1).decode(), headers={"Sec-Fetch-Site": "none", **language})
    csrf = re.search(r'name="csrf" value="([^"]+)"', opened.text)
    assert csrf is not None
    erase = client.post(
        "/p/erase", data={"csrf": csrf.group(1)}, headers={**SAME, **language},
        follow_redirects=False,
    )  # fmt: skip
    assert erase.status_code == 303
    kinds = dict(
        zip(
            (
                "confirmation",
                "receipt",
                "held submission",
                "preference link",
                "erasure confirmation",
            ),
            smtp_server.raw,
            strict=True,
        )
    )
    return kinds


def test_every_kind_of_mail_on_the_wire(
    mail_client: TestClient, settings: Settings, smtp_server: SmtpServer
) -> None:
    mails = _every_kind_of_mail(mail_client, settings, smtp_server)
    subjects = {
        "confirmation": b"Please confirm: Newsletter",
        "receipt": b"Your consent receipt",
        "held submission": b"Please confirm: The Northwind newsletter",
        "preference link": b"Your preference link",
        "erasure confirmation": b"Confirm the erasure of your data",
    }
    for kind, raw in mails.items():
        fields = check_wire(raw)
        assert fields[b"to"] == [b" " + EMAIL.encode()], kind
        assert fields[b"subject"] == [b" " + subjects[kind]], kind
        assert b"This mail was sent by " + COMPANY + b"." in body_text(raw), kind
    envelopes = smtp_server.envelopes
    assert all(sender == "no-reply@northwind.example" for sender, _ in envelopes)
    assert all(recipients == [EMAIL] for _, recipients in envelopes)
    # Five mails, five distinct ids.
    ids = {re.search(rb"^Message-ID: (.*)\r\n", raw, re.M).group(1) for raw in mails.values()}  # type: ignore[union-attr]
    assert len(ids) == 5


def decode_phrase(value: bytes) -> str:
    """A header phrase with RFC 2047 encoded-words, decoded by hand: whitespace between
    two encoded-words is dropped (RFC 2047 section 6.2), ASCII words are kept."""
    words = re.split(rb"(?:\r\n)?[ \t]+", value.strip())
    decoded: list[tuple[bool, str]] = []
    for word in words:
        encoded = word.startswith(b"=?")
        text = _q_decode(word) if encoded else word.decode("ascii")
        if decoded and not (encoded and decoded[-1][0]):
            text = " " + text
        decoded.append((encoded, text))
    return "".join(text for _, text in decoded)


def _q_decode(word: bytes) -> str:
    """An RFC 2047 encoded-word, decoded by hand (Q or B encoding, UTF-8)."""
    match = re.fullmatch(rb"=\?utf-8\?([qQbB])\?([!->@-~]+)\?=", word)
    assert match is not None, word
    if match.group(1) in b"qQ":
        return quopri.decodestring(match.group(2).replace(b"_", b" ")).decode("utf-8")
    return base64.b64decode(match.group(2)).decode("utf-8")


def test_non_ascii_names_and_subjects_are_encoded_words(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """RFC 2047 where it belongs (a display name, a subject), and only there."""
    with database.write() as session:
        identity = site_identity(session)
        store_site_identity(
            session, dataclasses.replace(identity, mail_from_name="Nordwind Ökonomie")
        )
        links = {
            "List-Unsubscribe": "<http://testserver/u/" + "t" * 300 + ">",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        subject = "Bestätigen Sie die Löschung Ihrer Daten, " + "sehr lange Betreffzeile " * 6
        mail = Mail(to=EMAIL, subject=subject, text="Löschung\n", headers=links)
        mail_id = queue_mail(session, mail)
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_queued(database, transport, [mail_id], base_url=settings.base_url) == 1
    (raw,) = smtp_server.raw
    assert all(byte < 128 for byte in raw)
    head = header_block(raw)
    sender = re.search(rb"^From: (.+?) <no-reply@northwind\.example>\r\n", head, re.M)
    assert sender is not None
    assert b"=?utf-8?" in sender.group(1)
    assert decode_phrase(sender.group(1)) == "Nordwind Ökonomie"
    found = re.search(rb"^Subject: (.*?)\r\n(?![ \t])", head, re.M | re.S)
    assert found is not None
    assert b"=?utf-8?" in found.group(1)
    assert decode_phrase(found.group(1)) == subject.strip()
    assert "Löschung".encode() in body_text(raw)
    # A 300-character token still leaves raw and unfolded, never encoded.
    assert LIST_UNSUBSCRIBE.search(head)
    assert ONE_CLICK.search(head)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_default_sender_is_the_site_at_the_base_url_host(
    mail_client: TestClient, settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    with database.write() as session:
        identity = site_identity(session)
        store_site_identity(
            session,
            dataclasses.replace(
                identity, mail_from_name="", mail_from_address="", mail_reply_to="", mail_company=""
            ),
        )
    asked = _request_link_for_lead(mail_client, database)
    assert asked == 200
    (raw,) = smtp_server.raw
    head = header_block(raw)
    assert re.search(
        rb'^From: "Northwind Analytics \(demo\)" <no-reply@testserver>\r\n', head, re.M
    )
    assert re.search(rb"^Message-ID: <[0-9a-f]{32}@testserver>\r\n", head, re.M)
    assert not re.search(rb"^Reply-To:", head, re.M | re.I)
    assert b"zeroparty.invalid" not in raw
    # No company configured: the controller named in [site] is.
    assert b"This mail was sent by Northwind Analytics GmbH, Example Street 1" in body_text(raw)


def _request_link_for_lead(client: TestClient, database: Database) -> int:
    record(database, EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN)
    return client.post("/p/request-link", data={"email": EMAIL}, headers=SAME).status_code


def _permitted(client: TestClient, api_key: str) -> object:
    response = client.get(
        "/api/consent",
        params={"email": EMAIL, "purpose": "newsletter"},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert response.status_code == 200
    return response.json()["permitted"]


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_to_the_raw_header_url(
    mail_client: TestClient,
    database: Database,
    smtp_server: SmtpServer,
    api_key: str,
    encoding: str,
) -> None:
    """What Gmail and Yahoo do with the header: POST ``List-Unsubscribe=One-Click`` to
    the URL, no cookies, no page."""
    assert _request_link_for_lead(mail_client, database) == 200
    assert _permitted(mail_client, api_key) is True
    (raw,) = smtp_server.raw
    url = unsubscribe_url(raw)
    path = url.removeprefix("http://testserver")
    mail_client.cookies.clear()
    if encoding == "urlencoded":
        response = mail_client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        boundary = "zp-provider-boundary"
        body = (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
            f"One-Click\r\n--{boundary}--\r\n"
        ).encode()
        response = mail_client.post(
            path,
            content=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert response.status_code == 200, response.text
    assert _permitted(mail_client, api_key) is False


def test_background_send_sends_only_its_own_mail(
    mail_client: TestClient, database: Database, smtp_server: SmtpServer
) -> None:
    with database.write() as session:
        other = queue_mail(session, Mail(to="other@example.com", subject="Queued", text="Hi"))
    assert _request_link_for_lead(mail_client, database) == 200
    # The link arrived right after the answer, with no outbox poll run ...
    smtp_server.wait_for(1)
    (raw,) = smtp_server.raw
    assert re.search(rb"^To: nora@example\.com\r\n", raw, re.M)
    # ... and another request's queued mail was left to the poller.
    with database.read() as session:
        row = session.get(OutboxMail, other)
        assert row is not None
        assert row.sent_at is None
        assert row.attempts == 0


def test_a_mailto_alternative_folds_at_whitespace_only(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """Your own mails may add a ``mailto:`` (RFC 2369): the header then folds between
    the two targets, at whitespace, and is still not encoded."""
    record(database, EMAIL, "newsletter", method=ConsentMethod.DOUBLE_OPT_IN)
    with database.write() as session:
        subject_id = find_subject_id(session, EMAIL)
        assert subject_id is not None
        links = mail_headers(
            settings, subject_id, "newsletter", session, mailto="unsubscribe@northwind.example"
        )
        mail_id = queue_mail(
            session, Mail(to=EMAIL, subject="News", text="Hi", headers=links.headers)
        )
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_queued(database, transport, [mail_id], base_url=settings.base_url) == 1
    (raw,) = smtp_server.raw
    head = header_block(raw)
    found = re.search(
        rb"^List-Unsubscribe: <(http://testserver/u/[A-Za-z0-9._~-]+)>,(?:\r\n)?[ \t]+"
        rb"<mailto:unsubscribe@northwind\.example\?subject=unsubscribe>\r\n(?![ \t])",
        head,
        re.M,
    )
    assert found is not None, head
    assert found.group(1).decode() == links.unsubscribe_url
    assert b"=?" not in found.group(0)


def test_a_mail_that_cannot_be_written_does_not_hold_up_the_others(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """A header that cannot go on the wire raw (not ASCII) fails that mail alone, which
    is retried and given up like an SMTP failure; the others leave."""
    with database.write() as session:
        broken = queue_mail(
            session,
            Mail(to=EMAIL, subject="Broken", text="x", headers={"List-Unsubscribe": "<http://ü>"}),
        )
        fine = queue_mail(session, Mail(to=EMAIL, subject="Fine", text="y"))
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_pending(database, transport, base_url=settings.base_url) == 1
    (raw,) = smtp_server.raw
    assert re.search(rb"^Subject: Fine\r\n", raw, re.M)
    with database.read() as session:
        failed, sent = session.get(OutboxMail, broken), session.get(OutboxMail, fine)
        assert failed is not None
        assert sent is not None
        assert failed.sent_at is None
        assert failed.last_error is not None
        assert "ASCII" in failed.last_error
        assert sent.sent_at is not None


def test_a_submission_sends_its_confirmation_and_no_other_mail(
    mail_client: TestClient, settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """The background send after a submission used to deliver up to 50 queued mails of
    anyone's; it sends exactly the mail this submission queued."""
    with database.write() as session:
        other = queue_mail(session, Mail(to="other@example.com", subject="Queued", text="Hi"))
    answer = mail_client.post(
        "/f/newsletter",
        data={
            "email": EMAIL,
            "consent": "newsletter",
            "_rt": _render_token(mail_client, settings, "newsletter"),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    (raw,) = smtp_server.raw
    assert re.search(rb"^Subject: Please confirm: Newsletter\r\n", raw, re.M)
    with database.read() as session:
        row = session.get(OutboxMail, other)
        assert row is not None
        assert row.sent_at is None


def test_a_mail_claimed_by_a_poller_is_not_sent_again(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """``deliver_queued`` claims like the poller: a row another deliverer holds (its
    claim not lapsed) or already sent is left alone, so no mail leaves twice."""
    with database.write() as session:
        claimed = queue_mail(session, Mail(to=EMAIL, subject="Claimed", text="x"))
        sent = queue_mail(session, Mail(to=EMAIL, subject="Sent", text="y"))
    with database.write() as session:
        row = session.get(OutboxMail, claimed)
        assert row is not None
        row.claimed_until = utcnow() + timedelta(minutes=1)
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_queued(database, transport, [sent], base_url=settings.base_url) == 1
    assert deliver_queued(database, transport, [claimed, sent], base_url=settings.base_url) == 0
    (raw,) = smtp_server.raw
    assert re.search(rb"^Subject: Sent\r\n", raw, re.M)


IDN_EMAIL = "nora@xn--bcher-kva.example"  # "Nora@Bücher.Example" as it goes on the wire


def test_an_internationalized_domain_goes_on_the_wire_as_idna(
    mail_client: TestClient, settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """An address is never an RFC 2047 encoded-word (Python writes one for any non-ASCII
    character in it): the recipient's and the sender's domains leave in IDNA form."""
    with database.write() as session:
        identity = site_identity(session)
        store_site_identity(
            session,
            dataclasses.replace(
                identity,
                mail_from_address="no-reply@bücher.example",
                mail_reply_to="datenschutz@bücher.example",
            ),
        )
    answer = mail_client.post(
        "/f/newsletter",
        data={
            "email": "Nora@Bücher.Example",
            "consent": "newsletter",
            "_rt": _render_token(mail_client, settings, "newsletter"),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    (raw,) = smtp_server.raw
    assert all(byte < 128 for byte in raw)
    fields = header_fields(raw)
    assert fields[b"to"] == [b" " + IDN_EMAIL.encode()]
    assert fields[b"from"] == [b" Northwind Analytics <no-reply@xn--bcher-kva.example>"]
    assert fields[b"reply-to"] == [b" datenschutz@xn--bcher-kva.example"]
    (message_id,) = fields[b"message-id"]
    assert re.fullmatch(rb" <[0-9a-f]{32}@xn--bcher-kva\.example>", message_id)
    for name in (b"to", b"from", b"reply-to", b"message-id"):
        assert all(b"=?" not in value for value in fields[name]), name
    assert smtp_server.envelopes == [("no-reply@xn--bcher-kva.example", [IDN_EMAIL])]


def test_a_non_ascii_local_part_is_never_sent_as_an_encoded_word(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    """Input refuses such an address now (consent_ledger.subjects); one queued before
    cannot be written without SMTPUTF8, so it fails alone instead of leaving as
    ``To: =?utf-8?q?j=C3=B6rg?=@example.com``; the other mail leaves."""
    with database.write() as session:
        legacy = queue_mail(session, Mail(to="jörg@example.com", subject="Legacy", text="x"))
        fine = queue_mail(session, Mail(to=EMAIL, subject="Fine", text="y"))
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_pending(database, transport, base_url=settings.base_url) == 1
    (raw,) = smtp_server.raw
    assert re.search(rb"^Subject: Fine\r\n", raw, re.M)
    assert header_fields(raw)[b"to"] == [b" " + EMAIL.encode()]
    assert smtp_server.envelopes == [("no-reply@northwind.example", [EMAIL])]
    with database.read() as session:
        row = session.get(OutboxMail, legacy)
        assert row is not None
        assert row.sent_at is None
        assert row.last_error is not None
        assert "SMTPUTF8" in row.last_error
        sent = session.get(OutboxMail, fine)
        assert sent is not None
        assert sent.sent_at is not None


def test_plain_smtp_makes_no_tls_context_and_tls_shares_one(
    settings: Settings, database: Database, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Making a TLS context reads the whole CA store (milliseconds of CPU): a mail over
    plain SMTP makes none, and TLS connections share the one made per process."""

    def refused() -> ssl.SSLContext:
        raise AssertionError("a TLS context was made for plain SMTP")

    monkeypatch.setattr(ssl, "create_default_context", refused)
    with database.write() as session:
        mail_id = queue_mail(session, Mail(to=EMAIL, subject="Plain", text="Text\nFrom me\n"))
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_queued(database, transport, [mail_id], base_url=settings.base_url) == 1
    (raw,) = smtp_server.raw
    assert b"\r\n>From me\r\n" in raw  # smtplib's own flattening, as send_message wrote it
    monkeypatch.undo()
    assert tls_context() is tls_context()
    assert tls_context().verify_mode == ssl.CERT_REQUIRED
    assert tls_context().check_hostname
