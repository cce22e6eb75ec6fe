"""How the packages are put together: one explicit :class:`Feature` per package.

Each package says what it brings in its own ``wiring`` module (``capture/wiring.py``
and so on): its routes and API schema, the listeners its derived data needs on the
ledger (scores follow a withdrawal), its part of a person's data (access and erasure),
its part of ``site.toml``, its background jobs and its CLI commands. Nothing registers
itself at import time. The app factory (:func:`zeroparty.app.create_app`) and the CLI
(:mod:`zeroparty.cli`) are the only places that know every package: they take
:func:`features` and build one :class:`consent_ledger.ConsentLedger` from it
(:func:`build_ledger`), the way a Pyramid application ``include``\\ s its packages.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from zeroparty.background import PeriodicJob
from zeroparty.db import Database
from zeroparty.lead_signals import LeadSignalListener
from zeroparty.mail import LeadLinker, LeadLinkerMany
from zeroparty.personal_data import PersonalData
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from starlette.requests import Request
    from starlette.responses import Response

    from consent_ledger.api import ConsentLedger
    from consent_ledger.listeners import ConsentListener
    from consent_ledger.proofs.transparency import SignerSource
    from zeroparty.retention import Purge
    from zeroparty.site import SiteSection

# ``add_parser`` of the CLI's top-level sub-commands: a package adds its commands with it
# and sets ``handler=fn(args, settings) -> exit code`` on each.
CommandAdder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# How a package notes in the staff log (the console keeps it) what was read in bulk by
# an API key or a command: ``(session, staff user id or None, action, detail)``, in the
# caller's transaction.
StaffLogWriter = Callable[["Session", "int | None", str, str], None]

# How a package outside the console serves a page to logged-in staff (the console keeps
# the sessions and roles): ``guard(permission, endpoint)`` wraps ``endpoint(request,
# staff user id)`` so that it runs only for staff whose role has ``permission``; people
# without a session are sent to log in, as on the console's own pages.
StaffEndpoint = Callable[["Request", int], Awaitable["Response"]]
StaffGuard = Callable[[str, StaffEndpoint], Callable[["Request"], Awaitable["Response"]]]


@dataclass(frozen=True, slots=True)
class EntryPoint:
    """A page worth opening first, listed on the home page and by ``serve`` at start-up:
    for ``audience`` "visitors", "leads", "staff" or "developers"."""

    audience: str
    title: str
    path: str
    description: str = ""


# What a package offers to open first, read from its database (forms come and go).
EntryPoints = Callable[[Database], Sequence[EntryPoint]]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a package's background jobs are built from (``serve`` runs them)."""

    settings: Settings
    database: Database
    ledger: ConsentLedger
    signer: SignerSource


@dataclass(frozen=True, slots=True)
class Feature:
    """What one package brings to the app and the CLI."""

    name: str
    routes: Sequence[Any] = ()
    openapi: ModuleType | None = None
    consent_listeners: Sequence[ConsentListener] = ()
    personal_data: Sequence[PersonalData] = ()
    signal_listeners: Sequence[LeadSignalListener] = ()
    site_sections: Sequence[SiteSection] = ()
    jobs: Callable[[JobContext], Sequence[PeriodicJob]] | None = None
    commands: CommandAdder | None = None
    staff_log: StaffLogWriter | None = None
    staff_guard: StaffGuard | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    # Retention: the package's purges of its own records (zeroparty.retention).
    purges: Sequence[Purge] = ()
    # First run: the pages this package offers to open (the home page lists them).
    entry_points: EntryPoints | None = None


def features() -> list[Feature]:
    """Every package's :class:`Feature`, the ledger first. Imported here, when asked,
    so that importing one package never imports the others."""
    import capture.wiring
    import consent_ledger.wiring
    import consent_sync.wiring
    import console.wiring
    import preference_center.wiring
    import scoring.wiring
    import zeroparty.retention
    import zeroparty.wal

    return [
        consent_ledger.wiring.feature(),
        capture.wiring.feature(),
        preference_center.wiring.feature(),
        scoring.wiring.feature(),
        console.wiring.feature(),
        consent_sync.wiring.feature(),
        zeroparty.retention.feature(),  # retention: its site section, job and command
        zeroparty.wal.feature(),  # serve: SQLite's WAL checkpoints off the request path
    ]


def build_ledger(database: Database, parts: Sequence[Feature] | None = None) -> ConsentLedger:
    """The ledger wired with every package's listeners and personal-data providers."""
    from consent_ledger.api import ConsentLedger

    parts = features() if parts is None else parts
    return ConsentLedger(
        database,
        listeners=[fn for part in parts for fn in part.consent_listeners],
        personal_data=[p for part in parts for p in part.personal_data],
        signal_listeners=[fn for part in parts for fn in part.signal_listeners],
    )


ENTRY_POINT_AUDIENCES = ("visitors", "leads", "staff", "developers")


def entry_points(database: Database, parts: Sequence[Feature] | None = None) -> list[EntryPoint]:
    """Every package's pages to open first, by audience, in the packages' order."""
    parts = features() if parts is None else parts
    found = [
        point
        for part in parts
        if part.entry_points is not None
        for point in part.entry_points(database)
    ]
    order = {audience: n for n, audience in enumerate(ENTRY_POINT_AUDIENCES)}
    return sorted(found, key=lambda point: order.get(point.audience, len(order)))


def staff_log_writer(parts: Sequence[Feature] | None = None) -> StaffLogWriter:
    """The staff log's writer of the package that keeps it (the console); one that
    keeps nothing when no wired package does."""
    parts = features() if parts is None else parts
    for part in parts:
        if part.staff_log is not None:
            return part.staff_log
    return _no_staff_log


def _no_staff_log(_session: Session, _user_id: int | None, _action: str, _detail: str) -> None:
    return None


def lead_linker(settings: Settings, parts: Sequence[Feature] | None = None) -> LeadLinker | None:
    """The links every mail to a lead carries (the preference center makes them), for a
    command that has no app; ``None`` when no wired package makes them."""
    parts = features() if parts is None else parts
    for part in parts:
        # The preference center names its factory ``lead_linker`` among its extras.
        factory: Callable[[Settings], LeadLinker] | None = part.extras.get("lead_linker")
        if factory is not None:
            return factory(settings)
    return None


def lead_linker_many(
    settings: Settings, parts: Sequence[Feature] | None = None
) -> LeadLinkerMany | None:
    """:func:`lead_linker` for many leads at once (bulk exports); ``None`` when no wired
    package makes links."""
    parts = features() if parts is None else parts
    for part in parts:
        factory: Callable[[Settings], LeadLinkerMany] | None = part.extras.get("lead_linker_many")
        if factory is not None:
            return factory(settings)
    return None


def staff_guard(parts: Sequence[Feature] | None = None) -> StaffGuard | None:
    """The console's guard of staff pages (``None``: no wired package keeps staff)."""
    parts = features() if parts is None else parts
    for part in parts:
        if part.staff_guard is not None:
            return part.staff_guard
    return None
