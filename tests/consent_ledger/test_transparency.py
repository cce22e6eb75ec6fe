"""Signed checkpoints of the ledger, kept in the database and outside it.

``test_checkpoints.py`` tests the note format and signatures on their own; here they
are made from a real ledger (``consent_ledger.proofs.transparency``), produced on schedule
(by hand and by the app's background job), mirrored to a file, guarded by triggers,
and checked by ``zeroparty ledger verify``. The attacker of the tampering tests has the
database to themselves (triggers dropped or disabled) but not the signing key's past:
a checkpoint saved outside the database before the attack must expose it.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table, delete, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DatabaseError
from starlette.testclient import TestClient

import consent_ledger.wiring
from consent_ledger.entries import seal
from consent_ledger.models import (
    ConsentEvent,
    ConsentEvidence,
    LedgerCheckpoint,
    LedgerHead,
    MerkleNode,
)
from consent_ledger.proofs import merkle, transparency, tree
from consent_ledger.proofs.checkpoints import (
    CheckpointError,
    CheckpointSigner,
    parse_verifier_key,
    verify_checkpoint,
)
from consent_ledger.state import rebuild_projection
from consent_ledger.stored import entry_select, hashed_values
from consent_ledger.verify import verify_ledger
from tests.consent_ledger.test_tree import grow, reference_leaves, reference_root
from zeroparty import cli
from zeroparty.app import create_app
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings

_cp, _ev, _evd, _head, _nodes = (
    cast(Table, model.__table__)
    for model in (LedgerCheckpoint, ConsentEvent, ConsentEvidence, LedgerHead, MerkleNode)
)
APPEND_ONLY = "append-only"


@pytest.fixture
def signer(settings: Settings) -> CheckpointSigner:
    return transparency.load_signer(settings)


@pytest.fixture
def ledger_cli(cli_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The in-process CLI on the test database, with the test's key file and origin
    (``cli_env`` leaves both at their defaults: a key file in the working directory)."""
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_KEY_FILE", str(cli_env.checkpoint_key_file))
    monkeypatch.setenv("ZEROPARTY_BASE_URL", cli_env.base_url)
    return cli_env


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def checkpoint(database: Database, settings: Settings, signer: CheckpointSigner) -> str:
    made = transparency.make_checkpoint(database, settings, signer)
    assert made is not None
    return made.note


def stored_sizes(database: Database) -> list[int]:
    with database.read() as session:
        return [c.size for c in transparency.list_checkpoints(session.connection())]


def check(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    external: Sequence[str] = (),
) -> transparency.CheckpointProblem | None:
    keys = transparency.verifier_keys(settings, signer)
    with database.connect() as connection:
        return transparency.verify_checkpoints(
            connection, keys, settings.ledger_origin, list(external)
        )


def insert_checkpoint(
    database: Database, signer: CheckpointSigner, origin: str, size: int, age: timedelta
) -> None:
    """Store a genuine checkpoint made ``age`` ago: time is controlled by the row, not
    by the clock (the table refuses UPDATE, so a row cannot be aged afterwards)."""
    with database.write() as session:
        connection = session.connection()
        root = tree.root(connection, size)
        connection.execute(
            insert(_cp).values(
                size=size,
                root=root.hex(),
                note=signer.sign_checkpoint(origin, size, root),
                key_name=signer.key_name,
                created_at=utcnow() - age,
            )
        )


# --- the signing key ----------------------------------------------------------------------


def test_key_file_is_created_once_private_and_reused(settings: Settings) -> None:
    path = settings.checkpoint_key_file
    assert not path.exists()
    first = transparency.load_signer(settings)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+")
    again = transparency.load_signer(settings, create=False)
    assert again.verifier_key.encode() == first.verifier_key.encode()
    assert first.key_name == settings.ledger_origin == "testserver/consent-ledger"


def test_pem_key_file_is_read_under_the_log_name(settings: Settings) -> None:
    pem_signer = CheckpointSigner.generate("ignored")
    settings.checkpoint_key_file.write_bytes(pem_signer.to_pem())
    loaded = transparency.load_signer(settings)
    assert loaded.key_name == settings.ledger_origin
    assert loaded.verifier_key.public_key.public_bytes_raw() == (
        pem_signer.verifier_key.public_key.public_bytes_raw()
    )


def test_missing_key_is_not_created_when_told_not_to(settings: Settings) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint key"):
        transparency.load_signer(settings, create=False)
    assert not settings.checkpoint_key_file.exists()


@pytest.mark.parametrize("content", ["", "not a key", "PRIVATE+KEY+x+00000000+AAAA"])
def test_unreadable_key_file_is_refused(settings: Settings, content: str) -> None:
    settings.checkpoint_key_file.write_text(content)
    with pytest.raises(CheckpointError):
        transparency.load_signer(settings)
    assert settings.checkpoint_key_file.read_text() == content


# --- making checkpoints -------------------------------------------------------------------


def test_make_checkpoint_signs_the_ledger_as_it_is(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    leaves = reference_leaves(grow(database, 300))
    made = transparency.make_checkpoint(database, settings, signer)
    assert made is not None
    assert (made.size, made.root, made.key_name) == (
        300,
        reference_root(leaves, 300).hex(),
        settings.ledger_origin,
    )
    head = verify_checkpoint(made.note, [signer.verifier_key], origin=settings.ledger_origin)
    assert (head.size, head.root) == (300, reference_root(leaves, 300))
    with database.read() as session:
        connection = session.connection()
        assert transparency.latest_checkpoint(connection) == made
        assert transparency.checkpoint_at(connection, 300) == made
        assert transparency.checkpoint_at(connection, 299) is None
        # The tree was extended on the way: tile 0 is stored.
        assert tree.extend_tree(connection) == 0
        assert connection.execute(select(_nodes.c.index)).scalars().all() == [0]


def test_nothing_new_makes_no_checkpoint(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    grow(database, 3)
    first = checkpoint(database, settings, signer)
    assert transparency.make_checkpoint(database, settings, signer) is None
    grow(database, 1)
    second = checkpoint(database, settings, signer)
    assert first != second
    assert stored_sizes(database) == [4, 3]


def test_empty_ledger_is_not_checkpointed(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    assert transparency.make_checkpoint(database, settings, signer) is None
    assert stored_sizes(database) == []


def test_history_is_listed_newest_first_in_pages(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    for _ in range(5):
        grow(database, 2)
        checkpoint(database, settings, signer)
    with database.read() as session:
        connection = session.connection()
        assert [c.size for c in transparency.list_checkpoints(connection)] == [10, 8, 6, 4, 2]
        assert [c.size for c in transparency.list_checkpoints(connection, limit=2)] == [10, 8]
        page = transparency.list_checkpoints(connection, limit=2, before=8)
        assert [c.size for c in page] == [6, 4]


# --- on schedule --------------------------------------------------------------------------


def due(database: Database, settings: Settings) -> bool:
    return transparency.checkpoint_due(database, settings)


def test_due_after_n_entries(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    every3 = dataclasses.replace(settings, checkpoint_every_entries=3, checkpoint_every_minutes=60)
    assert not due(database, every3)  # empty ledger: nothing to sign
    grow(database, 1)
    assert due(database, every3)  # never checkpointed
    checkpoint(database, every3, signer)
    assert not due(database, every3)
    grow(database, 2)
    assert not due(database, every3)
    grow(database, 1)
    assert due(database, every3)
    checkpoint(database, every3, signer)
    assert not due(database, every3)
    assert stored_sizes(database) == [4, 1]


@pytest.mark.parametrize(
    ("age_minutes", "expected"), [(0, False), (9, False), (10, True), (60 * 24, True)]
)
def test_due_after_t_minutes(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    age_minutes: int,
    expected: bool,
) -> None:
    hourly = dataclasses.replace(
        settings, checkpoint_every_entries=1000, checkpoint_every_minutes=10
    )
    grow(database, 2)
    insert_checkpoint(database, signer, settings.ledger_origin, 2, timedelta(minutes=age_minutes))
    assert not due(database, hourly)  # however old, nothing new to sign
    grow(database, 1)
    assert due(database, hourly) is expected


def test_every_zero_minutes_means_every_new_entry(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    always = dataclasses.replace(settings, checkpoint_every_minutes=0)
    grow(database, 1)
    checkpoint(database, always, signer)
    assert not due(database, always)
    grow(database, 1)
    assert due(database, always)


def test_background_job_makes_checkpoints(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consent_ledger.wiring, "CHECKPOINT_POLL_SECONDS", 0.05)
    every2 = dataclasses.replace(settings, checkpoint_every_entries=2)
    grow(database, 3)
    app = create_app(every2, database, background=True)
    with TestClient(app):
        assert wait_for(lambda: stored_sizes(database) == [3])
        grow(database, 1)
        time.sleep(0.3)  # several polls: one entry is not due yet
        assert stored_sizes(database) == [3]
        grow(database, 1)
        assert wait_for(lambda: stored_sizes(database) == [5, 3])
    with database.read() as session:
        latest = transparency.latest_checkpoint(session.connection())
    assert latest is not None
    signer = transparency.load_signer(settings, create=False)
    assert verify_checkpoint(latest.note, [signer.verifier_key]).size == 5


def test_no_background_job_unless_asked(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consent_ledger.wiring, "CHECKPOINT_POLL_SECONDS", 0.05)
    grow(database, 3)
    with TestClient(create_app(settings, database)):
        time.sleep(0.3)
    assert stored_sizes(database) == []


def wait_for(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


# --- the mirror outside the database ------------------------------------------------------


def test_mirror_file_gets_every_note(
    database: Database, settings: Settings, signer: CheckpointSigner, tmp_path: Path
) -> None:
    mirrored = dataclasses.replace(settings, checkpoint_mirror_file=tmp_path / "mirror.txt")
    grow(database, 2)
    first = checkpoint(database, mirrored, signer)
    grow(database, 2)
    second = checkpoint(database, mirrored, signer)
    assert transparency.make_checkpoint(database, mirrored, signer) is None
    assert (tmp_path / "mirror.txt").read_text() == first + "\n" + second + "\n"


def test_mirror_failure_does_not_lose_the_checkpoint(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = dataclasses.replace(settings, checkpoint_mirror_file=tmp_path / "no-such-dir" / "m")
    grow(database, 2)
    made = transparency.make_checkpoint(database, broken, signer)
    assert made is not None
    assert stored_sizes(database) == [2]
    assert "not mirrored" in caplog.text


def test_mirror_file_is_a_valid_external_checkpoint(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    tmp_path: Path,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's advice: keep the mirror, later pass it to ``--checkpoint``."""
    mirror = tmp_path / "mirror.txt"
    mirrored = dataclasses.replace(settings, checkpoint_mirror_file=mirror)
    for _ in range(3):
        grow(database, 2)
        checkpoint(database, mirrored, signer)
    code, out, _ = run_cli(capsys, "ledger", "verify", "--quiet", "--checkpoint", str(mirror))
    assert (code, out.startswith("ledger intact")) == (0, True), out
    # ... and a mirror holding a forged note among genuine ones fails.
    text_ = mirror.read_text()
    forged = text_.replace("\n4\n", "\n5\n", 1)
    assert forged != text_
    mirror.write_text(forged)
    code, out, _ = run_cli(capsys, "ledger", "verify", "--quiet", "--checkpoint", str(mirror))
    assert code == 1, out
    assert "LEDGER BROKEN" in out


# --- append-only --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_checkpoints SET size = size + 1",
        "UPDATE ledger_checkpoints SET note = 'forged'",
        "UPDATE ledger_checkpoints SET created_at = created_at",
        "DELETE FROM ledger_checkpoints",
        "DELETE FROM ledger_checkpoints WHERE size = 2",
    ],
)
def test_checkpoints_cannot_be_changed_or_deleted(
    database: Database, settings: Settings, signer: CheckpointSigner, statement: str
) -> None:
    grow(database, 2)
    checkpoint(database, settings, signer)
    with database.read() as session:
        before = transparency.list_checkpoints(session.connection())
    with database.engine.connect() as connection:
        with pytest.raises(DatabaseError, match=APPEND_ONLY):
            connection.execute(text(statement))
        connection.rollback()
    if database.dialect == "postgresql":
        with database.engine.connect() as connection:
            with pytest.raises(DatabaseError, match=APPEND_ONLY):
                connection.execute(text("TRUNCATE ledger_checkpoints"))
            connection.rollback()
    with database.read() as session:
        assert transparency.list_checkpoints(session.connection()) == before


def test_a_size_already_published_is_not_signed_again(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    """Another worker published this size a moment ago: nothing new is stored."""
    grow(database, 2)
    insert_checkpoint(database, signer, settings.ledger_origin, 1, timedelta(0))
    other = CheckpointSigner.generate(settings.ledger_origin)
    insert_checkpoint(database, other, settings.ledger_origin, 2, timedelta(0))
    assert transparency.make_checkpoint(database, settings, signer) is None
    assert stored_sizes(database) == [2, 1]


# --- verification, untampered -------------------------------------------------------------


def test_stored_and_external_checkpoints_verify(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    notes = []
    for count in (1, 255, 1, 300):  # sizes 1, 256, 257, 557
        grow(database, count)
        notes.append(checkpoint(database, settings, signer))
    grow(database, 10)  # the ledger grew past the last checkpoint
    assert check(database, settings, signer, notes) is None
    for number, note in enumerate(notes):
        (tmp_path / f"cp{number}.txt").write_text(note)
    argv = [arg for n in range(4) for arg in ("--checkpoint", str(tmp_path / f"cp{n}.txt"))]
    code, out, _ = run_cli(capsys, "ledger", "verify", "--quiet", *argv)
    assert code == 0, out
    assert "checkpoints consistent" in out


def test_rotated_key_keeps_old_checkpoints_verifiable(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    ledger_cli: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grow(database, 3)
    old_note = checkpoint(database, settings, signer)
    # Rotation as the README says: a new key file, the old public key retired.
    settings.checkpoint_key_file.unlink()
    retired = (signer.verifier_key.encode(),)
    rotated = dataclasses.replace(settings, checkpoint_retired_keys=retired)
    new_signer = transparency.load_signer(rotated)
    assert new_signer.verifier_key.key_id != signer.verifier_key.key_id
    grow(database, 2)
    checkpoint(database, rotated, new_signer)
    assert check(database, rotated, new_signer, [old_note]) is None
    problem = check(database, settings, new_signer, [old_note])  # old key forgotten
    assert problem is not None
    assert "no signature by a trusted key" in problem.message
    monkeypatch.setenv("ZEROPARTY_CHECKPOINT_RETIRED_KEYS", retired[0])
    code, out, _ = run_cli(capsys, "ledger", "verify", "--quiet")
    assert code == 0, out


# --- tampering, against a checkpoint held outside the database ----------------------------


@contextmanager
def tampering(database: Database) -> Iterator[Connection]:
    """A transaction with the append-only guards out of the way, committed at the end."""
    with database.engine.begin() as connection:
        for table in ("consent_events", "ledger_checkpoints"):
            if database.dialect == "sqlite":
                connection.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
                connection.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
            else:
                connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        yield connection


def rewrite_history(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    seq: int,
    *,
    drop_nodes: bool = True,
) -> None:
    """Forge entry ``seq`` (a withdrawal becomes a grant, or the reverse) and cover it up
    as well as the database allows: the chain recomputed from there on, the head, the
    projection, the stored tree and every stored checkpoint redone (signed afresh with
    the real key), so that the database alone says all is well."""
    with tampering(database) as connection:
        rows = connection.execute(entry_select().order_by(_ev.c.seq)).all()
        running = rows[seq - 1][1]  # prev_hash of the forged entry
        for row in rows[seq - 1 :]:
            values = hashed_values(row)
            values["prev_hash"] = running
            changes: dict[str, Any] = {"prev_hash": running}
            if values["seq"] == seq:
                values["action"] = "withdrawn" if values["action"] == "granted" else "granted"
                changes["action"] = values["action"]
            running = seal(values)
            changes["hash"] = running
            connection.execute(update(_ev).where(_ev.c.seq == values["seq"]).values(**changes))
        connection.execute(update(_head).values(hash=running))
        sizes = [int(s) for s in connection.execute(select(_cp.c.size)).scalars()]
        connection.execute(delete(_cp))
        if drop_nodes:
            connection.execute(delete(_nodes))
    with database.write() as session:
        rebuild_projection(session)
    resign(database, settings, signer, sizes)


def resign(
    database: Database, settings: Settings, signer: CheckpointSigner, sizes: list[int]
) -> None:
    with database.write() as session:
        tree.extend_tree(session.connection())
    for size in sorted(sizes):
        insert_checkpoint(database, signer, settings.ledger_origin, size, timedelta(0))


def truncate(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    keep: int,
    *,
    drop_nodes: bool = True,
) -> None:
    """Delete every entry after ``keep`` and cover it up: head, projection, tree and the
    stored checkpoints that named the lost entries."""
    with tampering(database) as connection:
        connection.execute(delete(_evd).where(_evd.c.seq > keep))
        connection.execute(delete(_ev).where(_ev.c.seq > keep))
        last = connection.execute(select(_ev.c.hash).where(_ev.c.seq == keep)).scalar_one()
        connection.execute(update(_head).values(seq=keep, hash=last))
        sizes = [int(s) for s in connection.execute(select(_cp.c.size)).scalars()]
        connection.execute(delete(_cp))
        if drop_nodes:
            connection.execute(delete(_nodes))
    with database.write() as session:
        rebuild_projection(session)
    resign(database, settings, signer, [size for size in sizes if size <= keep])


@pytest.fixture
def saved(database: Database, settings: Settings, signer: CheckpointSigner, tmp_path: Path) -> Path:
    """A ledger of 300 entries with checkpoints at 100 and 300, the latter saved to a
    file outside the database (as a regulator or a witness would keep it)."""
    grow(database, 100)
    checkpoint(database, settings, signer)
    grow(database, 200)
    note = checkpoint(database, settings, signer)
    grow(database, 20)
    path = tmp_path / "saved-checkpoint.txt"
    path.write_text(note)
    return path


def verify_with(capsys: pytest.CaptureFixture[str], *files: Path) -> tuple[int, str]:
    argv = [arg for path in files for arg in ("--checkpoint", str(path))]
    code, out, err = run_cli(capsys, "ledger", "verify", "--quiet", *argv)
    assert "Traceback" not in err
    return code, out


@pytest.mark.usefixtures("ledger_cli")
def test_untampered_ledger_passes_against_the_saved_checkpoint(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert check(database, settings, signer, [saved.read_text()]) is None
    assert verify_with(capsys, saved)[0] == 0


def _forge_signature(note: str) -> str:
    body, _, signature_line = note.rstrip("\n").rpartition("\n")
    prefix, _, encoded = signature_line.rpartition(" ")
    middle = len(encoded) // 2
    flipped = encoded[:middle] + ("A" if encoded[middle] != "A" else "B") + encoded[middle + 1 :]
    return f"{body}\n{prefix} {flipped}\n"


def _forge_root(note: str) -> str:
    lines = note.split("\n")
    lines[2] = ("A" if lines[2][0] != "A" else "B") + lines[2][1:]
    return "\n".join(lines)


def _forge_size(note: str) -> str:
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) - 1)
    return "\n".join(lines)


@pytest.mark.usefixtures("ledger_cli")
@pytest.mark.parametrize(
    ("forge", "message"),
    [
        pytest.param(_forge_signature, "does not verify", id="signature-flipped"),
        pytest.param(_forge_root, "does not verify", id="root-changed"),
        pytest.param(_forge_size, "does not verify", id="size-changed"),
        pytest.param(lambda note: note.rpartition("\n\n")[0] + "\n", "no signature", id="unsigned"),
        pytest.param(lambda note: "", "no signature", id="empty-file"),
    ],
)
def test_forged_signature_is_detected(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
    forge: Any,
    message: str,
) -> None:
    saved.write_text(forge(saved.read_text()))
    problem = check(database, settings, signer, [saved.read_text()])
    assert problem is not None
    assert message in problem.message
    code, out = verify_with(capsys, saved)
    assert code == 1
    assert "LEDGER BROKEN" in out
    assert message in out


@pytest.mark.usefixtures("ledger_cli")
@pytest.mark.parametrize("name", ["same", "other"])
def test_checkpoint_from_another_key_is_detected(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    """A true tree head, signed by someone else (under our log's name or their own)."""
    other = CheckpointSigner.generate(settings.ledger_origin if name == "same" else "mallory")
    with database.read() as session:
        root = tree.root(session.connection(), 320)
    saved.write_text(other.sign_checkpoint(settings.ledger_origin, 320, root))
    problem = check(database, settings, signer, [saved.read_text()])
    assert problem is not None
    assert "no signature by a trusted key" in problem.message
    code, out = verify_with(capsys, saved)
    assert code == 1
    assert "no signature by a trusted key" in out


@pytest.mark.usefixtures("ledger_cli")
def test_checkpoint_of_another_log_is_detected(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with database.read() as session:
        root = tree.root(session.connection(), 320)
    saved.write_text(signer.sign_checkpoint("elsewhere.example/log", 320, root))
    code, out = verify_with(capsys, saved)
    assert code == 1
    assert "elsewhere.example/log" in out


@pytest.mark.usefixtures("ledger_cli")
@pytest.mark.parametrize("seq", [1, 150, 299, 300])
def test_rewritten_history_is_detected(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
    seq: int,
) -> None:
    rewrite_history(database, settings, signer, seq)
    # The cover-up is complete: the database alone finds nothing wrong ...
    with database.connect() as connection:
        assert verify_ledger(connection).ok
    assert check(database, settings, signer) is None
    assert stored_sizes(database) == [300, 100]
    assert verify_with(capsys)[0] == 0
    # ... but the checkpoint kept outside does.
    problem = check(database, settings, signer, [saved.read_text()])
    assert problem is not None
    assert (problem.size, "history was rewritten" in problem.message) == (300, True)
    code, out = verify_with(capsys, saved)
    assert code == 1
    assert "LEDGER BROKEN at checkpoint 300" in out
    assert "history was rewritten" in out


@pytest.mark.usefixtures("ledger_cli")
@pytest.mark.parametrize("seq", [1, 200, 256])
def test_rewritten_history_under_stale_stored_tiles_is_detected(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    seq: int,
) -> None:
    """The stored tiles are derived data: an attacker who rewrites entries and leaves
    them in place must not have the old tile hashes vouch for the new entries."""
    grow(database, 512)
    saved = tmp_path / "saved.txt"
    saved.write_text(checkpoint(database, settings, signer))  # 512 = two whole tiles
    grow(database, 10)
    rewrite_history(database, settings, signer, seq, drop_nodes=False)
    with database.connect() as connection:
        assert verify_ledger(connection).ok
    problem = check(database, settings, signer, [saved.read_text()])
    assert problem is not None
    code, out = verify_with(capsys, saved)
    assert code == 1, out
    assert "LEDGER BROKEN" in out


@pytest.mark.usefixtures("ledger_cli")
@pytest.mark.parametrize("keep", [1, 100, 299])
def test_truncated_log_is_detected(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
    keep: int,
) -> None:
    truncate(database, settings, signer, keep)
    with database.connect() as connection:
        assert verify_ledger(connection).ok
    assert check(database, settings, signer) is None
    problem = check(database, settings, signer, [saved.read_text()])
    assert problem is not None
    assert "entries were removed" in problem.message
    code, out = verify_with(capsys, saved)
    assert code == 1
    assert "entries were removed" in out


@pytest.mark.usefixtures("ledger_cli")
def test_truncated_then_regrown_log_is_detected(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Entries deleted and others appended in their place, past the saved size."""
    truncate(database, settings, signer, 250)
    grow(database, 100)
    checkpoint(database, settings, signer)
    assert check(database, settings, signer) is None
    code, out = verify_with(capsys, saved)
    assert code == 1
    assert "history was rewritten" in out


@pytest.mark.usefixtures("ledger_cli")
@pytest.mark.parametrize("what", ["note", "size"])
def test_tampered_stored_checkpoint_is_detected(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
) -> None:
    with tampering(database) as connection:
        if what == "note":
            connection.execute(
                update(_cp).where(_cp.c.size == 100).values(note=_forge_root(saved.read_text()))
            )
        else:
            connection.execute(update(_cp).where(_cp.c.size == 100).values(size=99))
    problem = check(database, settings, signer)
    assert problem is not None
    assert problem.size in (99, 100)
    assert verify_with(capsys)[0] == 1


@pytest.mark.usefixtures("ledger_cli")
def test_unreadable_checkpoint_file_is_a_clean_error(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "ledger", "verify", "--quiet", "--checkpoint", str(tmp_path / "missing.txt")
    )
    assert code == 2
    assert "missing.txt" in err
    assert "Traceback" not in err
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run_cli(
        capsys, "ledger", "verify", "--quiet", "--checkpoint", str(tmp_path / "binary.txt")
    )
    assert code == 2
    assert "Traceback" not in err


@pytest.mark.usefixtures("ledger_cli")
def test_stored_tree_left_behind_by_a_truncation_is_reported(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    saved: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Even without a checkpoint kept outside: tile hashes over entries that are gone."""
    truncate(database, settings, signer, 100, drop_nodes=False)
    problem = check(database, settings, signer)
    assert problem is not None
    assert "covers entries the ledger does not have" in problem.message
    code, out = verify_with(capsys)
    assert code == 1
    assert "stored tree was altered" in out


@pytest.mark.usefixtures("ledger_cli")
@pytest.mark.parametrize("height", [8, 9])
def test_altered_stored_tree_is_reported(
    database: Database,
    settings: Settings,
    signer: CheckpointSigner,
    capsys: pytest.CaptureFixture[str],
    height: int,
) -> None:
    """A wrong subtree hash makes wrong proofs: ``ledger verify`` says so."""
    grow(database, 600)
    checkpoint(database, settings, signer)
    with database.write() as session:  # merkle_nodes is derived data, not append-only
        session.execute(
            update(_nodes)
            .where(_nodes.c.height == height, _nodes.c.index == 0)
            .values(hash="ab" * 32)
        )
    problem = check(database, settings, signer)
    assert problem is not None
    assert f"(height {height}, index 0) does not match the entries" in problem.message
    assert verify_with(capsys)[0] == 1


NOTE_1 = "log\n1\nroot\n\n\u2014 key sig\n"
NOTE_2 = "log\n2\nroot\n\n\u2014 key sig\n\u2014 witness sig\n"


@pytest.mark.parametrize(
    ("content", "notes"),
    [
        pytest.param("", [""], id="empty"),
        pytest.param("not a note\n", ["not a note\n"], id="garbage"),
        pytest.param(NOTE_1, [NOTE_1], id="one-note"),
        pytest.param(NOTE_1 + "\n", [NOTE_1], id="one-mirrored-note"),
        pytest.param(NOTE_1 + "\n" + NOTE_2 + "\n", [NOTE_1, NOTE_2], id="mirror-of-two"),
        pytest.param(NOTE_1 + "\n\n\n" + NOTE_2, [NOTE_1, NOTE_2], id="extra-blank-lines"),
        pytest.param(NOTE_1 + "\njunk\n", [NOTE_1 + "\njunk\n"], id="note-then-junk"),
        pytest.param(NOTE_1[:-1], [NOTE_1[:-1]], id="no-final-newline"),
    ],
)
def test_split_notes(content: str, notes: list[str]) -> None:
    """A file of several notes (the mirror) is split; anything else is left whole for
    the note parser to reject with its own message."""
    assert transparency.split_notes(content) == notes


def test_verify_checkpoints_proves_consistency_between_checkpoints(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> None:
    """Each stored checkpoint is consistent with the next: the consistency proofs the
    ledger serves verify between every pair of published heads."""
    heads = []
    for count in (5, 251, 1, 300):
        grow(database, count)
        note = checkpoint(database, settings, signer)
        heads.append(verify_checkpoint(note, [signer.verifier_key]))
    with database.read() as session:
        connection = session.connection()
        for old in heads:
            for new in heads:
                if old.size <= new.size:
                    proof = tree.consistency_proof(connection, old.size, new.size)
                    merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    assert check(database, settings, signer) is None


def test_verifier_keys_include_the_retired_ones(settings: Settings) -> None:
    signer = transparency.load_signer(settings)
    old = CheckpointSigner.generate("old-name")
    both = dataclasses.replace(settings, checkpoint_retired_keys=(old.verifier_key.encode(),))
    keys = transparency.verifier_keys(both, signer)
    assert [k.encode() for k in keys] == [signer.verifier_key.encode(), old.verifier_key.encode()]
    broken = dataclasses.replace(settings, checkpoint_retired_keys=("not-a-key",))
    with pytest.raises(CheckpointError):
        transparency.verifier_keys(broken, signer)
    assert parse_verifier_key(keys[1].encode()) == keys[1]
