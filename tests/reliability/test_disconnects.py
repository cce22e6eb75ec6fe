"""A client that goes away mid-body, on every POST route of a real ``zeroparty serve``.

The client sends its headers with ``Content-Length: 1000``, ten bytes of body, and closes
the socket. The server stores nothing, writes no traceback (at most one short line), and
goes on answering. Each route gets what lets it reach its body read where a test can give
it (an API key, a valid link token, a preference session cookie, a CSRF-passing origin);
routes that refuse the request before reading the body (the console's, without a
session) must stay quiet too. ``POST /confirm/{token}`` and ``POST /p/erase/{token}`` act
on their URL alone and read no body, so they get placeholder tokens here (refused).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

import httpx2
from sqlalchemy import func, select
from starlette.routing import Route

from consent_ledger.subjects import find_subject_id
from preference_center.tokens import LinkClaim, LinkPurpose, LinkTokens, current_version
from preference_center.views import COOKIE as PREFERENCE_COOKIE
from tests import factories
from tests.conftest import TEST_SECRET
from tests.reliability.live import ServeProcess
from zeroparty.apikeys import create_api_key
from zeroparty.app import create_app
from zeroparty.db import Base, Database
from zeroparty.settings import Settings

CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=zeroparty",
    "application/json",
]


@dataclass(frozen=True)
class Credentials:
    api_key: str
    tokens: dict[str, str]  # route template -> the token for its {token}
    session_cookie: str


def credentials(database: Database, api_key: str) -> Credentials:
    """Valid links and a preference session for a real subject, signed as ``serve`` signs."""
    factories.record(database, "gone@example.com", "newsletter")
    with database.read() as session:
        subject_id = find_subject_id(session, "gone@example.com")
        assert subject_id is not None
        claim = LinkClaim(subject_id, current_version(session, subject_id))
    links = LinkTokens(Settings(database_url="sqlite://", secret_keys=(TEST_SECRET,)))
    return Credentials(
        api_key,
        {
            "/p/{token}": links.issue(LinkPurpose.MANAGE, claim),
            "/u/{token}": links.issue(
                LinkPurpose.UNSUBSCRIBE, LinkClaim(claim.subject_id, claim.version, ("newsletter",))
            ),
        },
        links.issue(LinkPurpose.SESSION, claim),
    )


# Placeholders for the other path parameters: the demo site's form, and ids the console
# looks up (after its session check, which refuses first here).
PATH_VALUES = {"slug": "contact", "request_id": "1", "subject_id": "x" * 24}


def post_paths(settings: Settings, database: Database, tokens: dict[str, str]) -> list[str]:
    """Every POST route of the app, with its path parameters filled in."""
    app = create_app(settings, database)
    paths = [
        re.sub(
            r"\{(\w+)(?::\w+)?\}",
            lambda m, template=route.path: tokens.get(template) or PATH_VALUES.get(m[1], "x"),
            route.path,
        )
        for route in app.routes
        if isinstance(route, Route) and "POST" in (route.methods or ())
    ]
    assert {"/f/contact", "/api/consent", "/p/request-link"} <= set(paths), paths
    return paths


def row_counts(database: Database) -> dict[str, int]:
    with database.read() as session:
        return {
            name: int(session.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in Base.metadata.tables.items()
        }


def send_half_and_close(port: int, path: str, content_type: str, given: Credentials) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Authorization: Bearer {given.api_key}\r\n"
            f"Cookie: {PREFERENCE_COOKIE}={given.session_cookie}\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b"email=abc&"
        )


def test_a_client_gone_mid_body_leaves_no_traceback_and_nothing_stored(
    database_url: str,
    database: Database,
    settings: Settings,
    serve_process: Callable[..., ServeProcess],
) -> None:
    with database.write() as session:
        api_key = create_api_key(session, "disconnects")
    given = credentials(database, api_key)
    paths = post_paths(settings, database, given.tokens)
    server = serve_process(database_url).start()
    before = row_counts(database)
    for path in paths:
        for content_type in CONTENT_TYPES:
            send_half_and_close(server.port, path, content_type, given)
    # The server still answers, and still does its work: a whole request is answered.
    assert httpx2.get(server.url + "/healthz", timeout=10).status_code == 200
    answer = httpx2.post(
        server.url + "/api/consent",
        headers={"Authorization": f"Bearer {api_key}"},
        json={},
        timeout=10,
    )
    assert answer.status_code == 422
    assert server.process is not None
    assert server.process.poll() is None
    # A graceful stop waits for every connection's handling to end: the logs are whole.
    server.stop()
    assert row_counts(database) == before
    logs = server.logs()
    assert "Traceback" not in logs, logs[-4000:]
    assert "Exception in ASGI application" not in logs, logs[-4000:]
    assert "unexpected error" not in logs, logs[-4000:]
