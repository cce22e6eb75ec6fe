"""What capture runs beside the web app in ``serve``: deliver queued mail (confirmation
links also go out right after their request; this catches retries and restarts) and
forget rate-limit windows long over."""

from __future__ import annotations

from capture.ratelimit import forget_old_windows
from zeroparty.background import PeriodicJob
from zeroparty.db import Database
from zeroparty.mail import deliver_pending, transport_for
from zeroparty.settings import Settings

MAIL_POLL_SECONDS = 30.0
RATE_CLEANUP_SECONDS = 3600.0


def background_jobs(settings: Settings, database: Database) -> list[PeriodicJob]:
    def deliver() -> None:
        deliver_pending(database, transport_for(settings.smtp_url, settings.outbox_dir))

    def forget_windows() -> None:
        with database.write() as session:
            forget_old_windows(session)

    return [
        PeriodicJob("mail-delivery", MAIL_POLL_SECONDS, deliver),
        PeriodicJob("rate-limit-cleanup", RATE_CLEANUP_SECONDS, forget_windows),
    ]
