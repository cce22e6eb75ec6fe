"""The checkpoint key across hosts: from the environment, never forked, and a ledger
verify that never passes silently when stored checkpoints cannot be checked.

A host whose checkpoint key (with the retired ones) does not verify the latest stored
checkpoint refuses to make a key, to sign and to start; ``ledger verify`` fails (exit 1)
when stored checkpoints exist that it cannot check, unless ``--skip-checkpoints`` says
so; an altered ``root`` column fails it. Start-up refusals and the two-host deployment
are driven as an operator would: ``zeroparty`` processes in folders of their own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import cast

import httpx2
import pytest
from sqlalchemy import Table, update

from consent_ledger import transparency
from consent_ledger.checkpoints import CheckpointSigner
from consent_ledger.models import LedgerCheckpoint
from console import health
from console.accounts import create_user
from console.models import VerificationRun
from tests.conftest import TEST_SECRET, DatabaseFactory
from tests.consent_ledger.test_transparency import rewrite_history, tampering
from tests.consent_ledger.test_tree import grow
from tests.fixtures.hosts import Host
from zeroparty import cli
from zeroparty.db import Database
from zeroparty.settings import Settings

_cp = cast(Table, LedgerCheckpoint.__table__)
HINT = (
    "copy the checkpoint key file from a host that signed them, or set "
    "ZEROPARTY_CHECKPOINT_KEY (see docs/operations.md)"
)
NOT_CHECKED_TAIL = (
    ". The chain alone cannot show that the ledger was not rewritten; "
    f"{HINT}, or run `zeroparty ledger verify --skip-checkpoints` to check without them\n"
)


@pytest.fixture
def signer(settings: Settings) -> CheckpointSigner:
    return transparency.load_signer(settings)


@pytest.fixture
def ledger_cli(cli_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_KEY_FILE", str(cli_env.checkpoint_key_file))
    monkeypatch.delenv("ZEROPARTY_CHECKPOINT_KEY", raising=False)
    monkeypatch.delenv("ZEROPARTY_CHECKPOINT_RETIRED_KEYS", raising=False)
    return cli_env


def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(["ledger", "verify", "--quiet", *argv])
    return code, capsys.readouterr().out


def checkpointed(database: Database, settings: Settings, signer: CheckpointSigner) -> int:
    grow(database, 5)
    made = transparency.make_checkpoint(database, settings, signer)
    assert made is not None
    return made.size


# --- the key: from the environment, and never a second one ---------------------------------


def test_the_environment_key_takes_precedence_over_the_file(
    settings: Settings, signer: CheckpointSigner
) -> None:
    other = CheckpointSigner.generate(settings.ledger_origin)
    from_env = dataclasses.replace(settings, checkpoint_key=other.to_signer_key())
    assert transparency.load_signer(from_env).verifier_key == other.verifier_key
    pem = dataclasses.replace(settings, checkpoint_key=other.to_pem().decode())
    assert transparency.load_signer(pem).verifier_key == other.verifier_key


def test_a_malformed_environment_key_is_refused_by_name(settings: Settings) -> None:
    broken = dataclasses.replace(settings, checkpoint_key="PRIVATE+KEY+x+00000000+AAAA")
    with pytest.raises(transparency.CheckpointError, match=r"^ZEROPARTY_CHECKPOINT_KEY: "):
        transparency.load_signer(broken)
    assert not settings.checkpoint_key_file.exists()


def test_no_key_file_while_checkpoints_exist_makes_no_new_key(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    size = checkpointed(database, settings, signer)
    settings.checkpoint_key_file.unlink()
    with pytest.raises(transparency.CheckpointKeyRefused) as refused:
        transparency.load_signer(settings, database)
    assert str(refused.value) == (
        f"checkpoints are stored (the latest, of {size} entries, signed by "
        f"{signer.key_name}) but this host has no checkpoint key (no ZEROPARTY_CHECKPOINT_KEY, "
        f"no file at {settings.checkpoint_key_file}); a new key would fork the log: {HINT}"
    )
    assert not settings.checkpoint_key_file.exists()


def test_a_fresh_database_still_gets_a_private_key_file(
    database: Database, settings: Settings
) -> None:
    signer = transparency.host_signer(database, settings)
    assert settings.checkpoint_key_file.stat().st_mode & 0o777 == 0o600
    assert transparency.load_signer(settings, create=False).verifier_key == signer.verifier_key


def test_a_foreign_key_refuses_to_sign(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    size = checkpointed(database, settings, signer)
    grow(database, 2)
    foreign = CheckpointSigner.generate(settings.ledger_origin)
    with pytest.raises(transparency.CheckpointKeyRefused, match="does not verify the latest"):
        transparency.make_checkpoint(database, settings, foreign)
    with pytest.raises(transparency.CheckpointKeyRefused):
        transparency.host_signer(
            database, dataclasses.replace(settings, checkpoint_key=foreign.to_signer_key())
        )
    with database.read() as session:
        assert [c.size for c in transparency.list_checkpoints(session.connection())] == [size]
    # A rotation names the old key as retired: then the new key may sign.
    rotated = dataclasses.replace(settings, checkpoint_retired_keys=(signer.verifier_key.encode(),))
    assert transparency.make_checkpoint(database, rotated, foreign) is not None


def test_a_rotation_with_the_old_key_retired_may_make_a_new_key(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    """docs/operations.md's rotation: retire the old public key, then move the key file
    away; the next start makes a new key, which then signs on top of the old ones."""
    checkpointed(database, settings, signer)
    settings.checkpoint_key_file.unlink()
    rotated = dataclasses.replace(settings, checkpoint_retired_keys=(signer.verifier_key.encode(),))
    new = transparency.host_signer(database, rotated)
    assert new.verifier_key != signer.verifier_key
    assert settings.checkpoint_key_file.stat().st_mode & 0o777 == 0o600
    grow(database, 2)
    assert transparency.make_checkpoint(database, rotated, new) is not None


# --- start-up refusals, as an operator meets them ------------------------------------------


def _stored_checkpoint(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> tuple[int, Host]:
    """A ledger with a checkpoint, and a host folder pointed at it (base URL as the
    checkpoints' origin; signing keys given, so only the checkpoint key is at issue)."""
    size = checkpointed(database, settings, signer)
    return size, Host(
        settings.checkpoint_key_file.parent / "other-host",
        ZEROPARTY_DATABASE_URL=settings.database_url,
        ZEROPARTY_BASE_URL=settings.base_url,
        ZEROPARTY_SECRET_KEYS=TEST_SECRET,
    )


def test_serve_refuses_a_foreign_checkpoint_key(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    size, host = _stored_checkpoint(database, settings, signer)
    foreign = CheckpointSigner.generate(settings.ledger_origin)
    host.env["ZEROPARTY_CHECKPOINT_KEY"] = foreign.to_signer_key()
    result = host.run("serve", "--port", "9")
    assert result.returncode == 2
    assert result.stderr == (
        f"zeroparty: refusing to start: this host's checkpoint key {foreign.key_name} (id "
        f"{foreign.verifier_key.key_id:08x}) does not verify the latest stored checkpoint "
        f"(of {size} entries, signed by {signer.key_name}: note has no signature by a "
        f"trusted key); {HINT}, and list a rotated-out public key in "
        "ZEROPARTY_CHECKPOINT_RETIRED_KEYS\n"
    )


def test_serve_refuses_without_a_key_file_when_checkpoints_exist(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    size, host = _stored_checkpoint(database, settings, signer)
    result = host.run("serve", "--port", "9")
    assert result.returncode == 2
    assert result.stderr == (
        f"zeroparty: refusing to start: checkpoints are stored (the latest, of {size} entries, "
        f"signed by {signer.key_name}) but this host has no checkpoint key (no "
        "ZEROPARTY_CHECKPOINT_KEY, no file at zeroparty-checkpoint.key); a new key would "
        f"fork the log: {HINT}\n"
    )
    assert not (host.folder / "zeroparty-checkpoint.key").exists()
    # `ledger checkpoint` refuses the same way, and makes no key either.
    checkpoint = host.run("ledger", "checkpoint")
    assert checkpoint.returncode == 2
    assert "a new key would fork the log" in checkpoint.stderr
    assert not (host.folder / "zeroparty-checkpoint.key").exists()


# --- ledger verify never passes silently ---------------------------------------------------


def test_verify_fails_without_the_key_and_passes_only_when_told_to_skip(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpointed(database, settings, signer)
    assert verify(capsys)[0] == 0
    settings.checkpoint_key_file.unlink()
    code, out = verify(capsys)
    assert code == 1
    assert out == (
        "CHECKPOINTS NOT CHECKED: 1 stored checkpoint(s) cannot be checked: no checkpoint "
        f"key (no ZEROPARTY_CHECKPOINT_KEY, no file at {settings.checkpoint_key_file})"
        + NOT_CHECKED_TAIL
    )
    assert not settings.checkpoint_key_file.exists()  # verify never makes a key
    code, out = verify(capsys, "--skip-checkpoints")
    assert code == 0
    assert out.startswith("ledger intact: 5 entries")
    assert out.endswith(
        "checkpoints SKIPPED (--skip-checkpoints): 1 stored checkpoint(s) not checked\n"
    )


def test_a_rewrite_with_the_key_file_removed_fails(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The issue's case: history rewritten, stored checkpoints redone, key file gone."""
    checkpointed(database, settings, signer)
    rewrite_history(database, settings, signer, 2)
    settings.checkpoint_key_file.unlink()
    code, out = verify(capsys)
    assert code == 1
    assert out.startswith("CHECKPOINTS NOT CHECKED: ")


def test_verify_fails_with_a_key_that_did_not_sign_the_checkpoints(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = checkpointed(database, settings, signer)
    other = CheckpointSigner.generate(settings.ledger_origin)
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_KEY", other.to_signer_key())
    code, out = verify(capsys)
    assert code == 1
    assert out == (
        f"CHECKPOINTS NOT CHECKED: 1 stored checkpoint(s) cannot be checked: the latest (of "
        f"{size} entries) has no signature by this host's keys "
        f"({other.key_name}+{other.verifier_key.key_id:08x})" + NOT_CHECKED_TAIL
    )
    assert verify(capsys, "--skip-checkpoints")[0] == 0


def test_an_altered_root_column_fails_verify(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    size = checkpointed(database, settings, signer)
    with tampering(database) as connection:
        connection.execute(update(_cp).where(_cp.c.size == size).values(root="00" * 32))
    code, out = verify(capsys)
    assert code == 1
    assert out == (
        f"LEDGER BROKEN at checkpoint {size} (checkpoint): the stored root column differs "
        "from the root in the signed note (the checkpoint row was altered)\n"
    )


def test_console_health_reports_what_the_cli_does(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The console's ledger health runs the same audit: the same failure, word for word."""
    checkpointed(database, settings, signer)
    settings.checkpoint_key_file.unlink()
    code, out = verify(capsys)
    assert code == 1
    with database.write() as session:
        user = create_user(session, "auditor@example.com", "compliance")
        session.flush()
        run_id = health.start_run(session, user.id).id
    health.run_verification(database, settings, run_id)
    with database.read() as session:
        run = session.get_one(VerificationRun, run_id)
        assert (run.status, run.problem) == ("failed", out.strip())


# --- several hosts on one PostgreSQL database ---------------------------------------------


def _grant(base_url: str, api_key: str, email: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    notices = httpx2.get(f"{base_url}/api/notices?locale=en", headers=headers).json()["notices"]
    notice = next(n for n in notices if n["purpose"] == "profiling")
    answer = httpx2.post(
        f"{base_url}/api/consent",
        headers=headers,
        json={
            "email": email,
            "purpose": "profiling",
            "action": "granted",
            "notice_sha256": notice["notice_sha256"],
            "source": "several hosts test",
            "evidence": {"host": base_url},
        },
    )
    assert answer.status_code == 201, answer.text


def test_two_hosts_share_one_checkpoint_key_and_a_third_is_refused(
    postgres_factory: DatabaseFactory, tmp_path: Path
) -> None:
    url = postgres_factory.new_url()
    try:
        shared = {
            "ZEROPARTY_DATABASE_URL": url,
            "ZEROPARTY_SECRET_KEYS": TEST_SECRET,
            # Behind one load balancer every host has the same public URL: the log's name.
            "ZEROPARTY_CHECKPOINT_ORIGIN": "consent.example.com/consent-ledger",
            "ZEROPARTY_API_KEY_CACHE_SECONDS": "0",
        }
        first = Host(tmp_path / "first", **shared)
        with first.serve() as (first_url, _log):
            key_file = first.folder / "zeroparty-checkpoint.key"
            assert key_file.stat().st_mode & 0o777 == 0o600
            second = Host(
                tmp_path / "second",
                **shared,
                ZEROPARTY_CHECKPOINT_KEY=key_file.read_text().strip(),
            )
            with second.serve() as (second_url, _log2):
                made = first.run("apikey", "create", "site")
                assert made.returncode == 0, made.stderr
                api_key = made.stdout.strip()
                _grant(first_url, api_key, "ann@example.com")
                _grant(second_url, api_key, "bob@example.com")
                assert first.run("ledger", "checkpoint").returncode == 0
                _grant(second_url, api_key, "cat@example.com")
                _grant(first_url, api_key, "dan@example.com")
                signed = second.run("ledger", "checkpoint")
                assert signed.returncode == 0, signed.stderr
            assert not (second.folder / "zeroparty-checkpoint.key").exists()
        for host in (first, second):
            result = host.run("ledger", "verify", "--quiet")
            assert result.returncode == 0, result.stdout + result.stderr
            assert "checkpoints consistent (2 stored)" in result.stdout
        third = Host(
            tmp_path / "third",
            **shared,
            ZEROPARTY_CHECKPOINT_KEY=CheckpointSigner.generate(
                "consent.example.com/consent-ledger"
            ).to_signer_key(),
        )
        refused = third.run("serve", "--port", "9")
        assert refused.returncode == 2
        assert refused.stderr.startswith("zeroparty: refusing to start: this host's checkpoint")
        assert refused.stderr.count("\n") == 1
        fresh = Host(tmp_path / "fourth", **shared)  # no key at all: no new key either
        assert fresh.run("serve", "--port", "9").returncode == 2
        assert not (fresh.folder / "zeroparty-checkpoint.key").exists()
    finally:
        postgres_factory.drop(url)
