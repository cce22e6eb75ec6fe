"""What scoring runs beside the web app in ``serve``: webhook delivery."""

from __future__ import annotations

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


def background_jobs(settings: Settings, database: Database) -> list[PeriodicJob]:
    config = dispatch_config(settings)
    if config is None:
        return []

    def dispatch() -> None:
        dispatch_pending(database, config)

    return [PeriodicJob("webhook-dispatch", DISPATCH_POLL_SECONDS, dispatch)]
