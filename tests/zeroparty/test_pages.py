"""The home page in a real browser: renders, passes axe-core, and a mail round-trip."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tests.fixtures.browser import LiveServer, axe_violations, screenshot
from tests.fixtures.mail import SmtpServer
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.mail import Mail, deliver_pending, queue_mail, transport_for
from zeroparty.settings import Settings


def test_home_page_in_browser_is_accessible(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], page: Any
) -> None:
    server = serve(create_app(settings, database))
    page.goto(server.url + "/")
    assert page.locator("h1").inner_text() == "zeroparty"
    screenshot(page, "home")
    assert axe_violations(page) == []


def test_queued_mail_reaches_smtp_server(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    settings = dataclasses.replace(settings, smtp_url=smtp_server.url)
    with database.write() as session:
        queue_mail(session, Mail(to="ann@example.com", subject="Hello", text="Hi Ann"))
    sent = deliver_pending(database, transport_for(settings.smtp_url, settings.outbox_dir))
    assert sent == 1
    (message,) = smtp_server.wait_for(1)
    assert message["To"] == "ann@example.com"
    text = SmtpServer.text_of(message).replace("\r\n", "\n")
    footer = (
        "This mail was sent by Northwind Analytics GmbH, Example Street 1, 10115 Berlin.\n"
        "Privacy policy: https://northwind.example/privacy"
    )
    assert text == f"Hi Ann\n\n{footer}\n"  # the company and brand footer, from site.toml
    assert deliver_pending(database, transport_for(settings.smtp_url, settings.outbox_dir)) == 0


def test_mail_retried_after_temporary_failure(
    settings: Settings, database: Database, smtp_server: SmtpServer
) -> None:
    transport = transport_for(smtp_server.url, settings.outbox_dir)
    with database.write() as session:
        queue_mail(session, Mail(to="bob@example.com", subject="Hello", text="Hi Bob"))
    smtp_server.refuse()
    assert deliver_pending(database, transport) == 0
    smtp_server.refuse(False)
    # Not due yet: the retry waits for its backoff.
    assert deliver_pending(database, transport) == 0
    assert smtp_server.messages == []


def test_pages_link_their_stylesheets_from_the_root(settings: Settings, database: Database) -> None:
    """Every page links its stylesheet by a root-relative path (no route search per
    render), and the path answers with the file; behind a proxy prefix, with the prefix."""
    from starlette.testclient import TestClient

    app = create_app(settings, database)
    with TestClient(app) as client:
        for page, sheet in (
            ("/", "/static/zeroparty.css"),
            ("/p/request-link", "/static/zeroparty.css"),
            ("/console/login", "/static/console/console.css"),
        ):
            answer = client.get(page)
            assert answer.status_code == 200, page
            assert f'href="{sheet}"' in answer.text, page
            css = client.get(sheet)
            assert css.status_code == 200
            assert css.headers["content-type"].startswith("text/css")
    with TestClient(app, root_path="/zp") as client:
        assert 'href="/zp/static/zeroparty.css"' in client.get("/").text
