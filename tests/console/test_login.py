"""Staff login: passwords, rate limits, sessions that expire and end, CSRF."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from console.models import LoginAttempt, StaffAuditEntry
from console.sessions import SessionService
from tests.console.conftest import PASSWORD, Clock, csrf_of, hidden, log_in, make_staff
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings


def _attempt(client: TestClient, email: str, password: str) -> int:
    page = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"login": hidden(page.text, "login"), "email": email, "password": password},
        follow_redirects=False,
    )
    return answer.status_code


def test_pages_need_a_login(console_app: Callable[[], TestClient]) -> None:
    client = console_app()
    answer = client.get("/console/leads?q=ann", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=/console/leads%3Fq%3Dann"


def test_login_and_logout(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    client = log_in(console_app(), staff["compliance"])
    home = client.get("/console/")
    assert home.status_code == 200
    assert "compliance@staff.example" in home.text
    cookie = client.cookies.get("zp_console")
    assert cookie
    answer = client.post("/console/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert answer.status_code == 303
    # The old cookie, replayed, no longer works (the session was revoked).
    replay = console_app()
    replay.cookies.set("zp_console", cookie, path="/console")
    assert replay.get("/console/", follow_redirects=False).status_code == 303
    with database.read() as session:
        actions = session.scalars(select(StaffAuditEntry.action)).all()
    assert "login" in actions
    assert "logout" in actions


def test_cookie_flags(console_app: Callable[[], TestClient], staff: dict[str, str]) -> None:
    client = console_app()
    page = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"login": hidden(page.text, "login"), "email": staff["admin"], "password": PASSWORD},
        follow_redirects=False,
    )
    header = next(v for k, v in answer.headers.multi_items() if v.startswith("zp_console="))
    assert "HttpOnly" in header
    assert "SameSite=strict" in header or "samesite=strict" in header.lower()
    assert "Path=/console" in header
    assert "Max-Age=28800" in header


def test_secure_cookie_on_https(settings: Settings, database: Database) -> None:
    make_staff(database, "s@staff.example", "admin")
    app = create_app(dataclasses.replace(settings, base_url="https://consent.example"), database)
    with TestClient(app, base_url="https://consent.example") as client:
        page = client.get("/console/login")
        answer = client.post(
            "/console/login",
            data={
                "login": hidden(page.text, "login"),
                "email": "s@staff.example",
                "password": PASSWORD,
            },
            follow_redirects=False,
        )
    header = next(v for k, v in answer.headers.multi_items() if v.startswith("zp_console="))
    assert "Secure" in header


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("compliance@staff.example", "wrong password here"),
        ("nobody@staff.example", PASSWORD),
        ("nobody@staff.example", "wrong password here"),
    ],
)
def test_login_failures_look_the_same(
    console_app: Callable[[], TestClient], staff: dict[str, str], email: str, password: str
) -> None:
    client = console_app()
    page = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"login": hidden(page.text, "login"), "email": email, "password": password},
    )
    assert answer.status_code == 401
    assert "the email address or the password is wrong" in answer.text
    assert "zp_console=" not in answer.headers.get("set-cookie", "")


def test_login_is_rate_limited_per_account(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    client = console_app()
    for _ in range(5):
        assert _attempt(client, staff["admin"], "wrong password here") == 401
    # Now even the right password is refused, for a known and an unknown address alike.
    assert _attempt(client, staff["admin"], PASSWORD) == 429
    for _ in range(5):
        _attempt(client, "ghost@staff.example", "wrong password here")
    assert _attempt(client, "ghost@staff.example", PASSWORD) == 429
    # Another account from the same client still works (per-client limit is higher).
    assert _attempt(client, staff["compliance"], PASSWORD) == 303
    with database.read() as session:
        stored = session.scalars(select(LoginAttempt.account_key)).all()
    assert all("@" not in key for key in stored)


def test_login_without_the_form_token_is_refused(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    client = console_app()
    answer = client.post(
        "/console/login", data={"login": "forged", "email": staff["admin"], "password": PASSWORD}
    )
    assert answer.status_code == 403
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 0


def test_cross_site_posts_are_refused(as_role: Callable[[str], TestClient]) -> None:
    client = as_role("admin")
    csrf = csrf_of(client)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        answer = client.post("/console/logout", data={"csrf": csrf}, headers=headers)
        assert answer.status_code == 403
    # Without the session's nonce, a same-origin POST is refused too.
    assert client.post("/console/logout", data={"csrf": "nope"}).status_code == 403
    assert client.get("/console/").status_code == 200  # still logged in


def test_session_expires(settings: Settings, database: Database, clock: Clock) -> None:
    make_staff(database, "short@staff.example", "compliance")
    short = dataclasses.replace(settings, console_session_minutes=1 / 60)  # one second
    app = create_app(short, database)
    app.state.console_sessions = SessionService(short, clock)
    with TestClient(app) as client:
        log_in(client, "short@staff.example")
        assert client.get("/console/", follow_redirects=False).status_code == 200
        clock.advance(seconds=1)
        assert client.get("/console/", follow_redirects=False).status_code == 303


def test_set_password_link_is_one_time(
    console_app: Callable[[], TestClient], cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from zeroparty.cli import main

    assert main(["user", "add", "New@Staff.example", "--role", "marketer"]) == 0
    link = capsys.readouterr().out.strip()
    path = link.removeprefix(cli_env.base_url)
    client = console_app()
    assert "new@staff.example" in client.get(path).text
    weak = client.post(path, data={"password": "short", "password_repeat": "short"})
    assert weak.status_code == 422
    assert "at least 12 characters" in weak.text
    ok = client.post(
        path, data={"password": PASSWORD, "password_repeat": PASSWORD}, follow_redirects=False
    )
    assert ok.status_code == 303
    assert client.get(path).status_code == 410  # used
    log_in(client, "new@staff.example")
    assert main(["user", "add", "new@staff.example", "--role", "admin"]) == 2


def test_password_change_ends_sessions(
    console_app: Callable[[], TestClient], staff: dict[str, str]
) -> None:
    first = log_in(console_app(), staff["marketer"])
    second = log_in(console_app(), staff["marketer"])
    new = "another long passphrase"
    answer = first.post(
        "/console/password",
        data={
            "csrf": csrf_of(first),
            "current_password": PASSWORD,
            "password": new,
            "password_repeat": new,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert second.get("/console/", follow_redirects=False).status_code == 303
    log_in(console_app(), staff["marketer"], new)


def test_session_length_setting() -> None:
    from zeroparty.settings import SettingsError

    assert Settings.from_env({}).console_session_minutes == 480
    env = {"ZEROPARTY_CONSOLE_SESSION_MINUTES": "30"}
    assert Settings.from_env(env).console_session_minutes == 30
    with pytest.raises(SettingsError):
        Settings.from_env({"ZEROPARTY_CONSOLE_SESSION_MINUTES": "soon"})


def test_user_reset_locks_the_account(
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from zeroparty.cli import main

    session = log_in(console_app(), staff["admin"])
    assert main(["user", "reset", "ADMIN@staff.example"]) == 0
    link = capsys.readouterr().out.strip().removeprefix(cli_env.base_url)
    assert session.get("/console/", follow_redirects=False).status_code == 303
    assert _attempt(console_app(), staff["admin"], PASSWORD) == 401
    new = "a brand new passphrase"
    client = console_app()
    client.post(link, data={"password": new, "password_repeat": new})
    log_in(console_app(), staff["admin"], new)
    assert main(["user", "reset", "nobody@staff.example"]) == 2
