"""Signed checkpoints of the ledger: making, storing, publishing and checking them.

A hash chain shows the ledger was not edited in place, but whoever runs the database
could recompute the whole chain. A checkpoint (C2SP signed note: origin, tree size,
RFC 6962 root, Ed25519 signature) published outside the database fixes a tree head in
time; anyone holding one can later demand a consistency proof that the ledger only grew.

The signing key comes from ``ZEROPARTY_CHECKPOINT_KEY`` or else a file
(``ZEROPARTY_CHECKPOINT_KEY_FILE``, created on first use, mode 0600, only while no
checkpoint is stored); every host of a deployment must share it. Retired public keys
(``ZEROPARTY_CHECKPOINT_RETIRED_KEYS``) keep older checkpoints verifiable after a rotation.
A host whose keys do not verify the latest stored checkpoint refuses to sign
(:class:`CheckpointKeyRefused`) rather than fork the log under a key nobody trusts.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from consent_ledger.models import LedgerCheckpoint
from consent_ledger.proofs import merkle, tree
from consent_ledger.proofs.checkpoints import (
    CheckpointError,
    CheckpointSigner,
    VerifierKey,
    parse_verifier_key,
    verify_checkpoint,
)
from zeroparty.db import Database, utcnow
from zeroparty.settings import Settings

log = logging.getLogger("zeroparty.checkpoints")

_cp = cast(Table, LedgerCheckpoint.__table__)
# One signed note (https://c2sp.org/signed-note): text lines, a blank line, signature
# lines starting with an em dash.
_NOTE = re.compile(r"(?:[^\n]+\n)+\n(?:\u2014 [^\n]*\n)+")


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: str
    note: str
    key_name: str
    created_at: datetime


KEY_HINT = (
    "copy the checkpoint key file from a host that signed them, or set "
    "ZEROPARTY_CHECKPOINT_KEY (see docs/operations.md)"
)


class CheckpointKeyRefused(CheckpointError):
    """This host's checkpoint key did not sign the stored checkpoints, or it has none
    while checkpoints exist: signing now would fork the log under a second key."""


def _parse_signer(text: str, settings: Settings) -> CheckpointSigner:
    text = text.strip()
    if text.startswith("PRIVATE+KEY+"):
        return CheckpointSigner.from_signer_key(text)
    return CheckpointSigner.from_pem(text.encode(), settings.ledger_origin)


def load_signer(
    settings: Settings, database: Database | None = None, *, create: bool = True
) -> CheckpointSigner:
    """The checkpoint signer: ``settings.checkpoint_key`` when set, else the key file.

    Without either, ``create`` makes a new key in the key file (0600), but only while
    no checkpoint is stored in ``database`` (when given), or when the retired keys
    verify the latest one (a rotation): a host that lacks the deployment's key must not
    start a second one (:class:`CheckpointKeyRefused`).
    """
    if settings.checkpoint_key:
        try:
            return _parse_signer(settings.checkpoint_key, settings)
        except CheckpointError as exc:
            raise CheckpointError(f"ZEROPARTY_CHECKPOINT_KEY: {exc}") from exc
    path = settings.checkpoint_key_file
    if path.exists():
        return _parse_signer(path.read_text(encoding="utf-8"), settings)
    if not create:
        raise CheckpointError(f"no checkpoint key (no ZEROPARTY_CHECKPOINT_KEY, no file at {path})")
    if database is not None:
        with database.read() as session:
            latest = latest_checkpoint(session.connection())
        if latest is not None and not _retired_keys_verify(latest, settings):
            raise CheckpointKeyRefused(
                f"checkpoints are stored (the latest, of {latest.size} entries, signed by "
                f"{latest.key_name}) but this host has no checkpoint key (no "
                f"ZEROPARTY_CHECKPOINT_KEY, no file at {path}); a new key would fork the "
                f"log: {KEY_HINT}"
            )
    signer = CheckpointSigner.generate(settings.ledger_origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 in one step: the private key is never readable by others.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it a moment ago: use theirs
        return _parse_signer(path.read_text(encoding="utf-8"), settings)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(signer.to_signer_key() + "\n")
    log.warning("generated a checkpoint signing key at %s: back it up", path)
    return signer


def _retired_keys_verify(latest: StoredCheckpoint, settings: Settings) -> bool:
    """Whether the retired keys alone verify ``latest``: a deliberate rotation (the old
    key retired first), so a new key may be made."""
    keys = [parse_verifier_key(text) for text in settings.checkpoint_retired_keys]
    try:
        verify_checkpoint(latest.note, keys, origin=settings.ledger_origin)
    except CheckpointError:
        return False
    return True


def _check_latest(
    latest: StoredCheckpoint | None, settings: Settings, signer: CheckpointSigner
) -> None:
    if latest is None:
        return
    try:
        verify_checkpoint(
            latest.note, verifier_keys(settings, signer), origin=settings.ledger_origin
        )
    except CheckpointError as exc:
        raise CheckpointKeyRefused(
            f"this host's checkpoint key {signer.key_name} (id "
            f"{signer.verifier_key.key_id:08x}) does not verify the latest stored checkpoint "
            f"(of {latest.size} entries, signed by {latest.key_name}: {exc}); {KEY_HINT}, "
            "and list a rotated-out public key in ZEROPARTY_CHECKPOINT_RETIRED_KEYS"
        ) from exc


def check_signer(connection: Connection, settings: Settings, signer: CheckpointSigner) -> None:
    """Raise :class:`CheckpointKeyRefused` unless ``signer``'s key or a retired key
    verifies the latest stored checkpoint (what ``serve`` checks before it starts)."""
    _check_latest(latest_checkpoint(connection), settings, signer)


def host_signer(database: Database, settings: Settings) -> CheckpointSigner:
    """The signer this host may sign with: :func:`load_signer`, then
    :func:`check_signer`. Raises :class:`CheckpointError` with the reason."""
    signer = load_signer(settings, database)
    with database.read() as session:
        check_signer(session.connection(), settings, signer)
    return signer


class SignerSource:
    """This host's checkpoint signer, loaded on first use and then kept.

    The app is built before it may reach its database (it answers 503 until the
    database is back), and whether a missing key may be created depends on the stored
    checkpoints (:func:`load_signer`): so the key is loaded when something first signs
    or proves, and a database that is down then is the usual 503.

    Every ``get`` also runs :func:`check_signer` until a stored checkpoint signed by
    this very key is seen (from then on every new checkpoint is checked against it
    when stored, in :func:`make_checkpoint`): a host that lost a race for the first
    checkpoint to a host with another key raises :class:`CheckpointKeyRefused` instead
    of signing receipts and proofs with a key the log does not use.
    """

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._signer: CheckpointSigner | None = None
        self._confirmed = False

    def get(self) -> CheckpointSigner:
        if self._signer is None:
            try:
                self._signer = load_signer(self._settings, self._database)
            except CheckpointKeyRefused:
                raise
            except CheckpointError as exc:  # a key that cannot be read: no signing either
                raise CheckpointKeyRefused(f"this host's checkpoint key: {exc}") from exc
        if not self._confirmed:
            with self._database.read() as session:
                latest = latest_checkpoint(session.connection())
            _check_latest(latest, self._settings, self._signer)
            self._confirmed = latest is not None and _signed_by(latest, self._signer)
        return self._signer


def _signed_by(checkpoint: StoredCheckpoint, signer: CheckpointSigner) -> bool:
    try:
        verify_checkpoint(checkpoint.note, [signer.verifier_key])
    except CheckpointError:
        return False
    return True


def verifier_keys(settings: Settings, signer: CheckpointSigner) -> list[VerifierKey]:
    """The current public key and the retired ones still trusted."""
    keys = [signer.verifier_key]
    keys.extend(parse_verifier_key(text) for text in settings.checkpoint_retired_keys)
    return keys


def _row(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(int(row.size), row.root, row.note, row.key_name, row.created_at)


def latest_checkpoint(connection: Connection) -> StoredCheckpoint | None:
    stmt = (
        select(_cp.c.size, _cp.c.root, _cp.c.note, _cp.c.key_name, _cp.c.created_at)
        .order_by(_cp.c.size.desc())
        .limit(1)
    )
    row = connection.execute(stmt).first()
    return _row(row) if row is not None else None


def list_checkpoints(
    connection: Connection, limit: int = 100, before: int | None = None
) -> list[StoredCheckpoint]:
    stmt = select(_cp.c.size, _cp.c.root, _cp.c.note, _cp.c.key_name, _cp.c.created_at)
    if before is not None:
        stmt = stmt.where(_cp.c.size < before)
    stmt = stmt.order_by(_cp.c.size.desc()).limit(limit)
    return [_row(row) for row in connection.execute(stmt)]


def checkpoint_at(connection: Connection, size: int) -> StoredCheckpoint | None:
    stmt = select(_cp.c.size, _cp.c.root, _cp.c.note, _cp.c.key_name, _cp.c.created_at).where(
        _cp.c.size == size
    )
    row = connection.execute(stmt).first()
    return _row(row) if row is not None else None


def _lock_checkpoints(connection: Connection) -> None:
    """Serialise checkpoint inserts across processes until the transaction ends.

    SQLite: write transactions begin IMMEDIATE (:class:`zeroparty.db.Database`), so
    holding one is already the database's single write lock. PostgreSQL: a table lock
    that conflicts with itself (and with every write to the table) but not with readers.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE ledger_checkpoints IN SHARE ROW EXCLUSIVE MODE"))


def make_checkpoint(
    database: Database, settings: Settings, signer: CheckpointSigner
) -> StoredCheckpoint | None:
    """Sign and store a checkpoint of the ledger as it is now.

    Returns ``None`` when the ledger is empty or the newest checkpoint already covers
    every entry; raises :class:`CheckpointKeyRefused` when ``signer`` (with the retired
    keys) does not verify the newest stored checkpoint. Extends the stored tree first, in
    its own transaction, so the slow part never holds a lock that appends wait for. Two
    processes checkpointing the same size store it once. The key is checked once more
    inside the insert's transaction, under the lock every checkpoint insert takes, so two
    hosts with different keys never both store checkpoints (the later one is refused).
    """
    with database.write() as session:
        connection = session.connection()
        size = tree.ledger_size(connection)
        tree.extend_tree(connection, size)
    with database.read() as session:
        connection = session.connection()
        latest = latest_checkpoint(connection)
        if size == 0 or (latest is not None and latest.size >= size):
            return None
        root = tree.root(connection, size)
    _check_latest(latest, settings, signer)  # fail early, before signing anything
    note = signer.sign_checkpoint(settings.ledger_origin, size, root)
    stored = StoredCheckpoint(size, root.hex(), note, signer.key_name, utcnow())
    try:
        with database.write() as session:
            connection = session.connection()
            # The key check again, under the lock every checkpoint insert takes, against
            # what is stored now: of two hosts with different keys racing on a fresh
            # database, the second to get here sees the first one's checkpoint and is
            # refused, so the log never holds checkpoints under two keys.
            _lock_checkpoints(connection)
            latest = latest_checkpoint(connection)
            if latest is not None and latest.size >= size:
                return None  # another process published this size (or more) a moment ago
            _check_latest(latest, settings, signer)
            connection.execute(
                insert(_cp).values(
                    size=stored.size,
                    root=stored.root,
                    note=stored.note,
                    key_name=stored.key_name,
                    created_at=stored.created_at,
                )
            )
    except IntegrityError:
        return None  # another process published this size a moment ago
    _mirror(settings.checkpoint_mirror_file, note)
    return stored


def _mirror(path: Path | None, note: str) -> None:
    """Append the note to a file outside the database (an independent copy)."""
    if path is None:
        return
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(note + "\n")
    except OSError as exc:
        log.error("checkpoint not mirrored to %s: %s", path, exc.strerror)


def split_notes(text: str) -> list[str]:
    """The notes of a file that holds several, one after another, such as the mirror
    file (:func:`_mirror` follows each note with a blank line).

    Text that is not a run of whole notes comes back as it is, in a list of one, so
    :func:`verify_checkpoint` can say what is wrong with it.
    """
    notes: list[str] = []
    position = 0
    while position < len(text):
        match = _NOTE.match(text, position)
        if match is None:
            return [text]
        notes.append(match.group())
        position = match.end()
        while text.startswith("\n", position):
            position += 1
    return notes or [text]


def checkpoint_due(database: Database, settings: Settings) -> bool:
    """Whether N entries or T minutes have passed since the last checkpoint."""
    with database.read() as session:
        connection = session.connection()
        size = tree.ledger_size(connection)
        latest = latest_checkpoint(connection)
    if size == 0:
        return False
    if latest is None:
        return True
    if size <= latest.size:
        return False
    if size - latest.size >= settings.checkpoint_every_entries:
        return True
    return utcnow() - latest.created_at >= timedelta(minutes=settings.checkpoint_every_minutes)


@dataclass(frozen=True, slots=True)
class CheckpointProblem:
    size: int | None
    message: str


SignedHead = tuple[int, bytes]
"""A checkpoint's (size, root), once its signature is checked."""


def signed_heads(
    connection: Connection,
    keys: list[VerifierKey],
    origin: str,
    external: list[str] = (),  # type: ignore[assignment]
    *,
    include_stored: bool = True,
) -> tuple[list[SignedHead], CheckpointProblem | None]:
    """The heads of every stored checkpoint (unless not ``include_stored``) and any
    ``external`` notes, each of which must carry a valid signature by a trusted key,
    name this log, cover no more entries than the ledger has, and (stored ones) keep
    the signed root in their ``root`` column; or the first problem found."""
    size_now = tree.ledger_size(connection)
    stored = (
        sorted(list_checkpoints(connection, limit=1_000_000), key=lambda c: c.size)
        if include_stored
        else []
    )
    notes: list[tuple[int | None, str | None, str]] = [(c.size, c.root, c.note) for c in stored] + [
        (None, None, text) for text in external
    ]
    heads: list[SignedHead] = []
    for stored_size, stored_root, note in notes:
        try:
            checkpoint = verify_checkpoint(note, keys, origin=origin)
        except CheckpointError as exc:
            return heads, CheckpointProblem(stored_size, f"checkpoint signature: {exc}")
        if stored_size is not None and checkpoint.size != stored_size:
            return heads, CheckpointProblem(stored_size, "stored size differs from the signed size")
        # The root column is what the proof routes and the console show: it must be the
        # signed root (and check_heads then holds that to the recomputed tree).
        if stored_root is not None and stored_root != checkpoint.root.hex():
            return heads, CheckpointProblem(
                stored_size,
                "the stored root column differs from the root in the signed note "
                "(the checkpoint row was altered)",
            )
        if checkpoint.size > size_now:
            return heads, CheckpointProblem(
                checkpoint.size,
                f"checkpoint covers {checkpoint.size} entries but the ledger has {size_now} "
                "(entries were removed)",
            )
        heads.append((checkpoint.size, checkpoint.root))
    return heads, None


def check_heads(
    connection: Connection, heads: list[SignedHead], recomputed: tree.TreeCheck | None = None
) -> CheckpointProblem | None:
    """Check signed ``heads`` against the tree recomputed from the entries themselves
    (``recomputed``, from :class:`tree.TreeRebuild`, else :func:`tree.check_tree` here),
    and each against the next for consistency (the ledger only grew between them).

    Roots are never taken from the stored subtree hashes, which are checked on the way:
    someone who can rewrite entries can also leave stale hashes that would still give
    the signed root.
    """
    sizes = {size for size, _ in heads}
    if recomputed is None or any(
        size <= recomputed.entries and size not in recomputed.roots for size in sizes
    ):
        recomputed = tree.check_tree(connection, sizes)
    for size, root in heads:
        actual = recomputed.roots.get(size)
        if actual is None:
            return CheckpointProblem(
                size, f"the ledger has only {recomputed.entries} entries (entries were removed)"
            )
        if actual != root:
            return CheckpointProblem(
                size,
                f"the ledger's first {size} entries no longer have the signed root "
                "(history was rewritten)",
            )
    if recomputed.problem is not None:
        return CheckpointProblem(None, f"{recomputed.problem} (the stored tree was altered)")
    previous: SignedHead | None = None
    for size, root in sorted(heads):
        if previous is not None and previous[0] < size:
            proof = tree.consistency_proof(connection, previous[0], size)
            try:
                merkle.verify_consistency(previous[0], size, proof, previous[1], root)
            except merkle.ProofError as exc:
                return CheckpointProblem(
                    size, f"not consistent with checkpoint {previous[0]}: {exc}"
                )
        previous = (size, root)
    return None


def verify_checkpoints(
    connection: Connection,
    keys: list[VerifierKey],
    origin: str,
    external: list[str] = (),  # type: ignore[assignment]
) -> CheckpointProblem | None:
    """Check every stored checkpoint (and any ``external`` notes) against the ledger:
    :func:`signed_heads`, then :func:`check_heads`. An external note held outside the
    database catches a history rewritten along with its stored checkpoints."""
    heads, problem = signed_heads(connection, keys, origin, external)
    return problem or check_heads(connection, heads)
