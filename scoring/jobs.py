"""What scoring runs beside the web app in ``serve``: webhook delivery (when a CRM is
configured) and the scheduled pass that keeps scores current (:mod:`scoring.upkeep`)."""

from __future__ import annotations

from scoring.upkeep import UPKEEP_POLL_SECONDS, run_upkeep
from scoring.webhooks import DispatchConfig, dispatch_pending
from zeroparty.background import PeriodicJob
from zeroparty.db import Database
from zeroparty.settings import Settings

DISPATCH_POLL_SECONDS = 10.0


def dispatch_config(settings: Settings) -> DispatchConfig | None:
    """Where webhooks go, or ``None`` when no CRM URL is configured (they wait)."""
    if not settings.crm_webhook_url or not settings.crm_webhook_secret:
        return None
    return DispatchConfig(
        settings.crm_webhook_url,
        settings.crm_webhook_secret,
        settings.webhook_max_attempts,
        settings.webhook_timeout_seconds,
    )


def upkeep_job(database: Database) -> PeriodicJob:
    """Rescores the leads whose points decay or whose windows close, and recycles idle
    ones (``[scoring] demote_after_days``), every :data:`UPKEEP_POLL_SECONDS`."""

    def upkeep() -> None:
        run_upkeep(database)

    return PeriodicJob("scoring-upkeep", UPKEEP_POLL_SECONDS, upkeep)


def background_jobs(settings: Settings, database: Database) -> list[PeriodicJob]:
    jobs = [upkeep_job(database)]
    config = dispatch_config(settings)
    if config is None:
        return jobs

    def dispatch() -> None:
        dispatch_pending(database, config)

    return [*jobs, PeriodicJob("webhook-dispatch", DISPATCH_POLL_SECONDS, dispatch)]
