"""The ledger's commands: ``zeroparty ledger ...``, ``receipt`` and ``erase``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from zeroparty.cli_support import lead_id, opened_database, opened_ledger
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def cmd_ledger_verify(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger.audit import audit_ledger
    from consent_ledger.proofs import transparency

    def progress(phase: str, done: int, total: int) -> None:
        if not args.quiet:
            print(f"\r{phase}: {done:,}/{total:,} entries", end="", file=sys.stderr, flush=True)

    external: list[str] = []
    for name in args.checkpoint:
        try:
            external += transparency.split_notes(Path(name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: --checkpoint: cannot read {name}: {exc}", file=sys.stderr)
            return 2
    with opened_database(settings) as database:
        audit = audit_ledger(
            database,
            settings,
            progress,
            external=external,
            skip_checkpoints=args.skip_checkpoints,
        )
    if not args.quiet:
        print("\r", end="", file=sys.stderr)
    print(audit.outcome())
    return 0 if audit.ok else 1


def cmd_ledger_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger.proofs import transparency

    with opened_database(settings) as database:
        signer = transparency.host_signer(database, settings)
        made = transparency.make_checkpoint(database, settings, signer)
        if made is None:
            with database.read() as session:
                made = transparency.latest_checkpoint(session.connection())
            if made is None:
                print("the ledger is empty: nothing to checkpoint", file=sys.stderr)
                return 0
            print("no new entries since the last checkpoint", file=sys.stderr)
    print(made.note, end="")
    return 0


def cmd_receipt(args: argparse.Namespace, settings: Settings) -> int:
    if args.words[0] == "verify":
        if len(args.words) != 2:
            print("usage: zeroparty receipt verify FILE [--key VKEY]", file=sys.stderr)
            return 2
        return _verify_receipt(Path(args.words[1]), args.key, settings)
    if len(args.words) != 1:
        print("usage: zeroparty receipt EMAIL [--purpose P]", file=sys.stderr)
        return 2
    import orjson

    from consent_ledger.proofs import receipts, transparency
    from consent_ledger.subjects import find_subject_id, normalise_email

    email = normalise_email(args.words[0])
    with opened_database(settings) as database:
        with database.read() as session:
            subject_id = find_subject_id(session, email)
        if subject_id is None:
            print(f"no lead with email {email}", file=sys.stderr)
            return 2
        signer = transparency.host_signer(database, settings)
        receipt = receipts.build_receipt(database, settings, signer, subject_id, args.purpose)
    sys.stdout.buffer.write(orjson.dumps(receipt, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _verify_receipt(path: Path, keys: list[str], settings: Settings) -> int:
    import orjson

    from consent_ledger.proofs import receipts, transparency
    from consent_ledger.proofs.checkpoints import CheckpointError, parse_verifier_key

    try:
        receipt = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"RECEIPT INVALID: cannot read {path}: {exc}")
        return 1
    try:
        trusted = [parse_verifier_key(key) for key in keys]
    except CheckpointError as exc:
        print(f"error: --key: {exc}", file=sys.stderr)
        return 2
    if not trusted:
        if not settings.checkpoint_key_file.exists():
            print("error: give the log's public key with --key (GET /ledger/key)", file=sys.stderr)
            return 2
        signer = transparency.load_signer(settings, create=False)
        trusted = transparency.verifier_keys(settings, signer)
    try:
        check = receipts.verify_receipt(receipt, trusted)
    except receipts.ReceiptError as exc:
        print(f"RECEIPT INVALID: {exc}")
        return 1
    print(
        f"receipt valid: subject {check.subject_id}, purposes {', '.join(check.purposes)}, "
        f"in the ledger's first {check.tree_size:,} entries, checkpoint signed by {check.key_name}"
    )
    return 0


def cmd_ledger_export(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger import export
    from consent_ledger.subjects import find_subject_id, normalise_email

    with opened_database(settings) as database:
        subject_id = None
        if args.email:
            email = normalise_email(args.email)
            with database.read() as session:
                subject_id = find_subject_id(session, email)
            if subject_id is None:
                print(f"no lead with email {email}", file=sys.stderr)
                return 2
        with database.connect() as connection:
            rows = export.iter_export_rows(connection, subject_id)
            if args.format == "jsonl":
                count = export.write_jsonl(rows, sys.stdout.buffer)
            else:
                count = export.write_csv(rows, sys.stdout)
        sys.stdout.flush()
        print(f"exported {count:,} entries", file=sys.stderr)
    return 0


def cmd_ledger_rebuild_state(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger.state import rebuild_projection

    with opened_database(settings) as database, database.write() as session:
        rows = rebuild_projection(session)
    print(f"consent state rebuilt from the ledger: {rows:,} rows")
    return 0


def cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger.erasure import scrub_sqlite
    from consent_ledger.requests import RequestChannel, RequestKind, record_request

    with opened_ledger(settings) as ledger:
        database = ledger.database
        subject_id = lead_id(database, args.email)
        if subject_id is None:
            return 2
        with database.write() as session:
            result = ledger.erase(session, subject_id, source_ref="cli")
            if not result.already_erased:
                # In the request queue as a completed erasure (GDPR Art. 5(2) accountability).
                record_request(
                    session, subject_id, RequestKind.ERASURE, RequestChannel.CLI,
                    handled_by="zeroparty erase (CLI)", completed=True,
                )  # fmt: skip
        scrub_sqlite(database)
    print(
        f"erased lead {subject_id}: personal data removed ({', '.join(result.providers)}), "
        f"{len(result.entries)} erased entr{'y' if len(result.entries) == 1 else 'ies'} recorded"
    )
    return 0


def add_commands(commands: Commands) -> None:
    """This package's part of ``zeroparty --help`` (named in its wiring)."""
    ledger = commands.add_parser("ledger", help="the consent ledger").add_subparsers(
        dest="ledger_command", required=True, metavar="ACTION"
    )
    verify = ledger.add_parser("verify", help="check the whole ledger (exit 1 if broken)")
    verify.add_argument("--quiet", action="store_true", help="no progress output")
    verify.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="also check a checkpoint kept outside the database (repeatable)",
    )
    verify.add_argument(
        "--skip-checkpoints",
        action="store_true",
        help="check the chain and state without the stored checkpoints (needed where no "
        "checkpoint key is at hand; the output says they were skipped)",
    )
    verify.set_defaults(handler=cmd_ledger_verify)
    export = ledger.add_parser("export", help="stream entries as JSONL or CSV")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--email", help="only this lead's entries")
    export.set_defaults(handler=cmd_ledger_export)
    rebuild = ledger.add_parser(
        "rebuild-state", help="rebuild current consent state from the ledger"
    )
    rebuild.set_defaults(handler=cmd_ledger_rebuild_state)
    checkpoint = ledger.add_parser("checkpoint", help="sign and store a checkpoint now")
    checkpoint.set_defaults(handler=cmd_ledger_checkpoint)
    # The scrub after erasure (consent_ledger.scrub): ``ledger scrub``.
    from consent_ledger.scrub import add_command as add_scrub_command

    add_scrub_command(ledger)

    receipt = commands.add_parser(
        "receipt",
        help="print a signed consent receipt (receipt EMAIL) or check one (receipt verify FILE)",
    )
    receipt.add_argument("words", nargs="+", metavar="EMAIL | verify FILE")
    receipt.add_argument("--purpose", help="only this purpose")
    receipt.add_argument(
        "--key", action="append", default=[], help="a trusted public key (vkey; repeatable)"
    )
    receipt.set_defaults(handler=cmd_receipt)

    erase = commands.add_parser(
        "erase", help="erase a lead's personal data (the ledger still verifies)"
    )
    erase.add_argument("email")
    erase.set_defaults(handler=cmd_erase)
