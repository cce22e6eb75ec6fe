"""Two-factor login for staff (TOTP, RFC 6238) on a controlled clock: enrolment, the
second login step, wrong and reused codes, recovery codes once only, limits, the
requirement for a role, and the CLI's way out for a lost authenticator."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import httpx2
import pyotp
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from console import accounts, two_factor
from console.models import PendingLogin, RecoveryCode, StaffAuditEntry, StaffUser, TwoFactor
from console.sessions import SessionService
from tests.console.conftest import PASSWORD, Clock, csrf_of, enter_code, hidden, log_in
from zeroparty.app import create_app
from zeroparty.db import Database
from zeroparty.settings import Settings, SettingsError

SECRET_RE = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')
URI_RE = re.compile(r'href="(otpauth://[^"]+)"')
CODES_RE = re.compile(r"<li><code>([a-z2-7]{4}(?:-[a-z2-7]{4}){3})</code></li>")


def _enrol(client: TestClient, clock: Clock) -> tuple[pyotp.TOTP, list[str]]:
    """Set up two-factor login as a person would; the authenticator and the codes."""
    csrf = csrf_of(client, "/console/two-factor")
    started = client.post("/console/two-factor/setup", data={"csrf": csrf}, follow_redirects=False)
    assert started.status_code == 303
    page = client.get("/console/two-factor")
    secret = SECRET_RE.search(page.text)
    assert secret is not None
    totp = pyotp.TOTP(secret.group(1))
    confirmed = client.post(
        "/console/two-factor/confirm", data={"csrf": csrf, "code": totp.at(clock.now)}
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = CODES_RE.findall(confirmed.text)
    assert len(codes) == 10
    return totp, codes


def _password_step(client: TestClient, email: str) -> int:
    page = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"login": hidden(page.text, "login"), "email": email, "password": PASSWORD},
        follow_redirects=False,
    )
    assert answer.headers.get("location") in ("/console/login/code", "/console/"), answer.text
    return answer.status_code


def _logged_in(client: TestClient) -> bool:
    return client.get("/console/", follow_redirects=False).status_code == 200


def _actions(database: Database) -> list[tuple[str, str]]:
    with database.read() as session:
        rows = session.execute(
            select(StaffAuditEntry.action, StaffAuditEntry.detail).order_by(StaffAuditEntry.id)
        ).all()
    return [(action, detail) for action, detail in rows]


def test_enrolment_shows_the_secret_and_stores_only_hashed_codes(
    as_role: Callable[[str], TestClient], database: Database, clock: Clock
) -> None:
    client = as_role("compliance")
    assert "is <strong>off</strong>" in client.get("/console/two-factor").text
    csrf = csrf_of(client, "/console/two-factor")
    client.post("/console/two-factor/setup", data={"csrf": csrf})
    page = client.get("/console/two-factor").text
    secret = SECRET_RE.search(page)
    uri = URI_RE.search(page)
    assert secret is not None
    assert uri is not None
    parts = urlsplit(uri.group(1).replace("&amp;", "&"))
    assert parts.netloc == "totp"
    assert unquote(parts.path) == "/zeroparty console:compliance@staff.example"
    assert parse_qs(parts.query)["secret"] == [secret.group(1)]
    totp = pyotp.TOTP(secret.group(1))
    # A wrong code turns nothing on.
    wrong = client.post("/console/two-factor/confirm", data={"csrf": csrf, "code": "000000"})
    if totp.at(clock.now) != "000000":
        assert wrong.status_code == 422
    with database.read() as session:
        factor = session.scalar(select(TwoFactor))
        assert factor is not None
        assert factor.confirmed_at is None
    ok = client.post("/console/two-factor/confirm", data={"csrf": csrf, "code": totp.at(clock.now)})
    assert ok.status_code == 200
    codes = CODES_RE.findall(ok.text)
    assert len(set(codes)) == 10
    with database.read() as session:
        stored = set(session.scalars(select(RecoveryCode.code_hash)))
    assert stored == {hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in codes}
    assert not any(c in h for c in codes for h in stored)
    after = client.get("/console/two-factor").text
    assert "is <strong>on</strong>" in after
    assert "10 unused recovery codes left" in after
    assert not CODES_RE.findall(after)  # shown once only
    assert ("two-factor.on", "") in _actions(database)


def test_enrolling_ends_the_accounts_other_sessions(
    as_role: Callable[[str], TestClient], clock: Clock
) -> None:
    other = as_role("marketer")
    client = as_role("marketer")
    _enrol(client, clock)
    assert _logged_in(client)
    assert not _logged_in(other)


def test_login_asks_for_a_code_after_the_password(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    database: Database,
    clock: Clock,
) -> None:
    totp, _codes = _enrol(as_role("admin"), clock)
    clock.advance(seconds=30)
    client = console_app()
    assert _password_step(client, staff["admin"]) == 303
    assert "zp_console" not in client.cookies  # the password alone opens nothing
    assert client.cookies.get("zp_console_pending")
    assert not _logged_in(client)
    assert client.get("/console/audit", follow_redirects=False).status_code == 303
    assert enter_code(client, "123 456" if totp.at(clock.now) != "123456" else "654321") == 401
    assert not _logged_in(client)
    assert enter_code(client, totp.at(clock.now)) == 303
    assert _logged_in(client)
    assert client.get("/console/audit").status_code == 200
    with database.read() as session:
        assert session.scalar(select(PendingLogin)) is None  # used up
    actions = _actions(database)
    assert ("login.refused", "wrong code") in actions
    assert ("login", "password and totp") in actions


def test_a_code_from_the_previous_step_is_accepted_once(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    clock: Clock,
) -> None:
    totp, _codes = _enrol(as_role("admin"), clock)
    clock.advance(seconds=60)
    late = totp.at(clock.now - timedelta(seconds=30))  # the previous step's code
    first = console_app()
    _password_step(first, staff["admin"])
    assert enter_code(first, late) == 303
    # The same code again, still inside its window, from another browser: refused.
    second = console_app()
    _password_step(second, staff["admin"])
    assert enter_code(second, late) == 401
    # Two steps ago is outside the window.
    third = console_app()
    _password_step(third, staff["admin"])
    clock.advance(seconds=90)
    assert enter_code(third, late) == 401
    assert enter_code(third, totp.at(clock.now)) == 303


def test_a_reused_code_is_refused(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    clock: Clock,
) -> None:
    totp, _codes = _enrol(as_role("admin"), clock)
    # The enrolment code's step is spent: logging in within it needs the next code.
    first = console_app()
    _password_step(first, staff["admin"])
    assert enter_code(first, totp.at(clock.now)) == 401
    clock.advance(seconds=30)
    assert enter_code(first, totp.at(clock.now)) == 303
    second = console_app()
    _password_step(second, staff["admin"])
    assert enter_code(second, totp.at(clock.now)) == 401


def test_a_recovery_code_works_once(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    database: Database,
    clock: Clock,
) -> None:
    _totp, codes = _enrol(as_role("compliance"), clock)
    client = console_app()
    _password_step(client, staff["compliance"])
    assert enter_code(client, codes[3].upper()) == 303  # case and dashes do not matter
    assert _logged_in(client)
    again = console_app()
    _password_step(again, staff["compliance"])
    assert enter_code(again, codes[3]) == 401
    assert enter_code(again, codes[4].replace("-", "")) == 303
    assert "8 unused recovery codes left" in again.get("/console/two-factor").text
    assert ("login", "password and recovery code") in _actions(database)


def _both(client: TestClient, path: str, **data: str) -> httpx2.Response:
    return client.post(path, data={"csrf": csrf_of(client, "/console/two-factor"), **data})


def test_new_recovery_codes_replace_the_old_and_need_the_password_and_a_code(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    clock: Clock,
) -> None:
    client = as_role("marketer")
    totp, old = _enrol(client, clock)
    clock.advance(seconds=30)
    path = "/console/two-factor/recovery-codes"
    for data in (
        {"password": PASSWORD},  # no code
        {"password": PASSWORD, "code": "1" * 65},
        {"password": "not my password", "code": totp.at(clock.now)},
        {"code": totp.at(clock.now)},  # no password
        {"password": PASSWORD, "code": "000000" if totp.at(clock.now) != "000000" else "1"},
    ):
        wrong = _both(client, path, **data)
        assert wrong.status_code == 422, data
        assert not CODES_RE.findall(wrong.text)
    answer = _both(client, path, password=PASSWORD, code=totp.at(clock.now))
    assert answer.status_code == 200
    new = CODES_RE.findall(answer.text)
    assert len(new) == 10
    assert not set(new) & set(old)
    # The code that allowed it is spent like a login code.
    again = _both(client, path, password=PASSWORD, code=totp.at(clock.now))
    assert again.status_code == 422
    other = console_app()
    _password_step(other, staff["marketer"])
    assert enter_code(other, old[0]) == 401
    assert enter_code(other, new[0]) == 303


def test_turning_it_off_needs_the_password_and_a_code_and_ends_other_sessions(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    database: Database,
    clock: Clock,
) -> None:
    client = as_role("marketer")
    totp, codes = _enrol(client, clock)
    clock.advance(seconds=30)
    other = console_app()
    _password_step(other, staff["marketer"])
    assert enter_code(other, totp.at(clock.now)) == 303
    assert _logged_in(other)
    clock.advance(seconds=30)
    path = "/console/two-factor/disable"
    before = _actions(database)
    for data in (
        {"password": PASSWORD},  # the password alone no longer does it
        {"password": "not my password", "code": totp.at(clock.now)},
        {"password": PASSWORD, "code": codes[0][:-1]},
        {"password": PASSWORD, "code": ""},
    ):
        assert _both(client, path, **data).status_code == 422, data
    assert _actions(database) == before
    with database.read() as session:
        assert session.scalar(select(TwoFactor)) is not None
    assert _logged_in(other)
    # A recovery code does as well as an authenticator code.
    off = _both(client, path, password=PASSWORD, code=codes[0])
    assert off.status_code == 200  # followed to the page, which says it is off
    assert "is <strong>off</strong>" in off.text
    with database.read() as session:
        assert session.scalar(select(TwoFactor)) is None
        assert session.scalar(select(RecoveryCode)) is None
    assert _logged_in(client)  # this session stays
    assert not _logged_in(other)  # every other one ends
    plain = console_app()
    _password_step(plain, staff["marketer"])
    assert _logged_in(plain)
    assert ("two-factor.off", "password and recovery code") in _actions(database)


def test_wrong_codes_to_turn_it_off_are_rate_limited(
    as_role: Callable[[str], TestClient], database: Database, clock: Clock
) -> None:
    client = as_role("compliance")
    totp, _codes = _enrol(client, clock)
    clock.advance(seconds=30)
    wrong = "000000" if totp.at(clock.now) != "000000" else "111111"
    path = "/console/two-factor/disable"
    for _ in range(5):
        assert _both(client, path, password=PASSWORD, code=wrong).status_code == 422
    limited = _both(client, path, password=PASSWORD, code=totp.at(clock.now))
    assert limited.status_code == 429
    with database.read() as session:
        assert session.scalar(select(TwoFactor)) is not None


def test_wrong_codes_end_the_pending_login_and_are_rate_limited(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    clock: Clock,
) -> None:
    totp, _codes = _enrol(as_role("admin"), clock)
    clock.advance(seconds=30)
    wrong = "000000" if totp.at(clock.now) != "000000" else "111111"
    client = console_app()
    _password_step(client, staff["admin"])
    for _ in range(5):
        assert enter_code(client, wrong) == 401
    # This pending login is used up: even the right code needs the password again.
    assert enter_code(client, totp.at(clock.now)) == 303  # the code page sends to login
    assert not _logged_in(client)
    # And the account's code attempts are over the limit for a while, on any browser.
    fresh = console_app()
    _password_step(fresh, staff["admin"])
    assert enter_code(fresh, totp.at(clock.now)) == 429
    assert not _logged_in(fresh)


def test_a_pending_login_expires(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    clock: Clock,
) -> None:
    totp, _codes = _enrol(as_role("admin"), clock)
    client = console_app()
    _password_step(client, staff["admin"])
    page = client.get("/console/login/code")
    clock.advance(minutes=5)
    answer = client.post(
        "/console/login/code",
        data={"csrf": hidden(page.text, "csrf"), "code": totp.at(clock.now)},
    )
    assert answer.status_code == 401
    assert "enter your password again" in answer.text
    assert not _logged_in(client)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        ({"code": "123456"}, 403),  # no token
        ({"csrf": "forged", "code": "123456"}, 403),
        ({"code": ""}, 422),
        ({"code": "1" * 65}, 422),
    ],
)
def test_bad_code_forms_change_nothing(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    database: Database,
    clock: Clock,
    data: dict[str, str],
    status: int,
) -> None:
    _enrol(as_role("admin"), clock)
    client = console_app()
    _password_step(client, staff["admin"])
    page = client.get("/console/login/code")
    if "csrf" not in data and status != 403:
        data = {**data, "csrf": hidden(page.text, "csrf")}
    before = _actions(database)
    assert client.post("/console/login/code", data=data).status_code == status
    assert _actions(database) == before
    with database.read() as session:
        pending = session.scalar(select(PendingLogin))
        assert pending is not None
        assert pending.failures == 0


def test_the_code_page_without_a_pending_login(console_app: Callable[[], TestClient]) -> None:
    client = console_app()
    answer = client.get("/console/login/code", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


def _required_app(settings: Settings, database: Database, clock: Clock) -> TestClient:
    required = dataclasses.replace(settings, console_require_two_factor=("admin",))
    app = create_app(required, database)
    app.state.console_sessions = SessionService(required, clock)
    return TestClient(app)


def test_required_for_admins_only_the_enrolment_page_opens(
    settings: Settings, database: Database, staff: dict[str, str], clock: Clock
) -> None:
    with _required_app(settings, database, clock) as admin:
        log_in(admin, staff["admin"])
        for path in ("/console/", "/console/audit", "/console/leads", "/console/sessions"):
            answer = admin.get(path, follow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"] == "/console/two-factor"
        page = admin.get("/console/two-factor")
        assert "Your role requires two-factor login" in page.text
        # POSTs elsewhere are turned away too, before they change anything.
        refused = admin.post(
            "/console/sessions/end-all", data={"csrf": hidden(page.text, "csrf")},
            follow_redirects=False,
        )  # fmt: skip
        assert refused.headers["location"] == "/console/two-factor"
        totp, _codes = _enrol(admin, clock)
        assert admin.get("/console/audit").status_code == 200
        # Turning it off is replacing it: the page says so, and afterwards only the
        # enrolment page opens again until a new authenticator is set up.
        page = admin.get("/console/two-factor")
        assert "Replace the authenticator" in page.text
        clock.advance(seconds=30)
        off = admin.post(
            "/console/two-factor/disable",
            data={"csrf": hidden(page.text, "csrf"), "password": PASSWORD,
                  "code": totp.at(clock.now)},
            follow_redirects=False,
        )  # fmt: skip
        assert off.headers["location"] == "/console/two-factor"
        answer = admin.get("/console/audit", follow_redirects=False)
        assert answer.headers["location"] == "/console/two-factor"
        assert "Your role requires two-factor login" in admin.get("/console/two-factor").text
        _enrol(admin, clock)
        assert admin.get("/console/audit").status_code == 200
    with _required_app(settings, database, clock) as marketer:
        log_in(marketer, staff["marketer"])
        assert marketer.get("/console/", follow_redirects=False).status_code == 200


def test_the_requirement_setting() -> None:
    assert Settings.from_env({}).console_require_two_factor == ()
    env = {"ZEROPARTY_CONSOLE_REQUIRE_TWO_FACTOR": "Admin, compliance"}
    assert Settings.from_env(env).console_require_two_factor == ("admin", "compliance")
    with pytest.raises(SettingsError, match="unknown role 'root'"):
        Settings.from_env({"ZEROPARTY_CONSOLE_REQUIRE_TWO_FACTOR": "admin,root"})
    assert Settings.from_env({}).console_idle_minutes == 30
    assert Settings.from_env({"ZEROPARTY_CONSOLE_IDLE_MINUTES": "5"}).console_idle_minutes == 5
    with pytest.raises(SettingsError):
        Settings.from_env({"ZEROPARTY_CONSOLE_IDLE_MINUTES": "later"})


def test_user_reset_can_remove_a_lost_authenticator(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    cli_env: Settings,
    capsys: pytest.CaptureFixture[str],
    database: Database,
    clock: Clock,
) -> None:
    from zeroparty.cli import main

    client = as_role("admin")
    _enrol(client, clock)
    before = len(_actions(database))
    assert main(["user", "reset", staff["admin"]]) == 0  # the authenticator stays
    capsys.readouterr()
    with database.read() as session:
        assert session.scalar(select(TwoFactor)) is not None
        admin_id = session.scalar(select(StaffUser.id).where(StaffUser.email == staff["admin"]))
    assert not _logged_in(client)
    assert _actions(database)[before:] == [("session.end-all", "cli")]
    with database.read() as session:
        row = session.scalars(select(StaffAuditEntry).order_by(StaffAuditEntry.id.desc())).first()
        assert row is not None
        assert row.user_id == admin_id
    before = len(_actions(database))
    assert main(["user", "reset", staff["admin"], "--two-factor"]) == 0
    assert _actions(database)[before:] == [("session.end-all", "cli"), ("two-factor.off", "cli")]
    out = capsys.readouterr()
    assert "two-factor login removed" in out.err
    link = out.out.strip().removeprefix(cli_env.base_url)
    with database.read() as session:
        assert session.scalar(select(TwoFactor)) is None
        assert session.scalar(select(RecoveryCode)) is None
    new = "a brand new passphrase"
    console_app().post(link, data={"password": new, "password_repeat": new})
    log_in(console_app(), staff["admin"], new)  # straight in: no authenticator any more


def test_the_same_code_sent_for_two_logins_at_the_same_moment_is_accepted_once(
    as_role: Callable[[str], TestClient],
    console_app: Callable[[], TestClient],
    staff: dict[str, str],
    database: Database,
    clock: Clock,
) -> None:
    """Two pending logins of one account send the same valid code at once (a code seen
    over a shoulder, raced against its owner): one login gets it, the other is refused."""
    totp, _codes = _enrol(as_role("admin"), clock)
    clock.advance(seconds=30)
    clients = [console_app(), console_app()]
    tokens = []
    for client in clients:
        _password_step(client, staff["admin"])
        tokens.append(hidden(client.get("/console/login/code").text, "csrf"))
    code = totp.at(clock.now)
    barrier = threading.Barrier(2)

    def send(i: int) -> int:
        barrier.wait()
        return (
            clients[i]
            .post(
                "/console/login/code",
                data={"csrf": tokens[i], "code": code},
                follow_redirects=False,
            )
            .status_code
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = list(pool.map(send, range(2)))
    assert sorted(statuses) == [303, 401]
    assert sorted(_logged_in(client) for client in clients) == [False, True]
    actions = _actions(database)
    assert actions.count(("login", "password and totp")) == 1
    assert actions.count(("login.refused", "wrong code")) == 1


def test_a_code_accepted_by_another_transaction_meanwhile_is_refused(
    as_role: Callable[[str], TestClient], database: Database, clock: Clock
) -> None:
    """The interleaving the race above can hit, made certain: the login's transaction
    read the authenticator (as it does to look up the account) before another accepted
    the code and committed. Only PostgreSQL runs two write transactions at once."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    totp, _codes = _enrol(as_role("admin"), clock)
    clock.advance(seconds=30)
    code = totp.at(clock.now)
    with database.read() as session:
        admin_id = session.scalar(select(TwoFactor.user_id))
    assert admin_id is not None
    with database.write() as first:
        assert accounts.identity(first, admin_id) is not None  # loads the row, unlocked
        with database.write() as second:
            assert two_factor.check_code(second, admin_id, code, clock.now) == "totp"
        assert two_factor.check_code(first, admin_id, code, clock.now) is None
    with database.read() as session:
        factor = session.get(TwoFactor, admin_id)
        assert factor is not None
        assert factor.last_time_step == totp.timecode(clock.now)


def test_a_step_is_spent_by_a_conditional_update(
    as_role: Callable[[str], TestClient], database: Database, clock: Clock
) -> None:
    """Whatever a transaction read earlier, the write that spends a step matches no row
    once that step (or a later one) is spent: the row count decides, not the copy read."""
    totp, _codes = _enrol(as_role("admin"), clock)
    clock.advance(seconds=30)
    step = totp.timecode(clock.now)
    with database.read() as session:
        read_before = session.scalar(select(TwoFactor))
    assert read_before is not None
    assert read_before.last_time_step == step - 1
    with database.write() as session:
        assert two_factor.check_code(session, read_before.user_id, totp.at(clock.now), clock.now)
    with database.write() as session:
        assert not two_factor._spend_step(session, read_before, step)
        assert not two_factor._spend_step(session, read_before, step - 1)
    with database.read() as session:
        factor = session.get(TwoFactor, read_before.user_id)
        assert factor is not None
        assert factor.last_time_step == step
