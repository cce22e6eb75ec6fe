"""``zeroparty suppression export [--purpose P]``: the suppression list as CSV on stdout
(``email_sha256,reason,purposes,since``), streamed, noted in the staff log."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from consent_sync import suppression
from consent_sync.access import SyncRead
from consent_sync.csv_lines import LineFeedCsvWriter
from consent_sync.suppression_views import entry_json
from zeroparty.cli_support import opened_database
from zeroparty.settings import Settings
from zeroparty.wiring import staff_log_writer

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def cmd_suppression_export(args: argparse.Namespace, settings: Settings) -> int:
    purpose = args.purpose or None
    with opened_database(settings) as database:
        with database.write() as session:
            suppression.check_purpose(session.connection(), purpose)
            of = f" of {purpose}" if purpose else ""
            staff_log_writer()(
                session, None, SyncRead.SUPPRESSION.value, f"command line: suppression list{of}"
            )
        writer = LineFeedCsvWriter(sys.stdout)
        writer.writerow(["email_sha256", "reason", "purposes", "since"])
        written = 0
        with database.read() as session:
            for entry in suppression.walk(session.connection(), purpose):
                body = entry_json(entry)
                writer.writerow(
                    [
                        entry.email_sha256,
                        entry.reason,
                        " ".join(entry.purposes),
                        body["since"] or "",
                    ]
                )
                written += 1
    print(f"{written} addresses suppressed{of}", file=sys.stderr)
    return 0


def add_commands(commands: Commands) -> None:
    group = commands.add_parser(
        "suppression", help="addresses never to mail (SHA-256 digests)"
    ).add_subparsers(dest="suppression_command", required=True, metavar="ACTION")
    export = group.add_parser(
        "export", help="print the SHA-256 of every address that withdrew or was erased"
    )
    export.add_argument("--purpose", help="only withdrawals of this purpose (and erasures)")
    export.set_defaults(handler=cmd_suppression_export)
