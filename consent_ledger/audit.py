"""The whole ledger check: chain, head, projection and signed checkpoints.

What ``zeroparty ledger verify`` and the console's ledger health both run, so the two
always give the same answer. The contract: the audit passes only if everything that
can be checked was checked and held. Stored checkpoints that this host cannot check
(no checkpoint key, or a key that did not sign them) fail the audit with the reason,
because a ledger rewritten together with its checkpoints passes every other check;
only an explicit ``skip_checkpoints`` (``--skip-checkpoints``) lets it pass without
them, and the outcome then says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from consent_ledger.models import LedgerCheckpoint
from consent_ledger.proofs import transparency
from consent_ledger.proofs.checkpoints import (
    CheckpointError,
    VerifierKey,
    parse_verifier_key,
    verify_checkpoint,
)
from consent_ledger.verify import ProgressCallback, VerifyReport, verify_database
from zeroparty.db import Database
from zeroparty.settings import Settings


@dataclass(frozen=True, slots=True)
class LedgerAudit:
    report: VerifyReport
    checkpoint_problem: transparency.CheckpointProblem | None
    unchecked: str | None
    """Why checkpoints that exist were not checked (a failure), else ``None``."""
    stored_checkpoints: int
    skipped: bool

    @property
    def ok(self) -> bool:
        return self.report.ok and self.checkpoint_problem is None and self.unchecked is None

    def outcome(self) -> str:
        """The one line that says how it went (what the CLI prints and the console shows)."""
        report, problem = self.report, self.checkpoint_problem
        if report.problem is not None:
            where = f"entry {report.problem.seq}" if report.problem.seq is not None else "ledger"
            return f"LEDGER BROKEN at {where} ({report.problem.kind}): {report.problem.message}"
        if problem is not None:
            where = f"checkpoint {problem.size}" if problem.size else "checkpoint"
            return f"LEDGER BROKEN at {where} (checkpoint): {problem.message}"
        if self.unchecked is not None:
            return (
                f"CHECKPOINTS NOT CHECKED: {self.unchecked}. The chain alone cannot show "
                "that the ledger was not rewritten; "
                f"{transparency.KEY_HINT}, or run `zeroparty ledger verify "
                "--skip-checkpoints` to check without them"
            )
        if self.skipped:
            checkpoints = (
                f"checkpoints SKIPPED (--skip-checkpoints): {self.stored_checkpoints:,} "
                "stored checkpoint(s) not checked"
            )
        elif self.stored_checkpoints:
            checkpoints = f"checkpoints consistent ({self.stored_checkpoints:,} stored)"
        else:
            checkpoints = "no checkpoints stored yet"
        return (
            f"ledger intact: {report.entries:,} entries, head {report.head_hash}, "
            f"{report.projection_rows:,} consent states agree, {checkpoints}"
        )


def trusted_keys(settings: Settings) -> tuple[list[VerifierKey], str | None]:
    """The keys checkpoints are checked with (this host's, then the retired ones), and
    why this host's own key is missing, if it is. Never creates a key."""
    retired = [parse_verifier_key(text) for text in settings.checkpoint_retired_keys]
    try:
        signer = transparency.load_signer(settings, create=False)
    except CheckpointError as exc:
        return retired, str(exc)
    return [signer.verifier_key, *retired], None


def _mirrored_notes(path: Path) -> tuple[list[str], str | None]:
    """The notes of the checkpoint mirror file (none while it does not exist: nothing
    was mirrored yet on this host), or why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], None
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"the checkpoint mirror file {path} cannot be read: {exc}"
    return (transparency.split_notes(text) if text.strip() else []), None


def _mirrored_but_not_stored(
    connection: Connection, keys: list[VerifierKey], settings: Settings, notes: list[str]
) -> transparency.CheckpointProblem | None:
    """A mirrored checkpoint whose row is gone: every note is mirrored only after its row
    was committed, and checkpoint rows are append-only, so rows were deleted."""
    stored = {c.size for c in transparency.list_checkpoints(connection, limit=1_000_000)}
    for note in notes:
        size = verify_checkpoint(note, keys, origin=settings.ledger_origin).size
        if size not in stored:
            return transparency.CheckpointProblem(
                size,
                f"the checkpoint of {size} entries in the mirror file "
                f"{settings.checkpoint_mirror_file} is not stored (checkpoint rows were "
                "deleted)",
            )
    return None


def _stored_count(database: Database) -> int:
    table = LedgerCheckpoint.__table__
    with database.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def audit_ledger(
    database: Database,
    settings: Settings,
    progress: ProgressCallback | None = None,
    *,
    external: Sequence[str] = (),
    skip_checkpoints: bool = False,
) -> LedgerAudit:
    """Verify everything (see the module docstring). ``external`` notes (checkpoints
    kept outside the database) are checked even when stored ones are skipped. Unless
    stored ones are skipped, the checkpoint mirror file's notes are external notes too
    (``ZEROPARTY_CHECKPOINT_MIRROR_FILE``), and each must still be stored: deleting
    every checkpoint row (or rewriting them with the history) is then caught."""
    stored = _stored_count(database)
    keys, missing_key = trusted_keys(settings)
    unchecked: str | None = None
    mirrored: list[str] = []
    if settings.checkpoint_mirror_file is not None and not skip_checkpoints:
        mirrored, unreadable = _mirrored_notes(settings.checkpoint_mirror_file)
        if unreadable is not None:
            unchecked = unreadable
    external = [*external, *mirrored]
    if (stored and not skip_checkpoints) or external:
        if not keys:
            what = (
                f"{stored:,} stored checkpoint(s)"
                if stored and not skip_checkpoints
                else "the given checkpoints"
            )
            unchecked = f"{what} cannot be checked: {missing_key}"
        elif stored and not skip_checkpoints:
            with database.connect() as connection:
                latest = transparency.latest_checkpoint(connection)
            assert latest is not None
            try:
                verify_checkpoint(latest.note, keys, origin=settings.ledger_origin)
            except CheckpointError as exc:
                if "no signature by a trusted key" in str(exc):
                    names = ", ".join(f"{key.name}+{key.key_id:08x}" for key in keys)
                    unchecked = (
                        f"{stored:,} stored checkpoint(s) cannot be checked: the latest (of "
                        f"{latest.size} entries) has no signature by this host's keys ({names})"
                    )
    check = unchecked is None and bool((stored and not skip_checkpoints) or external)
    heads: list[transparency.SignedHead] = []
    checkpoint_problem = None
    if check:
        # Signatures first; the chain walk then recomputes the tree at their sizes.
        with database.connect() as connection:
            heads, checkpoint_problem = transparency.signed_heads(
                connection,
                keys,
                settings.ledger_origin,
                list(external),
                include_stored=not skip_checkpoints,
            )
    sizes = {size for size, _ in heads} if check else None
    report = verify_database(settings.database_url, progress, tree_sizes=sizes)
    if checkpoint_problem is None and check and mirrored:
        with database.connect() as connection:
            checkpoint_problem = _mirrored_but_not_stored(connection, keys, settings, mirrored)
    if report.problem is None and checkpoint_problem is None and check:
        with database.connect() as connection:
            checkpoint_problem = transparency.check_heads(connection, heads, report.tree)
    return LedgerAudit(report, checkpoint_problem, unchecked, stored, skip_checkpoints)
