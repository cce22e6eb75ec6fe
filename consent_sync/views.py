"""Consent sync's routes, collected from its modules (each part keeps its own list)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from consent_sync import audience_download, audience_views, change_views, suppression_views

routes: list[BaseRoute] = [
    *change_views.routes,
    *audience_views.routes,
    *suppression_views.routes,
    *audience_download.routes,
]
