"""Staff accounts at the service level: password hashes, pruning old login attempts,
roles."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from console import accounts, passwords
from console.jobs import background_jobs
from console.models import LoginAttempt
from console.roles import Permission, may
from zeroparty.db import Database, utcnow
from zeroparty.errors import Conflict, InvalidInput


def test_password_hashes() -> None:
    stored = passwords.hash_password("a long enough passphrase")
    assert stored.startswith("scrypt$32768$8$1$")
    assert passwords.verify_password("a long enough passphrase", stored)
    assert not passwords.verify_password("a long enough passphrasE", stored)
    assert not passwords.verify_password("anything", None)
    assert not passwords.verify_password("anything", "scrypt$broken")
    assert not passwords.verify_password("x" * 2000, stored)
    with pytest.raises(passwords.WeakPassword):
        passwords.check_strength("x" * 2000)


def test_old_login_attempts_are_forgotten(database: Database) -> None:
    old = utcnow() - timedelta(hours=2)
    with database.write() as session:
        session.add(LoginAttempt(account_key="a" * 64, client_key="b" * 64, attempted_at=old))
        session.add(LoginAttempt(account_key="c" * 64, client_key="d" * 64))
    (job,) = background_jobs(database)
    job._run()
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 1


def test_accounts_are_unique_and_roles_known(database: Database) -> None:
    with database.write() as session:
        accounts.create_user(session, "Ann@Staff.example", "admin")
    with database.write() as session, pytest.raises(Conflict):
        accounts.create_user(session, "ann@staff.example", "marketer")
    with database.write() as session, pytest.raises(InvalidInput):
        accounts.create_user(session, "bob@staff.example", "root")
    with database.write() as session, pytest.raises(InvalidInput):
        accounts.create_user(session, "not an address", "admin")
    with database.write() as session, pytest.raises(InvalidInput, match="before the @"):
        accounts.create_user(session, "jörg@staff.example", "admin")  # mailed in ASCII


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        ("admin", Permission.VIEW_AUDIT_LOG, True),
        ("compliance", Permission.VIEW_AUDIT_LOG, False),
        ("compliance", Permission.EXPORT, True),
        ("compliance", Permission.RUN_VERIFICATION, True),
        ("marketer", Permission.VIEW_EVIDENCE, False),
        ("marketer", Permission.EXPORT, False),
        ("marketer", Permission.VIEW_VERSIONS, True),
        ("nobody", Permission.VIEW_LEADS, False),
    ],
)
def test_permissions(role: str, permission: Permission, allowed: bool) -> None:
    assert may(role, permission) is allowed
