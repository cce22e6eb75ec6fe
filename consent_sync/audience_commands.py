"""``zeroparty audience export PURPOSE [--topic T] [--format csv|jsonl]``: the whole
audience as one snapshot, streamed to stdout a page at a time (constant memory), noted
in the staff log."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

import orjson

from consent_ledger.entries import format_timestamp
from consent_sync import audiences
from consent_sync.access import SyncRead
from consent_sync.audience_views import member_json
from consent_sync.audiences import Member
from consent_sync.csv_lines import LineFeedCsvWriter
from zeroparty.cli_support import opened_ledger
from zeroparty.errors import ServiceUnavailable
from zeroparty.settings import Settings
from zeroparty.wiring import lead_linker_many, staff_log_writer

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands

CSV_COLUMNS = [
    "email",
    "name",
    "locale",
    "topics",
    "permitted_since",
    "notice_version",
    "notice_sha256",
    "preference_url",
    "unsubscribe_url",
    "list_unsubscribe",
    "list_unsubscribe_post",
    "lead_id",
]


def csv_row(member: Member) -> list[str]:
    """A member as a row of :data:`CSV_COLUMNS` (topics space-separated), as text."""
    since = member.permitted_since
    return [
        member.email,
        member.name or "",
        member.locale or "",
        " ".join(member.topics),
        format_timestamp(since) if since else "",
        str(member.notice_version) if member.notice_version is not None else "",
        member.notice_sha256 or "",
        member.preference_url,
        member.unsubscribe_url,
        member.list_unsubscribe,
        member.list_unsubscribe_post,
        member.lead_id,
    ]


def write_csv(members: Iterable[Member], out: TextIO) -> int:
    """One header row, then a row per member; how many.

    Rows end in ``\\n``; a field holding a comma, a quote or a line break (``\\r`` or
    ``\\n``, RFC 4180) is quoted (:class:`LineFeedCsvWriter`). A row none of whose
    fields holds one (nearly all: URLs, ids, hashes) is joined directly, a third of the
    writer's time for rows of long URLs; any other row goes through the writer."""
    writer = LineFeedCsvWriter(out)
    writer.writerow(CSV_COLUMNS)
    commas = len(CSV_COLUMNS) - 1
    write = out.write
    written = 0
    for member in members:
        fields = csv_row(member)
        line = ",".join(fields)
        if line.count(",") == commas and '"' not in line and "\n" not in line and "\r" not in line:
            write(line + "\n")
        else:
            writer.writerow(fields)
        written += 1
    return written


def write_jsonl(members: Iterable[Member], out: TextIO) -> int:
    written = 0
    for m in members:
        out.write(orjson.dumps(member_json(m)).decode())
        out.write("\n")
        written += 1
    return written


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
        with database.read() as session:
            members = audiences.walk(session, ledger, linker, facts, snapshot)
            write = write_csv if args.format == "csv" else write_jsonl
            written = write(members, sys.stdout)
    print(
        f"{written} leads may receive {of} as of ledger entry {snapshot.as_of_seq}",
        file=sys.stderr,
    )
    return 0


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
