"""Consent sync's routes, collected from its modules (each part keeps its own list)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
