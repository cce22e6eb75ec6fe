"""An audience's members as a sending tool reads them: CSV rows and JSON lines.

Light on purpose (no database, no web framework): the export's writer process
(:mod:`consent_sync.export_writer`) imports it to format what the walk sends it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple, TextIO

import orjson

from consent_ledger.entries import format_timestamp
from consent_sync.csv_lines import LineFeedCsvWriter
from zeroparty.mail import LeadLinks


class Member(NamedTuple):
    """One lead of an audience, with what a sending tool merges into its mail. A tuple:
    an export makes a million of them."""

    lead_id: str
    email: str
    name: str | None
    locale: str | None
    topics: list[str]
    permitted_since: datetime | None
    notice_sha256: str | None
    notice_version: int | None
    preference_url: str
    unsubscribe_url: str
    list_unsubscribe: str
    list_unsubscribe_post: str


Unlinked = tuple[
    str, str, str | None, str | None, list[str], datetime | None, str | None, int | None
]
"""A member's fields before its links: lead id, email, name, locale, topics, permitted
since, notice SHA-256 and notice version."""


def linked(fields: Unlinked, links: LeadLinks) -> Member:
    """The member of ``fields`` with its signed links."""
    headers = links.headers
    return Member(
        *fields,
        links.preference_url,
        links.unsubscribe_url,
        headers["List-Unsubscribe"],
        headers["List-Unsubscribe-Post"],
    )


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


def member_json(member: Member) -> dict[str, object]:
    """One member as the API and ``zeroparty audience export --format jsonl`` show it."""
    return {
        "lead_id": member.lead_id,
        "email": member.email,
        "name": member.name,
        "locale": member.locale,
        "topics": member.topics,
        "permitted_since": format_timestamp(member.permitted_since)
        if member.permitted_since
        else None,
        "notice_sha256": member.notice_sha256,
        "notice_version": member.notice_version,
        "preference_url": member.preference_url,
        "unsubscribe_url": member.unsubscribe_url,
        "headers": {
            "List-Unsubscribe": member.list_unsubscribe,
            "List-Unsubscribe-Post": member.list_unsubscribe_post,
        },
    }


def write_jsonl(members: Iterable[Member], out: TextIO) -> int:
    written = 0
    for m in members:
        out.write(orjson.dumps(member_json(m)).decode())
        out.write("\n")
        written += 1
    return written
