"""What capture runs beside the web app in ``serve``: deliver queued mail (a mail a
person waits for goes out right after its request committed; this poll is the retry
path, and catches restarts),
forget rate-limit windows long over, and delete held submissions past their expiry
(personal data never confirmed by the address's owner: :mod:`capture.pending`)."""

from __future__ import annotations

from capture import pending
from capture.ratelimit import forget_old_windows
from zeroparty.background import PeriodicJob
from zeroparty.db import Database
from zeroparty.mail import deliver_pending, transport_for
from zeroparty.settings import Settings

MAIL_POLL_SECONDS = 30.0
RATE_CLEANUP_SECONDS = 3600.0
HELD_CLEANUP_SECONDS = 3600.0


def delete_expired_held(database: Database) -> int:
    """Delete held submissions past their expiry; returns how many."""
    with database.write() as session:
        return pending.delete_expired(session)


def background_jobs(settings: Settings, database: Database) -> list[PeriodicJob]:
    def deliver() -> None:
        deliver_pending(
            database,
            transport_for(settings.smtp_url, settings.outbox_dir),
            base_url=settings.base_url,
        )

    def forget_windows() -> None:
        with database.write() as session:
            forget_old_windows(session)

    return [
        PeriodicJob("mail-delivery", MAIL_POLL_SECONDS, deliver),
        PeriodicJob("rate-limit-cleanup", RATE_CLEANUP_SECONDS, forget_windows),
        PeriodicJob(
            "held-submission-cleanup", HELD_CLEANUP_SECONDS, lambda: delete_expired_held(database)
        ),
    ]
