"""Server-side staff sessions: random ids stored hashed, never signed; forged, replayed,
revoked and timed-out cookies refused; revocation one by one and all at once; the
staff log."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from console.models import StaffAuditEntry, StaffSession
from console.sessions import SessionService
from tests.console.conftest import Clock, csrf_of, hidden, log_in, make_staff
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings
from zeroparty.tokens import TokenService

HANDLE_RE = re.compile(r'name="session" value="([0-9a-f]{16})"')


def _logged_in(client: TestClient) -> bool:
    return client.get("/console/", follow_redirects=False).status_code == 200


def _actions(database: Database) -> list[tuple[int | None, str, str]]:
    with database.read() as session:
        rows = session.execute(
            select(
                StaffAuditEntry.user_id, StaffAuditEntry.action, StaffAuditEntry.detail
            ).order_by(StaffAuditEntry.id)
        ).all()
    return [(user_id, action, detail) for user_id, action, detail in rows]


def _session_count(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(StaffSession)) or 0)


def test_the_cookie_is_a_random_id_stored_only_hashed(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    first = log_in(console_app(), staff["admin"]).cookies["zp_console"]
    second = log_in(console_app(), staff["admin"]).cookies["zp_console"]
    assert first != second
    for cookie in (first, second):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie)  # token_urlsafe(32): 256 bits
        assert "." not in cookie  # nothing signed, no payload
    with database.read() as session:
        stored = set(session.scalars(select(StaffSession.token_hash)))
    assert stored == {hashlib.sha256(c.encode()).hexdigest() for c in (first, second)}


def test_the_cookie_does_not_depend_on_the_signing_key(
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    settings: Settings,
    database: Database,
) -> None:
    """Another host with other secret keys but the same database accepts the session:
    the keys play no part in it, so knowing them opens nothing."""
    cookie = log_in(console_app(), staff["admin"]).cookies["zp_console"]
    other = dataclasses.replace(settings, secret_keys=("a-completely-different-key-0123",))
    with TestClient(create_app(other, database)) as client:
        client.cookies.set("zp_console", cookie, path="/console")
        assert _logged_in(client)


def test_a_cookie_signed_with_the_apps_own_keys_is_refused(
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    settings: Settings,
    database: Database,
) -> None:
    """The old format (user id, generation and nonce, signed with the app's own keys),
    forged for every account, opens nothing."""
    with database.read() as session:
        from console.models import StaffUser

        users = [(u.id, u.session_generation) for u in session.scalars(select(StaffUser))]
    signer = TokenService(settings.secret_keys, "console-session", 3600)
    for user_id, generation in users:
        forged = signer.issue({"u": user_id, "g": generation, "n": "nonce"})
        client = console_app()
        client.cookies.set("zp_console", forged, path="/console")
        answer = client.get("/console/audit", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")


@pytest.mark.parametrize("cookie", ["", "x", "A" * 43, "A" * 4000, "eyJ1IjoxfQ.abc.def"])
def test_made_up_cookies_are_refused(console_app: Callable[[], TestClient], cookie: str) -> None:
    client = console_app()
    client.cookies.set("zp_console", cookie, path="/console")
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_the_session_id_changes_at_login(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    """A session id planted before login (fixation) is never adopted, and logging in
    again in the same browser draws a new one."""
    client = console_app()
    planted = "planted-by-someone-else-0123456789abcdefghij"
    client.get("/console/login")  # learn the cookie jar's domain for this server
    domain = next(c.domain for c in client.cookies.jar)
    client.cookies.set("zp_console", planted, domain=domain, path="/console")
    log_in(client, staff["admin"])
    assert len([c for c in client.cookies.jar if c.name == "zp_console"]) == 1
    first = client.cookies["zp_console"]
    assert first != planted
    log_in(client, staff["admin"])
    assert client.cookies["zp_console"] != first
    assert _session_count(database) == 2


def test_a_copied_cookie_is_refused_after_logout(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    client = log_in(console_app(), staff["compliance"])
    elsewhere = log_in(console_app(), staff["compliance"])
    cookie = client.cookies["zp_console"]
    answer = client.post("/console/logout", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert answer.status_code == 303
    replay = console_app()
    replay.cookies.set("zp_console", cookie, path="/console")
    assert not _logged_in(replay)
    assert _logged_in(elsewhere)  # logging out ends this session only
    with database.read() as session:
        revoked = session.scalar(
            select(StaffSession.revoked_at).where(
                StaffSession.token_hash == hashlib.sha256(cookie.encode()).hexdigest()
            )
        )
    assert revoked is not None


def test_ending_one_session(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    laptop = log_in(console_app(), staff["marketer"])
    phone = log_in(console_app(), staff["marketer"])
    page = laptop.get("/console/sessions")
    assert page.status_code == 200
    handles = HANDLE_RE.findall(page.text)
    assert len(handles) == 2
    assert page.text.count("(this one)") == 1
    phone_handle = hashlib.sha256(phone.cookies["zp_console"].encode()).hexdigest()[:16]
    assert phone_handle in handles
    answer = laptop.post(
        "/console/sessions/end",
        data={"csrf": hidden(page.text, "csrf"), "session": phone_handle},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sessions"
    assert not _logged_in(phone)
    assert _logged_in(laptop)
    assert len(HANDLE_RE.findall(laptop.get("/console/sessions").text)) == 1
    assert (None, "session.end", "") not in _actions(database)
    assert any(action == "session.end" for _, action, _ in _actions(database))


@pytest.mark.parametrize("handle", ["", "zz", "0" * 16, "%" * 16, "A" * 16, "0" * 64])
def test_ending_a_session_that_is_not_yours_changes_nothing(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database, handle: str
) -> None:
    mine = log_in(console_app(), staff["marketer"])
    theirs = log_in(console_app(), staff["compliance"])
    their_handle = hashlib.sha256(theirs.cookies["zp_console"].encode()).hexdigest()[:16]
    for sent in (handle, their_handle):
        answer = mine.post("/console/sessions/end", data={"csrf": csrf_of(mine), "session": sent})
        assert answer.status_code == 404
    assert _logged_in(theirs)
    assert _logged_in(mine)
    assert not any(action == "session.end" for _, action, _ in _actions(database))


def test_log_out_everywhere(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    first = log_in(console_app(), staff["compliance"])
    second = log_in(console_app(), staff["compliance"])
    someone_else = log_in(console_app(), staff["marketer"])
    answer = first.post(
        "/console/sessions/end-all", data={"csrf": csrf_of(first)}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"
    assert not _logged_in(first)
    assert not _logged_in(second)
    assert _logged_in(someone_else)
    assert any(
        action == "session.end-all" and "2 ended" in detail
        for _, action, detail in _actions(database)
    )


def test_an_admin_ends_every_session_of_another_account(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    target = log_in(console_app(), staff["marketer"])
    compliance = log_in(console_app(), staff["compliance"])
    admin = log_in(console_app(), staff["admin"])
    with database.read() as session:
        from console.models import StaffUser

        marketer_id = session.scalar(
            select(StaffUser.id).where(StaffUser.email == staff["marketer"])
        )
    page = admin.get("/console/sessions")
    assert staff["marketer"] in page.text
    # Compliance may not; nor may anyone name an account that is not a number.
    refused = compliance.post(
        "/console/sessions/end-all", data={"csrf": csrf_of(compliance), "user": str(marketer_id)}
    )
    assert refused.status_code == 403
    assert "marketer@staff.example" not in compliance.get("/console/sessions").text
    bad = admin.post("/console/sessions/end-all", data={"csrf": csrf_of(admin), "user": "1; x"})
    assert bad.status_code == 422
    missing = admin.post("/console/sessions/end-all", data={"csrf": csrf_of(admin), "user": "999"})
    assert missing.status_code == 404
    assert _logged_in(target)
    answer = admin.post(
        "/console/sessions/end-all",
        data={"csrf": csrf_of(admin), "user": str(marketer_id)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert not _logged_in(target)
    assert _logged_in(admin)
    assert _logged_in(compliance)


def test_session_posts_need_the_sessions_own_token(
    console_app: Callable[[], TestClient], staff: dict[str, str]
) -> None:
    first = log_in(console_app(), staff["admin"])
    second = log_in(console_app(), staff["admin"])
    assert csrf_of(first) != csrf_of(second)
    answer = first.post("/console/sessions/end-all", data={"csrf": csrf_of(second)})
    assert answer.status_code == 403
    assert _logged_in(first)
    assert _logged_in(second)


def test_idle_timeout(
    console_app: Callable[[], TestClient], staff: dict[str, str], clock: Clock
) -> None:
    client = log_in(console_app(), staff["admin"])  # idle timeout: 30 minutes
    for _ in range(4):  # used every 29 minutes, it lives on
        clock.advance(minutes=29)
        assert _logged_in(client)
    clock.advance(minutes=30)
    assert not _logged_in(client)


def test_absolute_timeout(settings: Settings, database: Database, clock: Clock) -> None:
    make_staff(database, "busy@staff.example", "compliance")
    short = dataclasses.replace(settings, console_session_minutes=60, console_idle_minutes=30)
    app = create_app(short, database)
    app.state.console_sessions = SessionService(short, clock)
    with TestClient(app) as client:
        log_in(client, "busy@staff.example")
        for _ in range(2):
            clock.advance(minutes=25)
            assert _logged_in(client)
        clock.advance(minutes=9, seconds=59)
        assert _logged_in(client)
        clock.advance(seconds=1)  # 60 minutes after login, however busy
        assert not _logged_in(client)


def test_last_seen_is_written_at_most_once_a_minute(
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    database: Database,
    clock: Clock,
) -> None:
    client = log_in(console_app(), staff["admin"])
    key = hashlib.sha256(client.cookies["zp_console"].encode()).hexdigest()

    def last_seen() -> object:
        with database.read() as session:
            return session.scalar(
                select(StaffSession.last_seen_at).where(StaffSession.token_hash == key)
            )

    login_time = last_seen()
    assert login_time == clock.now
    clock.advance(seconds=59)
    assert _logged_in(client)
    assert last_seen() == login_time
    clock.advance(seconds=1)
    assert _logged_in(client)
    assert last_seen() == clock.now


def test_the_staff_log_records_logins_refusals_logouts_and_revocations(
    console_app: Callable[[], TestClient], staff: dict[str, str], database: Database
) -> None:
    client = console_app()
    for email, password in (
        (staff["admin"], "wrong password here"),
        ("nobody@staff.example", "wrong password here"),
    ):
        page = client.get("/console/login")
        client.post(
            "/console/login",
            data={"login": hidden(page.text, "login"), "email": email, "password": password},
        )
    log_in(client, staff["admin"])
    other = log_in(console_app(), staff["admin"])
    other.post("/console/sessions/end-all", data={"csrf": csrf_of(other)})
    client = log_in(console_app(), staff["admin"])
    client.post("/console/logout", data={"csrf": csrf_of(client)})
    with database.read() as session:
        from console.models import StaffUser

        admin_id = session.scalar(select(StaffUser.id).where(StaffUser.email == staff["admin"]))
    entries = _actions(database)
    assert entries[:2] == [
        (admin_id, "login.refused", "wrong password"),
        (None, "login.refused", "unknown account"),
    ]
    assert [action for _, action, _ in entries[2:]] == [
        "login",
        "login",
        "session.end-all",
        "login",
        "logout",
    ]
    for _, _, detail in entries:  # neither an address nor a network in clear
        assert "@" not in detail
        assert "testclient" not in detail
        assert "127.0.0" not in detail
