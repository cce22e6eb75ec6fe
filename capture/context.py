"""What capture's views take from the app: its database, settings, templates, and
capture's own per-app state (token services, the cache of published versions)."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.templating import Jinja2Templates

from capture.services import DefinitionStore
from capture.tokens import CaptureTokens
from consent_ledger.api import ConsentLedger
from zeroparty.db import Database
from zeroparty.settings import Settings


@dataclass(slots=True)
class CaptureState:
    """Per-app state: token services and the cache of published versions."""

    tokens: CaptureTokens
    store: DefinitionStore = field(default_factory=DefinitionStore)


def capture_state(request: Request) -> CaptureState:
    state: CaptureState | None = getattr(request.app.state, "capture", None)
    if state is None:
        settings: Settings = request.app.state.settings
        state = CaptureState(CaptureTokens(settings.secret_keys))
        request.app.state.capture = state
    return state


def database_of(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def templates_of(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


def ledger_of(request: Request) -> ConsentLedger:
    ledger: ConsentLedger = request.app.state.ledger
    return ledger
