"""RFC 8058 one-click unsubscribe and the mail headers that announce it."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event, select
from starlette.testclient import TestClient

from consent_ledger.models import ConsentEvent
from preference_center import mail_headers, services
from preference_center.locale import strings
from preference_center.models import TopicSubscription
from preference_center.tokens import LinkPurpose
from tests.fixtures.browser import LiveServer
from tests.preference_center.conftest import EMAIL, counts, issue, ledger_size
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings


def _unsubscribe_token(settings: Settings, database: Database, lead: str) -> str:
    return issue(settings, database, lead, LinkPurpose.UNSUBSCRIBE, ("newsletter",))


def _permitted(api: TestClient, purpose: str) -> bool:
    response = api.get("/api/consent", params={"email": EMAIL, "purpose": purpose})
    return bool(response.json()["permitted"])


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_withdraws_named_purpose(
    api: TestClient, settings: Settings, database: Database, lead: str, encoding: str
) -> None:
    token = _unsubscribe_token(settings, database, lead)
    start = ledger_size(database)
    api.cookies.clear()
    if encoding == "urlencoded":
        response = api.post(
            f"/u/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    else:
        response = api.post(
            f"/u/{token}", files={"List-Unsubscribe": (None, "One-Click")}
        )  # multipart/form-data with one plain field, as Gmail sends it
    assert response.status_code == 200, response.text
    assert "set-cookie" not in response.headers
    assert "<form" not in response.text  # nothing left to click
    with database.read() as session:
        entries = list(
            session.execute(select(ConsentEvent).where(ConsentEvent.seq > start)).scalars()
        )
    assert [(e.purpose_key, e.action, e.source, e.method) for e in entries] == [
        ("newsletter", "withdrawn", "preference-center", "one-click-unsubscribe")
    ]
    assert _permitted(api, "newsletter") is False
    assert _permitted(api, "profiling") is True  # only what the token names

    # Idempotent: providers retry; the second call records nothing.
    again = api.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 200
    assert ledger_size(database) == start + 1


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/x-www-form-urlencoded", b"", 422),
        ("application/x-www-form-urlencoded", b"List-Unsubscribe=Yes", 422),
        ("application/x-www-form-urlencoded", b"unsubscribe=One-Click", 422),
        ("application/json", b'{"List-Unsubscribe": "One-Click"}', 415),
        ("text/plain", b"List-Unsubscribe=One-Click", 415),
    ],
)
def test_one_click_bad_bodies(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    before = counts(database)
    response = app_client.post(
        f"/u/{_unsubscribe_token(settings, database, lead)}",
        content=body,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == status
    assert counts(database) == before


@pytest.mark.parametrize(
    ("token_kind", "status"), [("manage", 400), ("garbage", 400), ("revoked", 410)]
)
def test_one_click_bad_tokens(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    token_kind: str,
    status: int,
) -> None:
    from preference_center.tokens import revoke_links

    if token_kind == "manage":
        token = issue(settings, database, lead)
    elif token_kind == "garbage":
        token = "x.y.z"
    else:
        token = _unsubscribe_token(settings, database, lead)
        with database.write() as session:
            revoke_links(session, lead)
    before = counts(database)
    response = app_client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == status
    assert counts(database) == before


def test_one_click_needs_no_same_origin(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    # Mail providers post from their own servers: no Origin check applies.
    response = app_client.post(
        f"/u/{_unsubscribe_token(settings, database, lead)}",
        content=b"List-Unsubscribe=One-Click",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://mail.provider.example",
            "Sec-Fetch-Site": "cross-site",
        },
    )
    assert response.status_code == 200


def test_get_unsubscribe_url_shows_a_button_only(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    before = counts(database)
    response = app_client.get(f"/u/{_unsubscribe_token(settings, database, lead)}")
    assert response.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert counts(database) == before


def test_mail_headers(
    settings: Settings, database: Database, lead: str, app_client: TestClient
) -> None:
    with database.read() as session:
        links = mail_headers(
            settings, lead, "newsletter", session, mailto="unsubscribe@example.org"
        )
    header = links.headers["List-Unsubscribe"]
    assert header.startswith("<http://testserver/u/")
    assert header.endswith(", <mailto:unsubscribe@example.org?subject=unsubscribe>")
    assert links.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert links.preference_url.startswith("http://testserver/p/")
    assert links.preference_url in links.footer_text()
    # The announced URL works as RFC 8058 says a provider will use it.
    response = app_client.post(
        links.unsubscribe_url.removeprefix("http://testserver"),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    # Without a session the links carry version 0: right until the first revocation.
    plain = mail_headers(settings, lead, ["newsletter", "product_updates"])
    assert plain.unsubscribe_url != links.unsubscribe_url


def test_cli_link_prints_working_url(
    cli_env: Settings,
    database: Database,
    lead: str,
    app_client: TestClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zeroparty.cli import main

    assert main(["link", EMAIL]) == 0
    url = capsys.readouterr().out.strip()
    path = urlsplit(url).path
    assert path.startswith("/p/")
    landing = app_client.get(
        path,
        headers={"Sec-Fetch-Site": "none"},
        follow_redirects=False,
    )
    assert landing.status_code == 303
    assert main(["link", "nobody@example.com"]) == 2


def _raw_post(server: LiveServer, path: str, headers: dict[str, str]) -> tuple[bytes, bytes]:
    """One HTTP/1.1 POST of the RFC 8058 body; the answer as the server sent it."""
    body = b"List-Unsubscribe=One-Click"
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return server.raw(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


@pytest.mark.parametrize(
    ("headers", "query", "language"),
    [
        ({}, "", "en"),  # no Accept at all
        ({"Accept": "*/*"}, "", "en"),
        ({"Accept": "*/*"}, "?lang=de", "de"),  # a link mailed in German
    ],
)
def test_a_mail_providers_post_gets_a_short_text_not_a_page(
    settings: Settings,
    database: Database,
    lead: str,
    serve: Callable[..., LiveServer],
    headers: dict[str, str],
    query: str,
    language: str,
) -> None:
    server = serve(create_app(settings, database))
    start = ledger_size(database)
    token = _unsubscribe_token(settings, database, lead)
    head, body = _raw_post(server, f"/u/{token}{query}", headers)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert b"\r\ncontent-type: text/plain; charset=utf-8\r\n" in head
    assert f"\r\ncontent-language: {language}\r\n".encode() in head, head.decode()
    assert b"\r\nreferrer-policy: no-referrer\r\n" in head
    assert b"\r\ncache-control: no-store\r\n" in head
    texts = strings(language)
    expected = f"{texts['unsubscribed_title']}\n{texts['unsubscribed_text']}\n"
    assert body == expected.encode("utf-8")
    if language == "de":
        assert body != strings("en")["unsubscribed_title"].encode() + b"\n"
    assert ledger_size(database) == start + 1


def test_the_unsubscribe_pages_button_gets_a_page(
    settings: Settings, database: Database, lead: str, serve: Callable[..., LiveServer]
) -> None:
    """A browser (the button on ``GET /u/{token}``) asks for HTML and gets the page."""
    server = serve(create_app(settings, database))
    token = _unsubscribe_token(settings, database, lead)
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    head, body = _raw_post(server, f"/u/{token}", {"Accept": accept})
    assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
    assert b"\r\ncontent-type: text/html; charset=utf-8\r\n" in head
    page = body.decode()
    assert "<html" in page
    assert strings("en")["unsubscribed_title"] in page
    assert "<form" not in page


def test_a_topic_choice_commits_while_something_keeps_every_cursor_alive(
    settings: Settings, database: Database, lead: str
) -> None:
    """A sampling profiler or a kept traceback can hold a frame, and with it a cursor,
    past its statement. SQLite refuses to COMMIT while a statement is in progress (an
    ``INSERT ... RETURNING`` whose row nobody read): a one-click unsubscribe from a
    purpose with one topic answered 503 under such a profiler. Every result is read or
    closed before the commit."""
    kept: list[object] = []

    def keep(_conn: object, cursor: object, *_args: object) -> None:
        kept.append(cursor)

    token = _unsubscribe_token(settings, database, lead)
    event.listen(database.engine, "after_cursor_execute", keep)
    try:
        with database.write_connection() as connection:
            services.record_topics(connection, lead, {"monthly_digest": False}, None, utcnow())
        with TestClient(create_app(settings, database)) as client:
            response = client.post(
                f"/u/{token}",
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
    finally:
        event.remove(database.engine, "after_cursor_execute", keep)
    assert response.status_code == 200, response.text
    assert kept, "the listener saw the statements"
    with database.read() as session:
        stored = session.execute(
            select(TopicSubscription.subscribed).where(
                TopicSubscription.subject_id == lead,
                TopicSubscription.topic_key == "monthly_digest",
            )
        ).scalar_one()
    assert stored is False
