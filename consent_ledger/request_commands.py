"""``zeroparty requests``: the data-subject request queue from the command line, for
operators and monitoring (``--check`` exits 1 while a request is past its deadline)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from consent_ledger.requests import RequestStatus, list_requests
from zeroparty.cli_support import opened_database
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 10000")
    return int(raw)


def cmd_requests(args: argparse.Namespace, settings: Settings) -> int:
    with opened_database(settings) as database, database.read() as session:
        status = None if args.all else RequestStatus.OPEN
        views = list_requests(session, status=status, limit=args.limit)
        lines = []
        for view in views:
            r = view.request
            flag = " OVERDUE" if view.overdue else " DUE SOON" if view.due_soon else ""
            lead = r.subject_id or "(nothing held)"
            lines.append(
                f"#{r.id} {r.kind} {r.status} received {r.received_at:%Y-%m-%d} "
                f"due {r.due_at:%Y-%m-%d}{flag} {r.channel} {lead}"
            )
    for line in lines:
        print(line)
    overdue = sum(1 for view in views if view.overdue)
    soon = sum(1 for view in views if view.due_soon)
    print(f"{len(views)} request(s) listed; {overdue} overdue, {soon} due within 7 days")
    return 1 if args.check and overdue else 0


def add_commands(commands: Commands) -> None:
    requests = commands.add_parser(
        "requests", help="list data-subject requests (open ones, most urgent first)"
    )
    requests.add_argument("--all", action="store_true", help="closed ones too")
    requests.add_argument("--limit", type=_limit, default=200, help="at most this many (200)")
    requests.add_argument(
        "--check", action="store_true", help="exit 1 while a request is past its deadline"
    )
    requests.set_defaults(handler=cmd_requests)
