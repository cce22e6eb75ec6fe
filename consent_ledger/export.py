"""``zeroparty ledger export``: entries streamed as JSONL or CSV in constant memory."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO, Any, cast

import orjson
from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from consent_ledger.entries import ENTRY_FIELDS, format_timestamp
from consent_ledger.filters import LedgerFilter
from consent_ledger.models import ConsentEvent, ConsentEvidence

STREAM_BATCH = 2_000
EXPORT_FIELDS = (*ENTRY_FIELDS, "hash", "evidence")
# A spreadsheet treats a cell starting with one of these as a formula (CWE-1236).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")

_ev, _evd = (cast(Table, model.__table__) for model in (ConsentEvent, ConsentEvidence))


def iter_export_rows(
    connection: Connection,
    subject_id: str | None = None,
    ledger_filter: LedgerFilter | None = None,
) -> Iterator[dict[str, Any]]:
    """Entries in ``seq`` order as plain dicts, with kept evidence (erased: ``None``),
    only those ``ledger_filter`` matches when one is given."""
    stmt = (
        select(_ev, _evd.c.body)
        .select_from(_ev.outerjoin(_evd, _evd.c.seq == _ev.c.seq))
        .order_by(_ev.c.seq)
        .execution_options(stream_results=True, yield_per=STREAM_BATCH)
    )
    if subject_id is not None:
        stmt = stmt.where(_ev.c.subject_id == subject_id)
    if ledger_filter is not None:
        stmt = stmt.where(*ledger_filter.clauses())
    for row in connection.execute(stmt):
        values = row._mapping
        yield {
            "seq": values["seq"],
            "prev_hash": values["prev_hash"],
            "subject_id": values["subject_id"],
            "purpose": values["purpose_key"],
            "action": values["action"],
            "confirmation_required": bool(values["confirmation_required"]),
            "notice_sha256": values["notice_sha256"],
            "source": values["source"],
            "source_ref": values["source_ref"],
            "jurisdiction": values["jurisdiction"],
            "method": values["method"],
            "locale": values["locale"],
            "occurred_at": format_timestamp(values["occurred_at"]),
            "recorded_at": format_timestamp(values["recorded_at"]),
            "evidence_sha256": values["evidence_sha256"],
            "hash": values["hash"],
            "evidence": orjson.loads(values["body"]) if values["body"] is not None else None,
        }


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet will show as text, never run as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def write_jsonl(rows: Iterator[dict[str, Any]], out: IO[bytes]) -> int:
    count = 0
    for row in rows:
        out.write(orjson.dumps(row) + b"\n")
        count += 1
    return count


def write_csv(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    """RFC 4180: rows end in CRLF, and a field holding a comma, a quote, CR or LF is
    quoted (``csv.writer`` quotes the characters of its line terminator)."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    count = 0
    for row in rows:
        writer.writerow([safe_cell(row[field]) for field in EXPORT_FIELDS])
        count += 1
    return count
