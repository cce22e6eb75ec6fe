"""Link tokens: each failure kind gets its own page with a fresh-link form; rotation;
revocation."""

from __future__ import annotations

import dataclasses
import time

import pytest
from starlette.testclient import TestClient

from preference_center.tokens import LinkPurpose, revoke_links
from tests.preference_center.conftest import issue, ledger_size, open_session
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings

OLD_KEY = "old-key-0123456789abcdef"
NEW_KEY = "new-key-0123456789abcdef"


def _landing(client: TestClient, token: str) -> object:
    return client.get(f"/p/{token}", headers={"Sec-Fetch-Site": "none"}, follow_redirects=False)


def test_valid_link_lands_on_clean_url(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    response = app_client.get(
        f"/p/{issue(settings, database, lead)}",
        headers={"Sec-Fetch-Site": "none"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/p/"
    assert response.headers["referrer-policy"] == "no-referrer"
    cookie = response.headers["set-cookie"]
    assert "zp_pref=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/p" in cookie
    assert "Secure" not in cookie  # http base URL: a Secure cookie would never come back


def test_cookie_is_secure_on_https(settings: Settings, database: Database, lead: str) -> None:
    https = dataclasses.replace(settings, base_url="https://consent.example")
    with TestClient(create_app(https, database), base_url="https://consent.example") as client:
        response = _landing(client, issue(https, database, lead))
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert "Secure" in response.headers["set-cookie"]  # type: ignore[attr-defined]


def test_cross_site_click_continues_through_a_page_of_ours(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    # A SameSite=Strict cookie is not sent on a redirect chain started by webmail.
    response = app_client.get(
        f"/p/{issue(settings, database, lead)}",
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert response.status_code == 200
    assert response.headers["refresh"] == "0; url=/p/"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "zp_pref=" in response.headers["set-cookie"]


def _expired_token(
    settings: Settings, database: Database, subject_id: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    real = time.time
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: real() - 61 * 24 * 3600)
        return issue(settings, database, subject_id)


@pytest.mark.parametrize(
    ("kind", "status", "code", "phrase"),
    [
        ("expired", 410, "token_expired", "This link has expired."),
        ("tampered", 400, "token_invalid", "This link is not valid."),
        ("wrong_purpose", 400, "token_wrong_purpose", "This link is meant for something else."),
        ("revoked", 410, "token_revoked", "This link has been withdrawn."),
        ("garbage", 400, "token_invalid", "This link is not valid."),
    ],
)
def test_each_token_failure_has_its_page(
    app_client: TestClient,
    settings: Settings,
    database: Database,
    lead: str,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    status: int,
    code: str,
    phrase: str,
) -> None:
    if kind == "expired":
        token = _expired_token(settings, database, lead, monkeypatch)
    elif kind == "tampered":
        good = issue(settings, database, lead)
        token = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    elif kind == "wrong_purpose":
        token = issue(settings, database, lead, LinkPurpose.UNSUBSCRIBE, ("newsletter",))
    elif kind == "revoked":
        token = issue(settings, database, lead)
        with database.write() as session:
            revoke_links(session, lead)
    else:
        token = "not-a-token"
    before = ledger_size(database)
    response = _landing(app_client, token)
    assert response.status_code == status  # type: ignore[attr-defined]
    body = response.text  # type: ignore[attr-defined]
    assert phrase in body
    assert f"<code>{code}</code>" in body
    assert 'action="/p/request-link"' in body  # the page offers a fresh link
    assert response.headers["referrer-policy"] == "no-referrer"  # type: ignore[attr-defined]
    assert "set-cookie" not in response.headers  # type: ignore[attr-defined]
    assert ledger_size(database) == before


def test_failure_page_in_german(app_client: TestClient) -> None:
    response = app_client.get("/p/garbage", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert response.status_code == 400
    assert "Dieser Link ist ungültig" in response.text
    assert '<html lang="de">' in response.text


def test_revocation_kills_old_links_and_new_ones_work(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    old = issue(settings, database, lead)
    open_session(app_client, old)
    with database.write() as session:
        assert revoke_links(session, lead) == 1
    assert _landing(app_client, old).status_code == 410  # type: ignore[attr-defined]
    # The session opened by the old link dies with it.
    assert app_client.get("/p/").status_code == 410
    open_session(app_client, issue(settings, database, lead))


def test_key_rotation(settings: Settings, database: Database, lead: str) -> None:
    old_settings = dataclasses.replace(settings, secret_keys=(OLD_KEY,))
    token = issue(old_settings, database, lead)
    rotated = dataclasses.replace(settings, secret_keys=(NEW_KEY, OLD_KEY))
    with TestClient(create_app(rotated, database)) as client:
        assert _landing(client, token).status_code == 303  # type: ignore[attr-defined]
        # New links are signed with the new key ...
        fresh = issue(rotated, database, lead)
    retired = dataclasses.replace(settings, secret_keys=(NEW_KEY,))
    with TestClient(create_app(retired, database)) as client:
        assert _landing(client, fresh).status_code == 303  # type: ignore[attr-defined]
        # ... and once the old key is removed, its links stop working.
        response = _landing(client, token)
        assert response.status_code == 400  # type: ignore[attr-defined]
        assert "token_invalid" in response.text  # type: ignore[attr-defined]


def test_session_cookie_is_required_and_checked(app_client: TestClient) -> None:
    response = app_client.get("/p/")
    assert response.status_code == 401
    assert "Your session has ended" in response.text
    app_client.cookies.set("zp_pref", "forged")
    assert app_client.get("/p/").status_code == 401


def test_manage_token_is_not_a_session_cookie(
    app_client: TestClient, settings: Settings, database: Database, lead: str
) -> None:
    app_client.cookies.set("zp_pref", issue(settings, database, lead))
    assert app_client.get("/p/").status_code == 401


def test_payload_holds_no_email(settings: Settings, database: Database, lead: str) -> None:
    import base64

    token = issue(settings, database, lead)
    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert b"example.com" not in decoded
    assert lead.encode() in decoded
