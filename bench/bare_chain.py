"""The bare baseline of ``ledger verify``: SHA-256 over the same canonical bytes.

``python -m bench.bare_chain DATABASE_URL`` streams ``consent_events`` in ``seq`` order
with one plain SQL query (timestamps formatted by the database), builds each entry's
canonical bytes (sorted-key JSON via orjson, as :mod:`consent_ledger.entries` does),
hashes them and checks the chain link and stored hash. Nothing else: no evidence, no
head, no projection. Exit 0 when the chain holds, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import sys

import orjson
from sqlalchemy import create_engine, text

from zeroparty.db import normalise_url

FETCH = 5_000
COLUMNS = (
    "seq, prev_hash, subject_id, purpose_key, action, confirmation_required, notice_sha256, "
    "source, source_ref, jurisdiction, method, locale, {occurred}, {recorded}, "
    "evidence_sha256, hash"
)
SQLITE_TS = "replace({0}, ' ', 'T') || 'Z'"
POSTGRES_TS = "to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def verify_chain(url: str) -> tuple[int, str | None]:
    """Walk the chain; returns (entries, ``None`` or the first problem)."""
    engine = create_engine(normalise_url(url))
    timestamp = SQLITE_TS if engine.dialect.name == "sqlite" else POSTGRES_TS
    query = text(
        f"SELECT {COLUMNS} FROM consent_events ORDER BY seq".format(
            occurred=timestamp.format("occurred_at"), recorded=timestamp.format("recorded_at")
        )
    )
    expected, running, count = 1, "0" * 64, 0
    dumps, sort_keys, sha256 = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.sha256
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=FETCH).execute(query)
        for row in result:
            seq, prev_hash, stored = row[0], row[1], row[15]
            if seq != expected or prev_hash != running:
                return count, f"chain broken at entry {seq}"
            canonical = dumps(
                {
                    "seq": seq,
                    "prev_hash": prev_hash,
                    "subject_id": row[2],
                    "purpose": row[3],
                    "action": row[4],
                    "confirmation_required": bool(row[5]),
                    "notice_sha256": row[6],
                    "source": row[7],
                    "source_ref": row[8],
                    "jurisdiction": row[9],
                    "method": row[10],
                    "locale": row[11],
                    "occurred_at": row[12],
                    "recorded_at": row[13],
                    "evidence_sha256": row[14],
                },
                option=sort_keys,
            )
            running = sha256(canonical).hexdigest()
            if running != stored:
                return count, f"hash mismatch at entry {seq}"
            expected += 1
            count += 1
    engine.dispose()
    return count, None


def main() -> int:
    count, problem = verify_chain(sys.argv[1])
    print(f"{count} entries" + (f": {problem}" if problem else ": chain intact"))
    return 1 if problem else 0


if __name__ == "__main__":
    raise SystemExit(main())
