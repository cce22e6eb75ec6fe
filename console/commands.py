"""The console's commands: ``zeroparty user add|reset``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from zeroparty.cli_support import opened_database
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from console.accounts import create_user
    from console.sessions import ConsoleTokens

    with opened_database(settings) as database, database.write() as session:
        user = create_user(session, args.email, args.role)
        token = ConsoleTokens(settings).issue_set_password(user.id, user.session_generation)
    print(f"{settings.base_url}/console/set-password/{token}")
    print(
        f"staff account {user.email} ({user.role}) created; send them this one-time link "
        "to set a password (valid 72 hours)",
        file=sys.stderr,
    )
    return 0


def cmd_user_reset(args: argparse.Namespace, settings: Settings) -> int:
    from console.accounts import reset_user
    from console.sessions import ConsoleTokens

    with opened_database(settings) as database, database.write() as session:
        user = reset_user(session, args.email, remove_two_factor=args.two_factor, by="cli")
        token = ConsoleTokens(settings).issue_set_password(user.id, user.session_generation)
    print(f"{settings.base_url}/console/set-password/{token}")
    removed = ", two-factor login removed" if args.two_factor else ""
    print(
        f"staff account {user.email} locked: password forgotten, sessions ended{removed}; "
        "the link sets a new password (valid 72 hours)",
        file=sys.stderr,
    )
    return 0


def add_commands(commands: Commands) -> None:
    """This package's part of ``zeroparty --help`` (named in its wiring)."""
    user = commands.add_parser("user", help="staff accounts for the console").add_subparsers(
        dest="user_command", required=True, metavar="ACTION"
    )
    user_add = user.add_parser("add", help="create a staff account; prints a set-password link")
    user_add.add_argument("email")
    user_add.add_argument("--role", required=True, choices=["admin", "compliance", "marketer"])
    user_add.set_defaults(handler=cmd_user_add, signs_tokens=True)
    user_reset = user.add_parser(
        "reset", help="lock a staff account and print a link to set a new password"
    )
    user_reset.add_argument("email")
    user_reset.add_argument(
        "--two-factor",
        action="store_true",
        help="also remove the authenticator and recovery codes (a lost authenticator)",
    )
    user_reset.set_defaults(handler=cmd_user_reset, signs_tokens=True)
