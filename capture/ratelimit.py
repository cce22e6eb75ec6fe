"""Fixed-window rate limits kept in the database, so they hold across worker processes
and hosts. One counter row per bucket and window, incremented by an upsert in the
submission's own transaction; a refused submission rolls its increment back, so only
accepted submissions count, and a counter at its limit stays there until the window
ends. Buckets are keyed hashes: no client address is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import cast

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from capture.models import RateCounter
from zeroparty.db import Prepared, Transaction, connection_of

_counters = cast(Table, RateCounter.__table__)

_SQLITE_UPSERT = Prepared(
    sqlite.insert(_counters)
    .on_conflict_do_update(
        index_elements=["bucket", "window_start"], set_={"count": _counters.c.count + 1}
    )
    .returning(_counters.c.count)
)
_POSTGRES_UPSERT = Prepared(
    postgresql.insert(_counters)
    .on_conflict_do_update(
        index_elements=["bucket", "window_start"], set_={"count": _counters.c.count + 1}
    )
    .returning(_counters.c.count)
)


def bucket_for(secret: str, client: str, slug: str) -> str:
    """A keyed hash of the client address and form: the counter's name."""
    message = f"{client}\x00{slug}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def window_start(window_seconds: int, now: float | None = None) -> int:
    moment = int(time.time() if now is None else now)
    return moment - moment % window_seconds


def hit(tx: Transaction, bucket: str, window_seconds: int, now: float | None = None) -> int:
    """Count one submission in the current window; returns the count including it."""
    connection = connection_of(tx)
    upsert = _SQLITE_UPSERT if connection.dialect.name == "sqlite" else _POSTGRES_UPSERT
    params = {"bucket": bucket, "window_start": window_start(window_seconds, now), "count": 1}
    (row,) = upsert.execute(connection, params)
    return int(row[0])


def forget_old_windows(session: Session, max_window_seconds: int = 86_400) -> int:
    """Delete counters of windows long over; returns how many rows went."""
    horizon = int(time.time()) - 2 * max_window_seconds
    result = session.execute(delete(RateCounter).where(RateCounter.window_start < horizon))
    return int(getattr(result, "rowcount", 0) or 0)
