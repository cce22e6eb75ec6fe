"""Capture's command: ``zeroparty import FILE`` (contacts gathered elsewhere)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from zeroparty.cli_support import opened_ledger
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from capture.imports import format_report, import_contacts

    try:
        stream = Path(args.file).open("rb")  # noqa: SIM115  (closed by the with below)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if not stream.seekable():  # read twice: its SHA-256 first, then its rows
        stream.close()
        print(f"error: {args.file} is not a regular file", file=sys.stderr)
        return 2
    with stream, opened_ledger(settings) as ledger:
        report = import_contacts(ledger, stream, dry_run=args.dry_run)
    print("\n".join(format_report(report, args.file)), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 2


def add_commands(commands: Commands) -> None:
    """This package's part of ``zeroparty --help`` (named in its wiring)."""
    import_ = commands.add_parser(
        "import", help="import contacts from CSV; permission only where a row has consent evidence"
    )
    import_.add_argument("file", help="UTF-8 CSV with a header row (see README)")
    import_.add_argument(
        "--dry-run", action="store_true", help="validate and report; write nothing"
    )
    import_.set_defaults(handler=cmd_import)
