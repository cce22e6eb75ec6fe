"""The consent lifecycle's job and command (issue 16): ``zeroparty lifecycle run``.

``serve`` runs :func:`consent_ledger.lifecycle.run_lifecycle` every minute; the
command runs it once (after a ``site load`` with a material notice change, or from
cron where no ``serve`` runs jobs). Mails are queued in the outbox and delivered by
``serve`` or ``zeroparty dispatch``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from zeroparty.background import PeriodicJob
from zeroparty.mail import LeadLinker
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands
    from zeroparty.wiring import JobContext


def lead_linker(settings: Settings) -> LeadLinker | None:
    """The links a mail to a lead carries, from the package that makes them (named in
    its wiring's ``extras``); ``None`` when no wired package does."""
    from zeroparty.wiring import features

    for part in features():
        factory = part.extras.get("lead_linker")
        if factory is not None:
            linker: LeadLinker = factory(settings)
            return linker
    return None


def jobs(context: JobContext) -> list[PeriodicJob]:
    from consent_ledger import lifecycle

    linker = lead_linker(context.settings)

    def expire() -> None:
        lifecycle.run_lifecycle(context.database, context.ledger, lead_links=linker)

    return [PeriodicJob("consent-lifecycle", lifecycle.POLL_SECONDS, expire)]


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def cmd_lifecycle_run(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger import lifecycle
    from zeroparty.cli_support import opened_ledger

    with opened_ledger(settings) as ledger:
        report = lifecycle.run_lifecycle(
            ledger.database,
            ledger,
            lead_links=lead_linker(settings),
            batch_size=args.batch_size,
            max_batches=args.max_batches,
        )
    print(f"expired {report.stale_expired} grant(s) made stale by a material notice change")
    print(f"expired {report.expired} grant(s) whose time ran out (expires_after_days)")
    print(f"reminded {report.reminded} lead(s) that a grant ends soon (remind_before_days)")
    return 0


def add_commands(commands: Commands) -> None:
    lifecycle = commands.add_parser(
        "lifecycle", help="consent over time: notice changes, expiry and its reminders"
    ).add_subparsers(dest="lifecycle_command", required=True, metavar="ACTION")
    run = lifecycle.add_parser("run", help="run the lifecycle job once (batched, resumable)")
    run.add_argument("--batch-size", type=_positive, default=500, help="leads per transaction")
    run.add_argument("--max-batches", type=_positive, default=None, help="stop after N batches")
    run.set_defaults(handler=cmd_lifecycle_run)
