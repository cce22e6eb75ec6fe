from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

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
