"""Double opt-in: the mail really arrives over SMTP, its link's GET changes nothing, the
POST confirms with its own evidence, and only then is the purpose permitted."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator

import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent, ConsentEvidence
from consent_ledger.proofs import transparency
from consent_ledger.proofs.checkpoints import CheckpointSigner, parse_verifier_key
from consent_ledger.proofs.receipts import verify_receipt
from tests.capture.conftest import one
from tests.fixtures.mail import SmtpServer
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

LINK_RE = re.compile(r"http://testserver(/confirm/\S+)")


@pytest.fixture
def mail_client(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> Iterator[TestClient]:
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as client:
        yield client


def _permitted(api: TestClient, email: str, purpose: str) -> dict[str, object]:
    response = api.get("/api/consent", params={"email": email, "purpose": purpose})
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def test_confirmation_link_round_trip(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    database: Database,
    counts: Callable[[], dict[str, int]],
) -> None:
    response = mail_client.post(
        "/f/newsletter",
        data={"email": "Nora@Example.com", "consent": "newsletter", "_rt": render("newsletter")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    (mail,) = smtp_server.wait_for(1)
    assert mail["To"] == "nora@example.com"
    assert mail["Subject"] == "Please confirm: Newsletter"
    match = LINK_RE.search(SmtpServer.text_of(mail))
    assert match is not None
    link = match.group(1)
    assert _permitted(api, "nora@example.com", "newsletter")["permitted"] is False
    assert _permitted(api, "nora@example.com", "newsletter")["status"] == "pending"

    # A mail scanner (or the person) opens the link: nothing changes.
    before = counts()
    page = mail_client.get(link)
    assert page.status_code == 200
    assert one(page.text, "h1")["text"] == "Please confirm"
    form = one(page.text, "form")
    assert form["method"] == "post"
    assert form["action"] == link
    assert counts() == before
    assert _permitted(api, "nora@example.com", "newsletter")["permitted"] is False

    confirmed = mail_client.post(link, headers={"user-agent": "mail-reader/2"})
    assert confirmed.status_code == 200
    assert one(confirmed.text, "h1")["text"] == "Thank you, confirmed"
    answer = _permitted(api, "nora@example.com", "newsletter")
    assert answer["permitted"] is True
    assert answer["status"] == "confirmed"
    with database.read() as session:
        entry = session.execute(
            select(ConsentEvent).where(ConsentEvent.action == "confirmed")
        ).scalar_one()
        evidence = orjson.loads(session.get_one(ConsentEvidence, entry.seq).body)
    assert entry.method == "double-opt-in"
    assert evidence["user_agent"] == "mail-reader/2"
    assert evidence["method"] == "confirmation-link"

    # A second click records nothing more.
    again = mail_client.post(link)
    assert one(again.text, "h1")["text"] == "Nothing to confirm"
    with database.read() as session:
        confirmations = session.execute(
            select(ConsentEvent).where(ConsentEvent.action == "confirmed")
        ).all()
    assert len(confirmations) == 1


def test_confirmation_mail_carries_one_click_unsubscribe(
    mail_client: TestClient,
    api: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
) -> None:
    """RFC 8058: the mail's List-Unsubscribe URL withdraws the purposes it is about, in one
    POST with no cookies, and the footer links to the preference center."""
    response = mail_client.post(
        "/f/newsletter",
        data={"email": "olga@example.com", "consent": "newsletter", "_rt": render("newsletter")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    (mail,) = smtp_server.wait_for(1)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(r"<http://testserver(/u/\S+)>", str(mail["List-Unsubscribe"]))
    assert unsubscribe is not None
    assert re.search(r"http://testserver/p/\S+", SmtpServer.text_of(mail))

    mail_client.cookies.clear()
    done = mail_client.post(
        unsubscribe.group(1),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    answer = _permitted(api, "olga@example.com", "newsletter")
    assert answer["permitted"] is False
    assert answer["status"] == "withdrawn"


def test_confirmation_mails_a_receipt_that_verifies_offline(
    mail_client: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
) -> None:
    mail_client.post(
        "/f/newsletter",
        data={"email": "pia@example.com", "consent": "newsletter", "_rt": render("newsletter")},
        follow_redirects=False,
    )
    (confirmation,) = smtp_server.wait_for(1)
    match = LINK_RE.search(SmtpServer.text_of(confirmation))
    assert match is not None
    assert mail_client.post(match.group(1)).status_code == 200

    receipt_mail = smtp_server.wait_for(2)[1]
    assert receipt_mail["Subject"] == "Your consent receipt"
    assert receipt_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (attachment,) = receipt_mail.iter_attachments()
    assert attachment.get_filename() == "consent-receipt.json"
    key = mail_client.get("/ledger/key").text.splitlines()[0]
    check = verify_receipt(
        orjson.loads(attachment.get_payload(decode=True)), [parse_verifier_key(key)]
    )
    assert check.purposes == ("newsletter",)
    # A second click confirms nothing and mails nothing.
    mail_client.post(match.group(1))
    assert len(smtp_server.messages) == 2


def test_no_mail_without_a_double_opt_in_purpose(
    mail_client: TestClient, render: Callable[..., str], smtp_server: SmtpServer
) -> None:
    response = mail_client.post(
        "/f/contact",
        data={"email": "olaf@example.com", "message": "x", "consent": "profiling",
              "_rt": render("contact")},
    )  # fmt: skip
    assert response.status_code == 200  # followed to the thank-you page
    assert "Please check your inbox" not in response.text
    assert smtp_server.messages == []


def test_per_form_override_turns_double_opt_in_off(
    mail_client: TestClient,
    render: Callable[..., str],
    load_toml: Callable[..., list[str]],
    api: TestClient,
    smtp_server: SmtpServer,
) -> None:
    load_toml(
        """
[forms.event]
title = "Event sign-up"
consent = ["newsletter"]
double_opt_in = { newsletter = false }
[[forms.event.fields]]
name = "email"
type = "email"
"""
    )
    response = mail_client.post(
        "/f/event",
        json={"fields": {"email": "pia@example.com"}, "consent": ["newsletter"],
              "render_token": render("event")},
    )  # fmt: skip
    assert response.status_code == 201
    assert response.json()["consent"] == ["newsletter"]
    assert _permitted(api, "pia@example.com", "newsletter")["permitted"] is True
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("token", "status"), [("garbage", 400), ("x" * 3000, 400)], ids=["forged", "too-long"]
)
def test_bad_confirmation_links(
    app_client: TestClient, counts: Callable[[], dict[str, int]], token: str, status: int
) -> None:
    before = counts()
    assert app_client.get(f"/confirm/{token}").status_code == status
    assert app_client.post(f"/confirm/{token}").status_code == status
    assert counts() == before


def test_a_render_token_does_not_confirm(
    app_client: TestClient, render: Callable[..., str]
) -> None:
    response = app_client.post(f"/confirm/{render('newsletter')}")
    assert response.status_code == 400
    assert "meant for something else" in response.text


def test_a_quiz_grant_is_confirmed_as_from_the_quiz(
    mail_client: TestClient,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    database: Database,
) -> None:
    response = mail_client.post(
        "/f/analytics-fit",
        json={"fields": {"goal": "browsing", "email": "uma@example.com"},
              "consent": ["newsletter"], "render_token": render("analytics-fit")},
    )  # fmt: skip
    assert response.status_code == 201
    (mail,) = smtp_server.wait_for(1)
    match = LINK_RE.search(SmtpServer.text_of(mail))
    assert match is not None
    assert mail_client.post(match.group(1)).status_code == 200
    with database.read() as session:
        sources = session.execute(
            select(ConsentEvent.action, ConsentEvent.source).order_by(ConsentEvent.seq)
        ).all()
    assert [tuple(row) for row in sources] == [("granted", "quiz"), ("confirmed", "quiz")]


def test_a_host_whose_checkpoint_key_is_refused_still_confirms(
    settings: Settings,
    database: Database,
    render: Callable[..., str],
    smtp_server: SmtpServer,
    api: TestClient,
) -> None:
    """The confirmation is stored and answered; only the receipt (which this host may
    not sign) is left out, and the log says why."""
    own = CheckpointSigner.generate(settings.ledger_origin)
    refused = dataclasses.replace(
        settings, smtp_url=smtp_server.url, checkpoint_key=own.to_signer_key()
    )
    with TestClient(create_app(refused, database)) as client:
        client.post(
            "/f/newsletter",
            data={"email": "ola@example.com", "consent": "newsletter", "_rt": render("newsletter")},
            follow_redirects=False,
        )
        (confirmation,) = smtp_server.wait_for(1)
        match = LINK_RE.search(SmtpServer.text_of(confirmation))
        assert match is not None
        # Another host's key signs the first checkpoint: this host's key is now foreign.
        winner = CheckpointSigner.generate(settings.ledger_origin)
        assert transparency.make_checkpoint(database, settings, winner) is not None
        answer = client.post(match.group(1), headers={"Accept": "application/json"})
    assert answer.status_code == 200
    assert answer.json() == {"confirmed": ["newsletter"]}
    assert _permitted(api, "ola@example.com", "newsletter")["permitted"] is True
    assert len(smtp_server.messages) == 1  # no receipt
