"""SQLite's WAL checkpoints, run beside ``serve``'s requests rather than inside them.

By default SQLite checkpoints in the commit that pushes the write-ahead log past 1,000
pages: that request's commit then copies the log back into the database file, on the
event loop, and every other request waits (most of the long commit stalls under load).
While ``serve`` runs, request connections get ``PRAGMA wal_autocheckpoint=0`` and this
job checkpoints instead, on its own connection, every :data:`INTERVAL_SECONDS`:

- ``PRAGMA wal_checkpoint(PASSIVE)``: copies back what no reader still needs, never
  waits for and never blocks a reader or a writer. Once a checkpoint has copied the
  whole log, the next write starts the log again from its beginning, so under constant
  load the log stays about as long as one second of writes.
- When the log file has grown past :data:`TRUNCATE_ABOVE_BYTES` (a burst, or a long
  reader that held old pages) and the passive checkpoint caught up,
  ``PRAGMA wal_checkpoint(TRUNCATE)`` gives the disk space back. It is tried without
  waiting (busy timeout 0) and under the process's write lock: if any reader is on the
  log it gives up at once and tries again next time.

The CLI's commands and the tests' own connections keep SQLite's default. PostgreSQL has
no such job. Each worker process runs its own job; checkpoints of several processes at
once are safe (SQLite lets one run, the others return busy).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from zeroparty.background import PeriodicJob
from zeroparty.db import SQLITE_BUSY_TIMEOUT_MS, Database
from zeroparty.wiring import Feature, JobContext

log = logging.getLogger("zeroparty.wal")

INTERVAL_SECONDS = 1.0
TRUNCATE_ABOVE_BYTES = 64 * 1024 * 1024


class WalCheckpointJob(PeriodicJob):
    """The checkpoint job: turns request connections' auto-checkpoints off while it
    runs (from :meth:`start` to :meth:`stop`) and checkpoints the log itself."""

    def __init__(
        self,
        database: Database,
        *,
        interval: float = INTERVAL_SECONDS,
        truncate_above: int = TRUNCATE_ABOVE_BYTES,
    ) -> None:
        super().__init__("sqlite-wal-checkpoints", interval, self.checkpoint)
        self.database = database
        self.truncate_above = truncate_above
        self.checkpoints = 0
        self.truncations = 0
        self._lock = threading.Lock()
        database_file = database.engine.url.database
        self._wal_file = f"{database_file}-wal" if database_file else None

    def start(self) -> None:
        self.database.set_wal_autocheckpoint(0)
        super().start()

    def stop(self) -> None:
        super().stop()
        self.database.set_wal_autocheckpoint(None)

    def wal_bytes(self) -> int:
        """The size of the log file now (0 when there is none)."""
        if self._wal_file is None:
            return 0
        try:
            return os.path.getsize(self._wal_file)
        except OSError:
            return 0

    def checkpoint(self) -> tuple[int, int, int]:
        """One run: a passive checkpoint, then a truncating one if the log file is too
        long and the passive one copied it all. Returns SQLite's ``(busy, log frames,
        frames checkpointed)`` of the passive checkpoint."""
        with self._lock:
            connection = self.database.engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                row: Any = cursor.fetchone()
                busy, frames, copied = row
                self.checkpoints += 1
                if not busy and frames == copied and self.wal_bytes() > self.truncate_above:
                    self._truncate(cursor)
                cursor.close()
            finally:
                connection.close()
        return int(busy), int(frames), int(copied)

    def _truncate(self, cursor: Any) -> None:
        execute = cursor.execute
        with self.database.write_lock:
            execute("PRAGMA busy_timeout=0")
            try:
                busy, _frames, _copied = execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if busy:
            log.debug("WAL truncation skipped: a reader is on the log")
        else:
            self.truncations += 1


def _jobs(context: JobContext) -> list[PeriodicJob]:
    if context.database.dialect != "sqlite":
        return []
    return [WalCheckpointJob(context.database)]


def feature() -> Feature:
    return Feature(name="sqlite-wal", jobs=_jobs)
