"""The preference center's command: ``zeroparty link EMAIL``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from zeroparty.cli_support import lead_id, opened_database
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def cmd_link(args: argparse.Namespace, settings: Settings) -> int:
    from preference_center.links import manage_link

    with opened_database(settings) as database:
        subject_id = lead_id(database, args.email)
        if subject_id is None:
            return 2
        with database.read() as session:
            print(manage_link(settings, session, subject_id))
    return 0


def add_commands(commands: Commands) -> None:
    """This package's part of ``zeroparty --help`` (named in its wiring)."""
    link = commands.add_parser("link", help="print a lead's signed preference-center URL")
    link.add_argument("email")
    link.set_defaults(handler=cmd_link, signs_tokens=True)
