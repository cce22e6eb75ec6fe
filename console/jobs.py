"""The console's periodic work inside ``serve``: forgetting old login attempts and
sessions that ended."""

from __future__ import annotations

from console import accounts
from console.sessions import forget_ended_sessions
from zeroparty.background import PeriodicJob
from zeroparty.db import Database

PRUNE_EVERY_S = 3600.0


def background_jobs(database: Database) -> list[PeriodicJob]:
    def prune() -> None:
        with database.write() as session:
            accounts.forget_old_attempts(session)
            forget_ended_sessions(session)

    return [PeriodicJob("console-login-attempts", PRUNE_EVERY_S, prune)]
