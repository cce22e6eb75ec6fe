"""Consent sync's part of ``/openapi.json``, collected from its modules' parts."""

from __future__ import annotations

from typing import Any

PATHS: dict[str, Any] = {}

SCHEMAS: dict[str, Any] = {}
