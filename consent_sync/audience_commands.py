"""``zeroparty audience export PURPOSE [--topic T] [--format csv|jsonl]``: the whole
audience as one snapshot, streamed to stdout a page at a time (constant memory), noted
in the staff log. Into a file or a pipe, a second process signs the links and writes
the rows while this one walks (:mod:`consent_sync.export_writer`)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from consent_ledger.api import ConsentLedger
from consent_sync import audiences, export_writer
from consent_sync.access import SyncRead
from consent_sync.audience_rows import write_csv, write_jsonl
from zeroparty.cli_support import opened_ledger
from zeroparty.errors import ServiceUnavailable
from zeroparty.mail import LeadLinkerMany
from zeroparty.settings import Settings
from zeroparty.wiring import lead_linker_many, staff_log_writer

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def cmd_audience_export(args: argparse.Namespace, settings: Settings) -> int:
    linker = lead_linker_many(settings)
    if linker is None:
        raise ServiceUnavailable("no package of this build makes preference links")
    topic = args.topic or None
    with opened_ledger(settings) as ledger:
        database = ledger.database
        with database.write() as session:
            # Noted first, so an export cut short is in the log too.
            connection = session.connection()
            facts = audiences.purpose_facts(connection, args.purpose, topic)
            snapshot = audiences.start(connection, args.purpose, topic)
            of = args.purpose + (f" topic {topic}" if topic else "")
            staff_log_writer()(
                session,
                None,
                SyncRead.AUDIENCE_EXPORT.value,
                f"command line: audience {of} as of entry {snapshot.as_of_seq} ({args.format})",
            )
        output = _output_descriptor() if export_writer.usable(linker) else None
        with database.read() as session:
            if output is None:
                members = audiences.walk(session, ledger, linker, facts, snapshot)
                write = write_csv if args.format == "csv" else write_jsonl
                written = write(members, sys.stdout)
            else:
                written = _export_in_two(session, ledger, linker, facts, snapshot, args, output)
    print(
        f"{written} leads may receive {of} as of ledger entry {snapshot.as_of_seq}",
        file=sys.stderr,
    )
    return 0


def _output_descriptor() -> int | None:
    """Standard output's file descriptor when a second process can write to it (a
    file or a pipe, on a machine with more than one CPU); else ``None``: this process
    writes, as it does into a captured stream."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cpus or 1) < 2:
        return None
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None
    sys.stdout.flush()
    return descriptor


def _export_in_two(
    session: Session,
    ledger: ConsentLedger,
    linker: LeadLinkerMany,
    facts: audiences.PurposeFacts,
    snapshot: audiences.Snapshot,
    args: argparse.Namespace,
    output: int,
) -> int:
    """The walk here, the links and rows in a writer process (:mod:`export_writer`),
    a page ahead."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    purposes = [snapshot.purpose]
    with export_writer.Writer(output, linker, purposes, args.format, encoding) as writer:
        for fields in audiences.walk_unlinked(session, ledger, facts, snapshot):
            writer.send(fields, linker.versions(session, [f[0] for f in fields]))
        return writer.finish()


def add_commands(commands: Commands) -> None:
    audience = commands.add_parser("audience", help="who may receive a purpose").add_subparsers(
        dest="audience_command", required=True, metavar="ACTION"
    )
    export = audience.add_parser(
        "export", help="stream everyone who may receive PURPOSE now (one snapshot) to stdout"
    )
    export.add_argument("purpose")
    export.add_argument("--topic", help="only leads who want this topic of the purpose")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.set_defaults(handler=cmd_audience_export, signs_tokens=True)
