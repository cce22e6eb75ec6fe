"""What subscriptions run beside the web app in ``serve``: fan-out and delivery."""

from __future__ import annotations

from consent_sync import subscriptions
from zeroparty.background import PeriodicJob
from zeroparty.wiring import JobContext

DISPATCH_POLL_SECONDS = 10.0


def background_jobs(context: JobContext) -> list[PeriodicJob]:
    def dispatch() -> None:
        subscriptions.dispatch(context.database, context.settings)

    return [PeriodicJob("subscription-dispatch", DISPATCH_POLL_SECONDS, dispatch)]
