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
import threading
from pathlib import Path
from typing import cast

import httpx2
import pytest
from sqlalchemy import Table, delete, insert, text, update
from starlette.testclient import TestClient

from consent_ledger.models import LedgerCheckpoint
from consent_ledger.proofs import transparency, tree
from consent_ledger.proofs.checkpoints import CheckpointSigner
from consent_ledger.subjects import find_subject_id
from console import health
from console.accounts import create_user
from console.models import VerificationRun
from tests.conftest import TEST_SECRET, DatabaseFactory
from tests.consent_ledger.test_transparency import rewrite_history, tampering
from tests.consent_ledger.test_tree import grow
from tests.factories import record
from tests.fixtures.hosts import Host
from tests.preference_center.conftest import EMAIL, issue, open_session
from zeroparty import cli
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
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


# --- two keys racing for a fresh log ------------------------------------------------------


def _race(database: Database, settings: Settings, signers: list[CheckpointSigner]) -> list[str]:
    """Each signer in a thread of its own: grow the ledger, make a checkpoint, round after
    round, each round started together; a refusal ends the race. How each host ended."""
    start = threading.Barrier(len(signers))
    ended = ["" for _ in signers]

    def host(index: int) -> None:
        for _ in range(8):
            try:
                start.wait()
            except threading.BrokenBarrierError:
                ended[index] = "stopped: the other host was refused"
                return
            grow(database, 1)
            try:
                transparency.make_checkpoint(database, settings, signers[index])
            except transparency.CheckpointKeyRefused as exc:
                ended[index] = f"refused: {exc}"
                start.abort()
                return
        ended[index] = "signed every round"

    threads = [threading.Thread(target=host, args=(i,)) for i in range(len(signers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ended


def test_two_keys_racing_on_a_fresh_log_store_checkpoints_under_one_key(
    database: Database, settings: Settings
) -> None:
    """Two hosts that each made a key of their own on an empty log: whichever stores the
    first checkpoint owns the log; the other is refused (by the check before signing,
    or by the one under the insert's lock), and nothing of it is stored."""
    grow(database, 3)
    keys = [CheckpointSigner.generate(settings.ledger_origin) for _ in range(2)]
    ended = _race(database, settings, keys)
    with database.read() as session:
        stored = transparency.list_checkpoints(session.connection())
    assert stored, ended
    signed = [[transparency._signed_by(c, key) for c in stored] for key in keys]
    owners = [i for i in range(2) if any(signed[i])]
    assert len(owners) == 1, f"checkpoints stored under both keys (the log forked): {ended}"
    winner = owners[0]
    loser = 1 - winner
    assert all(signed[winner])
    assert ended[loser].startswith(
        f"refused: this host's checkpoint key {keys[loser].key_name} (id "
        f"{keys[loser].verifier_key.key_id:08x}) does not verify the latest stored checkpoint"
    ), ended
    assert not ended[winner].startswith("refused"), ended


def test_a_host_that_lost_the_race_refuses_to_sign_with_a_clear_503(
    database: Database, settings: Settings
) -> None:
    """A host started on the empty log with a key of its own, after which another host's
    checkpoint was stored: it signs nothing more (no receipt, no proof, no checkpoint)
    and says why as JSON to machines; people get the unavailable page."""
    record(database, EMAIL, "profiling")
    with database.read() as session:
        lead = find_subject_id(session, EMAIL)
    assert lead is not None
    grow(database, 2)
    own = CheckpointSigner.generate(settings.ledger_origin)
    app = create_app(dataclasses.replace(settings, checkpoint_key=own.to_signer_key()), database)
    winner = CheckpointSigner.generate(settings.ledger_origin)
    stored = transparency.make_checkpoint(database, settings, winner)
    assert stored is not None
    reason = (
        f"this host cannot sign receipts or checkpoints: this host's checkpoint key "
        f"{own.key_name} (id {own.verifier_key.key_id:08x}) does not verify the latest "
        f"stored checkpoint (of {stored.size} entries, signed by {winner.key_name}: note has "
        f"no signature by a trusted key); {HINT}, and list a rotated-out public key in "
        "ZEROPARTY_CHECKPOINT_RETIRED_KEYS"
    )
    with TestClient(app) as client:
        for path in ("/ledger/checkpoint", "/ledger/proof/consistency?first=1&second=3"):
            answer = client.get(path, headers={"Accept": "application/json"})
            assert answer.status_code == 503
            assert answer.json() == {
                "error": {"code": "checkpoint_key_refused", "message": reason, "fields": {}}
            }
        open_session(client, issue(settings, database, lead))
        receipts = client.get("/p/receipts", headers={"Accept": "application/json"})
        assert receipts.status_code == 503
        assert receipts.json()["error"]["message"] == reason
        page = client.get("/p/receipts", headers={"Accept": "text/html"})
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        # A lead cannot act on the operator's fix: the page says the service is
        # unavailable and changed nothing; the reason is in the JSON and the log.
        assert "Temporarily unavailable" in page.text
        assert "ZEROPARTY_CHECKPOINT_KEY" not in page.text
    with database.read() as session:
        assert [c.note for c in transparency.list_checkpoints(session.connection())] == [
            stored.note
        ]


# --- the mirror file is checked by default --------------------------------------------------


def test_verify_checks_the_mirror_file_so_deleted_checkpoint_rows_fail(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    mirror = tmp_path / "mirror.txt"
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_MIRROR_FILE", str(mirror))
    assert verify(capsys)[0] == 0  # configured, nothing mirrored yet
    mirrored = dataclasses.replace(settings, checkpoint_mirror_file=mirror)
    checkpointed(database, mirrored, signer)
    size = checkpointed(database, mirrored, signer)
    code, out = verify(capsys)
    assert (code, out.endswith("checkpoints consistent (2 stored)\n")) == (0, True), out
    with tampering(database) as connection:
        connection.execute(delete(_cp))
    code, out = verify(capsys)
    assert code == 1
    assert out == (
        f"LEDGER BROKEN at checkpoint {size - 5} (checkpoint): the checkpoint of {size - 5} "
        f"entries in the mirror file {mirror} is not stored (checkpoint rows were deleted)\n"
    )
    # Only an explicit skip leaves the mirror out, and says checkpoints were skipped.
    code, out = verify(capsys, "--skip-checkpoints")
    assert code == 0
    assert "checkpoints SKIPPED" in out


def test_a_rewrite_with_every_checkpoint_row_deleted_fails_on_the_mirror(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    mirror = tmp_path / "mirror.txt"
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_MIRROR_FILE", str(mirror))
    size = checkpointed(
        database, dataclasses.replace(settings, checkpoint_mirror_file=mirror), signer
    )
    rewrite_history(database, settings, signer, 2)
    with tampering(database) as connection:
        connection.execute(delete(_cp))
    code, out = verify(capsys)
    assert code == 1
    assert out.startswith(f"LEDGER BROKEN at checkpoint {size} (checkpoint): ")


def test_a_checkpoint_committed_after_the_early_check_is_seen_under_the_lock(
    database: Database, settings: Settings
) -> None:
    """The window the check before signing leaves open, played out on PostgreSQL without
    timing: another key's checkpoint (of fewer entries, so no unique size hides it) is
    being stored while this host reads "nothing stored", signs, and reaches its insert;
    the insert waits for the checkpoint lock, then sees that checkpoint and is refused."""
    if database.dialect != "postgresql":
        pytest.skip("on SQLite the write lock is taken before the early check already")
    grow(database, 4)
    first, second = (CheckpointSigner.generate(settings.ledger_origin) for _ in range(2))
    with database.write() as session:
        tree.extend_tree(session.connection(), 4)
    with database.read() as session:
        root = tree.root(session.connection(), 4)
    grow(database, 1)
    outcome: list[BaseException | object] = []

    def other_host() -> None:
        try:
            outcome.append(transparency.make_checkpoint(database, settings, second))
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE NOT granted "
        "AND relation = 'ledger_checkpoints'::regclass"
    )
    with database.engine.connect() as holder, holder.begin():
        holder.execute(text("LOCK TABLE ledger_checkpoints IN SHARE ROW EXCLUSIVE MODE"))
        holder.execute(
            insert(_cp).values(
                size=4,
                root=root.hex(),
                note=first.sign_checkpoint(settings.ledger_origin, 4, root),
                key_name=first.key_name,
                created_at=utcnow(),
            )
        )
        thread = threading.Thread(target=other_host)
        thread.start()
        with database.engine.connect() as watcher:
            # Until the other host waits for the lock (or, without it, has finished).
            while thread.is_alive() and not watcher.execute(waiting).scalar_one():
                thread.join(0.01)
    thread.join()
    assert len(outcome) == 1
    assert isinstance(outcome[0], transparency.CheckpointKeyRefused), outcome
    with database.read() as session:
        assert [c.size for c in transparency.list_checkpoints(session.connection())] == [4]
