"""Double opt-in again on the preference page (issue 16).

The preference link proves control of the mailbox, not agreement to a text the lead
never confirmed: whoever holds a forwarded link and ticks a double opt-in purpose under
a notice version the lead has not confirmed leaves a pending grant, and the address is
mailed a confirmation link (``/p/confirm/{token}``: GET shows a button, POST confirms).
Under a version the lead has confirmed, a grant is live at once, without a mail.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent
from preference_center.tokens import LinkPurpose
from tests.factories import notice_hash
from tests.fixtures.mail import SmtpServer
from tests.preference_center.conftest import EMAIL, counts, issue, ledger_size, open_session
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.site import load_site

SAME = {"Sec-Fetch-Site": "same-origin"}
OLD_TEXT = "Yes, send me the Northwind newsletter by email, about once a month."
NEW_TEXT = "Yes, send me the Northwind newsletter by email, twice a month, with partner offers."
CONFIRM_RE = re.compile(rb"http://testserver(/p/confirm/[A-Za-z0-9._-]+)")


@pytest.fixture
def client(
    settings: Settings, database: Database, smtp_server: SmtpServer, api_key: str
) -> Iterator[TestClient]:
    """The app with real SMTP delivery; sends the API key too."""
    app = create_app(dataclasses.replace(settings, smtp_url=smtp_server.url), database)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {api_key}"
        yield test_client


def change_newsletter_notice(database: Database, tmp_path: Path) -> str:
    """Load the demo site with a new newsletter text; returns the new version's hash."""
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    assert OLD_TEXT in demo
    path = tmp_path / "site.toml"
    path.write_text(demo.replace(OLD_TEXT, NEW_TEXT), encoding="utf-8")
    load_site(database, path)
    return notice_hash(database, "newsletter")


def save(client: TestClient, database: Database, csrf: str, topics: list[str]) -> Any:
    pairs = [("csrf", csrf), ("action", "save"), ("purpose", "newsletter")]
    pairs += [("purpose", "profiling")]
    pairs += [("topic", t) for t in topics]
    pairs += [(f"notice.{k}", notice_hash(database, k)) for k in ("newsletter", "profiling")]
    return client.post(
        "/p/",
        content=urlencode(pairs),
        headers={"Content-Type": "application/x-www-form-urlencoded", **SAME},
    )


def newsletter(client: TestClient) -> tuple[bool, str | None]:
    response = client.get("/api/consent", params={"email": EMAIL, "purpose": "newsletter"})
    assert response.status_code == 200, response.text
    return response.json()["permitted"], response.json()["notice_sha256"]


def entries(database: Database, after: int) -> list[tuple[str, str, bool, str | None]]:
    with database.read() as session:
        stmt = (
            select(
                ConsentEvent.purpose_key,
                ConsentEvent.action,
                ConsentEvent.confirmation_required,
                ConsentEvent.notice_sha256,
            )
            .where(ConsentEvent.seq > after)
            .order_by(ConsentEvent.seq)
        )
        return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


def confirm_link(smtp_server: SmtpServer, count: int) -> str:
    smtp_server.wait_for(count)
    raw = smtp_server.raw[count - 1]
    assert b"Subject: Please confirm your choice" in raw
    match = CONFIRM_RE.search(raw.replace(b"=\r\n", b""))
    assert match is not None, raw
    return match.group(1).decode()


def test_a_grant_under_a_new_text_waits_for_the_mailed_confirmation(
    client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    v1 = notice_hash(database, "newsletter")
    v2 = change_newsletter_notice(database, tmp_path)
    assert v2 != v1
    csrf = open_session(client, issue(settings, database, lead))
    start = ledger_size(database)

    # Re-ticked under the new text (with another topic set): pending, a mail is sent.
    response = save(client, database, csrf, ["webinars"])
    assert response.status_code == 200
    assert "we have mailed you a link to confirm" in response.text
    assert entries(database, start) == [("newsletter", "granted", True, v2)]
    assert newsletter(client) == (False, v2)
    link = confirm_link(smtp_server, 1)
    (message,) = smtp_server.messages
    assert message["To"] == EMAIL
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Newsletter" in SmtpServer.text_of(message)

    # GET (a mail scanner) changes nothing; the button confirms; again: nothing more.
    page = client.get(link)
    assert page.status_code == 200
    assert "Yes, I confirm" in page.text
    assert ledger_size(database) == start + 1
    assert client.post(link, headers=SAME).status_code == 200
    assert entries(database, start)[1:] == [("newsletter", "confirmed", False, v2)]
    assert newsletter(client) == (True, v2)
    done = client.post(link, headers=SAME)
    assert done.status_code == 200
    assert ledger_size(database) == start + 2

    # From now on the new text is confirmed: a topic change is live at once, no mail.
    save(client, database, csrf, ["webinars", "monthly_digest"])
    assert entries(database, start)[2:] == [("newsletter", "granted", False, v2)]
    assert newsletter(client) == (True, v2)
    assert len(smtp_server.messages) == 1


def test_a_grant_under_the_confirmed_text_is_live_at_once(
    client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
) -> None:
    v1 = notice_hash(database, "newsletter")
    csrf = open_session(client, issue(settings, database, lead))
    client.post("/p/", data={"csrf": csrf, "action": "unsubscribe_all"}, headers=SAME)
    assert newsletter(client)[0] is False
    start = ledger_size(database)
    response = save(client, database, csrf, ["webinars"])
    assert "Your choices are saved." in response.text
    assert entries(database, start)[0] == ("newsletter", "granted", False, v1)
    assert newsletter(client) == (True, v1)
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("make", "status"),
    [
        ("manage", 400),  # a preference link is not a confirmation link
        ("garbage", 400),
        ("revoked", 410),
    ],
)
def test_bad_confirmation_links_record_nothing(
    client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
    tmp_path: Path,
    make: str,
    status: int,
) -> None:
    change_newsletter_notice(database, tmp_path)
    csrf = open_session(client, issue(settings, database, lead))
    save(client, database, csrf, ["webinars"])
    good = confirm_link(smtp_server, 1)
    if make == "manage":
        link = "/p/confirm/" + issue(settings, database, lead, LinkPurpose.MANAGE)
    elif make == "garbage":
        link = good[:-4] + "AAAA"
    else:
        client.post("/p/", data={"csrf": csrf, "action": "unsubscribe_all"}, headers=SAME)
        from preference_center.tokens import revoke_links

        with database.write() as session:
            revoke_links(session, lead)
        link = good
    before = counts(database)
    assert client.get(link).status_code == status
    assert client.post(link, headers=SAME).status_code == status
    assert counts(database) == before


def test_a_cross_site_confirmation_is_refused(
    client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    change_newsletter_notice(database, tmp_path)
    csrf = open_session(client, issue(settings, database, lead))
    save(client, database, csrf, ["webinars"])
    link = confirm_link(smtp_server, 1)
    before = counts(database)
    refused = client.post(link, headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    assert counts(database) == before
    with database.read() as session:
        confirmed = session.execute(
            select(func.count()).where(ConsentEvent.action == "confirmed")
        ).scalar_one()
    assert confirmed == 0


SUMMARY = "Twice a month instead of monthly, with partner offers."
PREF_RE = re.compile(rb"http://testserver(/p/[A-Za-z0-9._-]+)")


def test_re_permission_after_a_material_change_end_to_end(
    client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    """Material change -> expiry by the job -> re-permission mail -> the page shows the
    new text unticked with what changed -> ticked -> confirmed from the mail -> live."""
    from consent_ledger.lifecycle import expire_stale_grants
    from consent_ledger.lifecycle_commands import lead_linker
    from zeroparty.mail import deliver_pending, transport_for
    from zeroparty.wiring import build_ledger

    v1 = notice_hash(database, "newsletter")
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    table = "[purposes.newsletter.notice]\n"
    changed = demo.replace(OLD_TEXT, NEW_TEXT).replace(table, f'{table}summary = "{SUMMARY}"\n')
    (tmp_path / "site.toml").write_text(changed, encoding="utf-8")
    load_site(database, tmp_path / "site.toml")
    v2 = notice_hash(database, "newsletter")
    ledger = build_ledger(database)
    assert expire_stale_grants(database, ledger, lead_links=lead_linker(settings)) == 1
    assert newsletter(client) == (False, v1)

    live = dataclasses.replace(settings, smtp_url=smtp_server.url)
    assert deliver_pending(database, transport_for(live.smtp_url, live.outbox_dir)) == 1
    (mail,) = smtp_server.wait_for(1)
    assert mail["Subject"] == "Please agree again: Newsletter"
    raw = smtp_server.raw[0].replace(b"=\r\n", b"")
    assert SUMMARY.encode() in raw
    assert NEW_TEXT.encode() in raw
    link = PREF_RE.search(raw)
    assert link is not None

    # The page, opened from the mail: the new text, unticked, and what changed.
    landing = client.get(link.group(1).decode(), headers={"Sec-Fetch-Site": "none"},
                         follow_redirects=False)  # fmt: skip
    assert landing.status_code == 303
    page = client.get("/p/").text
    assert NEW_TEXT in page
    assert OLD_TEXT not in page
    assert re.search(r'value="newsletter" id="p-newsletter"\s+>', page)  # unticked
    assert 'data-changed="newsletter"' in page
    assert SUMMARY in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None

    # Ticked under the new text: double opt-in again, then live under it.
    start = ledger_size(database)
    save(client, database, csrf.group(1), ["webinars"])
    assert entries(database, start) == [("newsletter", "granted", True, v2)]
    assert client.post(confirm_link(smtp_server, 2), headers=SAME).status_code == 200
    assert newsletter(client) == (True, v2)
    assert 'data-changed="newsletter"' not in client.get("/p/").text


def test_an_editorial_change_needs_no_new_confirmation(
    client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    """Consent given to v1 covers an editorial v2: a re-tick under v2 is live at once."""
    demo = (Path(__file__).resolve().parents[2] / "site.toml").read_text(encoding="utf-8")
    table = "[purposes.newsletter.notice]\n"
    edited = demo.replace(OLD_TEXT, OLD_TEXT.replace("by email", "by e-mail"))
    (tmp_path / "site.toml").write_text(
        edited.replace(table, f'{table}change = "editorial"\n'), encoding="utf-8"
    )
    load_site(database, tmp_path / "site.toml")
    v2 = notice_hash(database, "newsletter")
    csrf = open_session(client, issue(settings, database, lead))
    start = ledger_size(database)
    assert "Your choices are saved." in save(client, database, csrf, ["webinars"]).text
    assert entries(database, start) == [("newsletter", "granted", False, v2)]
    assert newsletter(client) == (True, v2)
    assert smtp_server.messages == []
