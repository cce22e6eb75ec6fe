from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.fixtures.browser import LiveServer
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings


def test_healthz_reports_database(app_client: TestClient) -> None:
    response = app_client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] in {"sqlite", "postgresql"}


def test_unknown_page_is_html_for_people(app_client: TestClient) -> None:
    response = app_client.get("/no-such-page", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Page not found</h1>" in response.text


def test_unknown_api_route_is_json(app_client: TestClient) -> None:
    response = app_client.get("/api/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_security_headers_on_every_response(app_client: TestClient) -> None:
    for path in ("/", "/healthz", "/no-such-page"):
        headers = app_client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"


SECURITY_LINES = [
    b"x-content-type-options: nosniff",
    b"referrer-policy: strict-origin-when-cross-origin",
    b"x-frame-options: DENY",
    b"content-security-policy: default-src 'none'; style-src 'self'; img-src 'self' data:; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    b"cross-origin-opener-policy: same-origin",
    b"permissions-policy: camera=(), microphone=(), geolocation=()",
]


@pytest.mark.parametrize("path", ["/", "/healthz", "/no-such-page", "/api/no-such-thing"])
def test_security_headers_on_the_wire(
    settings: Settings, database: Database, serve: Callable[..., LiveServer], path: str
) -> None:
    """Each security header once, byte for byte, as a browser receives it (no HSTS on
    plain http), on pages, the API, and error answers."""
    server = serve(create_app(settings, database))
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    head, _body = server.raw(request.encode())
    lines = head.split(b"\r\n")
    for line in SECURITY_LINES:
        assert lines.count(line) == 1, (line, lines)
    names = [line.partition(b":")[0] for line in lines[1:]]
    assert len(names) == len(set(names)), lines
    assert b"strict-transport-security" not in names


def test_unexpected_error_logs_the_route_never_the_token(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 is logged with its route template: a path may carry a link token."""

    def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    app = create_app(settings, database)
    app.router.routes.insert(0, Route("/p/{token}/broken", broken, methods=["GET"]))
    token = "secret-link-token-1234567890"
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level("ERROR"):
        answer = client.get(f"/p/{token}/broken", headers={"Accept": "application/json"})
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert "/p/{token}/broken" in caplog.text
    assert token not in caplog.text
