"""The consent receipt mail as its reader gets it: the bytes a real SMTP server received,
parsed by the standard library's parser as a mail client does, the attached
``consent-receipt.json`` saved to a file and checked by ``zeroparty receipt verify`` in
a process of its own with nothing but the published key (no database, no secrets).
A changed byte in the saved file fails; the file survives a failed first delivery."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from capture.tokens import CaptureTokens
from consent_ledger.actions import ConsentAction
from consent_ledger.proofs.receipt_text import SENTENCES, ReceiptLine, receipt_summary
from tests.capture.conftest import token_in
from tests.factories import record
from tests.fixtures.mail import SmtpServer
from tests.zeroparty.test_mail_wire import check_wire
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.mail import OutboxMail, deliver_pending, transport_for
from zeroparty.settings import Settings

EMAIL = "pia@example.com"
CONFIRM = re.compile(rb"http://testserver(/confirm/[A-Za-z0-9._~-]+)")
FILENAME = "consent-receipt.json"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # this checkout's packages, not another


@pytest.fixture
def mail_client(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> Iterator[TestClient]:
    """The app sending through the real SMTP server; no outbox poll runs."""
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def render(app_client: TestClient, settings: Settings) -> Callable[[str], str]:
    """``render(slug)``: the hosted form's render token, aged past the minimum fill time."""
    tokens = CaptureTokens(settings.secret_keys)

    def get(slug: str) -> str:
        token = tokens.read_render(token_in(app_client.get(f"/f/{slug}").text))
        return tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))

    return get


def _confirm(client: TestClient, render: Callable[..., str], smtp_server: SmtpServer) -> None:
    """Sign up for the newsletter and click the mailed link (POST, as the page does)."""
    answer = client.post(
        "/f/newsletter",
        data={"email": EMAIL, "consent": "newsletter", "_rt": render("newsletter")},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    smtp_server.wait_for(1)
    link = CONFIRM.search(smtp_server.raw[0])
    assert link is not None
    assert client.post(link.group(1).decode()).status_code == 200


def _verify(path: Path, key: str) -> subprocess.CompletedProcess[str]:
    """``zeroparty receipt verify FILE --key KEY`` as anyone runs it: its own process,
    in an empty directory, with no database or secret configured."""
    return subprocess.run(
        [sys.executable, "-m", "zeroparty.cli", "receipt", "verify", path.name, "--key", key],
        cwd=path.parent,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SOURCE_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _received(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _saved_attachment(message: EmailMessage, directory: Path) -> Path:
    """What a mail client does with the attachment: the decoded bytes under its name."""
    (attachment,) = list(message.iter_attachments())
    name = attachment.get_filename()
    assert name == FILENAME
    data = attachment.get_payload(decode=True)
    assert isinstance(data, bytes)
    path = directory / name
    path.write_bytes(data)
    return path


def test_the_receipt_arrives_as_a_summary_and_a_signed_attachment(
    mail_client: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    _confirm(mail_client, render, smtp_server)
    smtp_server.wait_for(2)
    raw = smtp_server.raw[1]
    fields = check_wire(raw)  # CRLF, 7-bit, lines <= 998, one List-Unsubscribe (+ Post)
    assert fields[b"subject"] == [b" Your consent receipt"]
    assert fields[b"content-type"][0].lstrip().startswith(b"multipart/mixed;")
    message = _received(raw)

    # multipart/mixed: the text first (shown inline; with the brand's HTML alternative
    # after it), then the file.
    assert message.get_content_type() == "multipart/mixed"
    body_part, file_part = message.iter_parts()  # type: ignore[misc]
    assert body_part.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in body_part.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_disposition() is None for p in body_part.walk())
    assert file_part.get_content_type() == "application/json"
    assert file_part.get_content_disposition() == "attachment"
    assert file_part["Content-Transfer-Encoding"] == "base64"
    assert len(re.findall(rb"^MIME-Version: 1\.0\r\n", raw, re.M | re.I)) == 1  # the message's
    # The List-* headers stay on the message, not on a part.
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert all(part["List-Unsubscribe"] is None for part in message.walk() if part is not message)

    # The text: what was agreed, when, under which notice version, and how to check.
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    body = str(text.get_content()).replace("\r\n", "\n")
    today = utcnow().strftime("%Y-%m-%d")
    assert re.search(
        rf"^- Newsletter: agreed and confirmed on {today} \d\d:\d\d UTC, "
        r"notice version 1 \(SHA-256 [0-9a-f]{12}\)$",
        body,
        re.M,
    ), body
    assert f'zeroparty receipt verify {FILENAME} --key "KEY"' in body
    assert "http://testserver/ledger/key" in body
    assert re.search(r"Manage your preferences or unsubscribe: http://testserver/p/\S+", body)
    assert "This mail was sent by " in body
    assert "{" not in body  # no JSON in the text
    assert "inclusion_proof" not in body
    assert len(body.encode()) < 2_000

    # Saved by the client and checked offline: valid; one changed byte: invalid.
    saved = _saved_attachment(message, tmp_path)
    receipt = orjson.loads(saved.read_bytes())
    assert receipt["consentReceiptID"] in body
    key = mail_client.get("/ledger/key").text.splitlines()[0]
    valid = _verify(saved, key)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert valid.stdout.startswith("receipt valid: ")
    assert "purposes newsletter" in valid.stdout
    # The mail stays small: the file once, base64 (4/3), a short text and its HTML.
    assert len(raw) < saved.stat().st_size * 4 / 3 * 1.05 + 8_000

    tampered = tmp_path / "tampered" / FILENAME
    tampered.parent.mkdir()
    tampered.write_bytes(saved.read_bytes().replace(b'"confirmed"', b'"withdrawn"', 1))
    assert tampered.read_bytes() != saved.read_bytes()
    invalid = _verify(tampered, key)
    assert invalid.returncode == 1
    assert invalid.stdout.startswith("RECEIPT INVALID: ")


def test_the_attachment_survives_a_failed_first_delivery(
    mail_client: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    settings: Settings,
    database: Database,
    tmp_path: Path,
) -> None:
    """The receipt is in the outbox row with its file: the SMTP server refuses the send
    after the confirmation, and the outbox's retry delivers the same, verifiable file."""
    answer = mail_client.post(
        "/f/newsletter",
        data={"email": EMAIL, "consent": "newsletter", "_rt": render("newsletter")},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    smtp_server.wait_for(1)
    link = CONFIRM.search(smtp_server.raw[0])
    assert link is not None
    smtp_server.refuse()
    assert mail_client.post(link.group(1).decode()).status_code == 200
    with database.read() as session:
        row = session.execute(
            select(OutboxMail).where(OutboxMail.subject == "Your consent receipt")
        ).scalar_one()
        assert row.sent_at is None
        assert row.attempts == 1
        assert row.attachments is not None
        mail_id = row.id
    assert len(smtp_server.raw) == 1

    smtp_server.refuse(False)
    with database.write() as session:  # the backoff has passed
        session.execute(
            update(OutboxMail)
            .where(OutboxMail.id == mail_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_pending(database, transport, base_url=settings.base_url) == 1
    raw = smtp_server.raw[1]
    check_wire(raw)
    assert re.search(rb"^Message-ID: <" + mail_id.encode() + rb"@", raw, re.M)
    saved = _saved_attachment(_received(raw), tmp_path)
    key = mail_client.get("/ledger/key").text.splitlines()[0]
    valid = _verify(saved, key)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    with database.read() as session:
        sent = session.get_one(OutboxMail, mail_id)
        assert sent.sent_at is not None


def test_no_receipt_mail_without_a_profile_writes_nothing(
    database: Database, settings: Settings
) -> None:
    """An unknown subject has no consent records: refused before any mail is queued."""
    from consent_ledger.proofs import receipts, transparency

    signer = transparency.host_signer(database, settings)
    with database.read() as session:
        before = session.execute(select(func.count()).select_from(OutboxMail)).scalar_one()
    with pytest.raises(receipts.NoConsentRecords):
        receipts.mail_receipt(database, settings, signer, "0" * 32)
    with database.read() as session:
        after = session.execute(select(func.count()).select_from(OutboxMail)).scalar_one()
    assert after == before


def test_a_receipt_of_several_purposes_lists_each(
    database: Database, settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """One line per purpose, in ledger order, each with its own action: a withdrawal
    names no notice (it is made under none), a grant its version."""
    from consent_ledger.proofs import receipts, transparency
    from consent_ledger.subjects import find_subject_id

    record(database, EMAIL, "profiling")
    record(database, EMAIL, "newsletter")
    record(database, EMAIL, "newsletter", ConsentAction.WITHDRAWN)
    with database.read() as session:
        subject_id = find_subject_id(session, EMAIL)
    assert subject_id is not None
    signer = transparency.host_signer(database, settings)
    mail_id = receipts.mail_receipt(database, settings, signer, subject_id)
    assert mail_id is not None
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    assert deliver_pending(database, transport, base_url=settings.base_url) == 1
    message = _received(smtp_server.raw[0])
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    body = str(text.get_content()).replace("\r\n", "\n")
    lines = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(lines) == 2, body
    assert re.fullmatch(
        r"- Personalised follow-up: agreed on \S+ \S+ UTC, notice version 1 "
        r"\(SHA-256 [0-9a-f]{12}\)",
        lines[0],
    )
    assert re.fullmatch(r"- Newsletter: withdrew on \S+ \S+ UTC", lines[1])
    saved = _saved_attachment(message, tmp_path)
    check = receipts.verify_receipt(orjson.loads(saved.read_bytes()), [signer.verifier_key])
    assert check.purposes == ("profiling", "newsletter")


def _line(**changes: object) -> ReceiptLine:
    line = ReceiptLine(
        purpose="Newsletter",
        action="confirmed",
        occurred_at=utcnow().replace(year=2026, month=12, day=4, hour=9, minute=5),
        notice_sha256="ab" * 32,
        notice_version=3,
    )
    return dataclasses.replace(line, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            _line(),
            "- Newsletter: agreed and confirmed on 2026-12-04 09:05 UTC, "
            "notice version 3 (SHA-256 abababababab)",
        ),
        (
            _line(action="withdrawn", notice_version=None),
            "- Newsletter: withdrew on 2026-12-04 09:05 UTC, notice SHA-256 abababababab",
        ),
        (
            _line(action="granted", notice_sha256=None, notice_version=None),
            "- Newsletter: agreed on 2026-12-04 09:05 UTC",
        ),
        (
            _line(action="some-future-action"),
            "- Newsletter: some-future-action on 2026-12-04 09:05 UTC, "
            "notice version 3 (SHA-256 abababababab)",
        ),
    ],
    ids=["confirmed", "unknown-version", "no-notice", "unknown-action"],
)
def test_summary_lines(line: ReceiptLine, expected: str) -> None:
    text = receipt_summary([line], receipt_id="r-1", key_url="https://x.example/ledger/key")
    assert expected in text.splitlines()
    assert "Receipt ID: r-1" in text


def test_the_summary_is_built_from_its_sentences_only() -> None:
    """A translation is one mapping with the same keys: every word comes from it."""
    other = {key: f"<{key}>" for key in SENTENCES}
    other["line"] = "<line {purpose} {action} {date} {version} {sha256}>"
    text = receipt_summary(
        [_line()], receipt_id="r-1", key_url="https://x.example/ledger/key", sentences=other
    )
    assert text == (
        "<greeting>\n\n<intro>\n\n"
        "<line Newsletter <confirmed> 2026-12-04 09:05 UTC 3 abababababab>\n\n"
        "<receipt_id>\n\n<attached>\n\n<command>\n"
    )


def test_a_german_lead_gets_the_receipt_in_german(
    mail_client: TestClient, settings: Settings, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """Sent from the German form, confirmed: the summary, its subject and the purpose's
    title in the receipt are German (the site file's ``de`` title), and the file still
    verifies offline."""
    tokens = CaptureTokens(settings.secret_keys)
    page = mail_client.get("/f/contact?lang=de").text
    token = tokens.read_render(token_in(page))
    aged = tokens.issue_render(dataclasses.replace(token, rendered_at=token.rendered_at - 30))
    answer = mail_client.post(
        "/f/contact?lang=de",
        data={"_rt": aged, "email": EMAIL, "message": "Hallo", "consent": "product_updates"},
    )
    assert answer.status_code == 200
    smtp_server.wait_for(1)
    link = CONFIRM.search(smtp_server.raw[0])
    assert link is not None
    assert mail_client.post(link.group(1).decode()).status_code == 200
    smtp_server.wait_for(2)
    raw = smtp_server.raw[1]
    fields = check_wire(raw)
    assert fields[b"subject"] == [b" Ihre Einwilligungsquittung"]
    assert fields[b"content-language"] == [b" de"]
    message = _received(raw)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    body = str(text.get_content()).replace("\r\n", "\n")
    today = utcnow().strftime("%Y-%m-%d")
    assert body.startswith("Hallo,\n\ndanke für Ihre Bestätigung.")
    assert re.search(
        rf"^- Produktneuigkeiten: eingewilligt und bestätigt am {today} \d\d:\d\d UTC, "
        r"Hinweis in Fassung 1 \(SHA-256 [0-9a-f]{12}\)$",
        body,
        re.M,
    ), body
    assert f'zeroparty receipt verify {FILENAME} --key "KEY"' in body
    assert "Einstellungen verwalten oder abmelden: http://testserver/p/" in body
    assert "agreed" not in body
    saved = _saved_attachment(message, tmp_path)
    receipt = orjson.loads(saved.read_bytes())
    assert receipt["language"] == "de"
    assert [p["purpose"] for p in receipt["services"][0]["purposes"]] == ["Produktneuigkeiten"]
    key = mail_client.get("/ledger/key").text.splitlines()[0]
    valid = _verify(saved, key)
    assert valid.returncode == 0, valid.stdout + valid.stderr
