from __future__ import annotations

from starlette.testclient import TestClient


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
    assert "Not found" in response.text


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
