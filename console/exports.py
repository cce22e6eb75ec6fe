"""The ledger filtered, as a page and as streamed exports (CSV safe against formula
injection, JSONL), in constant memory whatever the ledger's size.

Both read through :mod:`consent_ledger.export`, so the console exports exactly what
``zeroparty ledger export`` would, with the filters applied.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import orjson
from sqlalchemy.orm import Session

from consent_ledger import export
from consent_ledger.api import ConsentLedger
from consent_ledger.filters import LedgerFilter
from zeroparty.db import Database

PAGE_SIZE = 100
CHUNK_ROWS = 2_000


@dataclass(frozen=True, slots=True)
class LedgerRow:
    seq: int
    subject_id: str
    purpose: str
    action: str
    source: str
    source_ref: str | None
    method: str
    occurred_at: datetime
    notice_sha256: str | None


@dataclass(frozen=True, slots=True)
class LedgerPage:
    rows: list[LedgerRow]
    next_before: int | None


def ledger_page(
    ledger: ConsentLedger, session: Session, ledger_filter: LedgerFilter, before: int | None
) -> LedgerPage:
    """Newest first, :data:`PAGE_SIZE` at a time; ``before`` is the keyset cursor (a seq)."""
    found = ledger.entries_page(session, ledger_filter, before, PAGE_SIZE + 1)
    rows = [LedgerRow(*row) for row in found[:PAGE_SIZE]]
    return LedgerPage(rows, rows[-1].seq if len(found) > PAGE_SIZE else None)


def stream_csv(database: Database, ledger_filter: LedgerFilter) -> Iterator[bytes]:
    """The filtered entries as CSV, in chunks; every cell made safe for spreadsheets."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(export.EXPORT_FIELDS)
    with database.connect() as connection:
        for count, row in enumerate(
            export.iter_export_rows(connection, ledger_filter=ledger_filter), 1
        ):
            writer.writerow([export.safe_cell(row[field]) for field in export.EXPORT_FIELDS])
            if count % CHUNK_ROWS == 0:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode()


def stream_jsonl(database: Database, ledger_filter: LedgerFilter) -> Iterator[bytes]:
    """The filtered entries as JSON lines, in chunks."""
    chunk: list[bytes] = []
    with database.connect() as connection:
        for row in export.iter_export_rows(connection, ledger_filter=ledger_filter):
            chunk.append(orjson.dumps(row))
            if len(chunk) >= CHUNK_ROWS:
                yield b"\n".join(chunk) + b"\n"
                chunk.clear()
    if chunk:
        yield b"\n".join(chunk) + b"\n"
