"""``zeroparty subscription add|list|remove|log|dispatch`` (outgoing subscriptions) and
``zeroparty inbound set`` (sending tools that report unsubscribes)."""

from __future__ import annotations

import argparse
import getpass
from typing import TYPE_CHECKING

from consent_ledger.entries import format_timestamp
from zeroparty.cli_support import opened_database
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from consent_sync import subscriptions

    with opened_database(settings) as database, database.write() as session:
        made = subscriptions.add_subscription(
            session,
            args.url,
            args.events,
            created_by=f"cli:{getpass.getuser()}",
            description=args.description,
        )
    print(f"subscription {made.id}: {args.url}")
    print(f"signing secret (shown once; give it to the receiver): {made.secret}")
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from consent_sync import subscriptions

    with opened_database(settings) as database, database.read() as session:
        rows = subscriptions.subscriptions(session.connection(), include_removed=args.all)
    for row in rows:
        state = "active" if row.active else f"removed {format_timestamp(row.removed_at)}"
        print(f"{row.id}\t{row.url}\t{row.events}\t{state}\tafter seq {row.after_seq}")
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    from consent_sync import subscriptions

    with opened_database(settings) as database, database.write() as session:
        cancelled = subscriptions.remove_subscription(session, args.id)
    print(f"subscription {args.id} removed; {cancelled} waiting deliveries cancelled")
    return 0


def cmd_log(args: argparse.Namespace, settings: Settings) -> int:
    from consent_sync import subscriptions

    with opened_database(settings) as database, database.read() as session:
        rows = subscriptions.delivery_log(
            session.connection(), subscription_id=args.id, dead_only=args.dead, limit=args.limit
        )
    for row in rows:
        if row.delivered_at is not None:
            state = f"delivered {format_timestamp(row.delivered_at)}"
        elif row.failed_at is not None:
            state = f"dead {format_timestamp(row.failed_at)}: {row.last_error}"
        elif row.cancelled_at is not None:
            state = f"cancelled: {row.cancel_reason}"
        else:
            state = f"waiting (next {format_timestamp(row.next_attempt_at)})"
        print(f"{row.id}\t{row.event_type}\tattempts {row.attempts}\t{state}")
    return 0


def cmd_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from consent_sync import subscriptions

    with opened_database(settings) as database:
        report = subscriptions.dispatch(database, settings, limit=args.limit)
    sent = report.sent
    print(
        f"{report.made} deliveries made; {sent.delivered} delivered, {sent.retried} to retry, "
        f"{sent.dead_lettered} dead, {sent.cancelled} cancelled"
    )
    return 0


def cmd_inbound_set(args: argparse.Namespace, settings: Settings) -> int:
    from consent_sync import inbound

    with opened_database(settings) as database, database.write() as session:
        key = inbound.set_source(session, args.provider, args.key)
    print(f"POST {settings.base_url}/api/inbound/{args.provider} is set up")
    if args.provider == "generic" and not args.key:
        print(f"signing secret (shown once; give it to the sending tool): {key}")
    return 0


def add_commands(commands: Commands) -> None:
    from consent_sync.inbound import PROVIDERS
    from consent_sync.subscriptions import EVENT_TYPES

    inbound = commands.add_parser(
        "inbound", help="sending tools that report unsubscribes, complaints, hard bounces"
    ).add_subparsers(dest="inbound_command", required=True, metavar="ACTION")
    inbound_set = inbound.add_parser(
        "set", help="accept POST /api/inbound/PROVIDER, signed with this key"
    )
    inbound_set.add_argument("provider", help="one of " + ", ".join(PROVIDERS))
    inbound_set.add_argument(
        "--key",
        help="generic: a whsec_ secret (default: a new one, printed once); mailgun: the "
        "webhook signing key; sendgrid: the verification key (base64)",
    )
    inbound_set.set_defaults(handler=cmd_inbound_set)

    sub = commands.add_parser(
        "subscription", help="endpoints sent consent changes (Standard Webhooks)"
    ).add_subparsers(dest="subscription_command", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="register an endpoint; prints its signing secret once")
    add.add_argument("url")
    add.add_argument(
        "--events",
        required=True,
        help="comma-separated event types, or '*': " + ", ".join(EVENT_TYPES),
    )
    add.add_argument("--description", default="")
    add.set_defaults(handler=cmd_add)
    listing = sub.add_parser("list", help="the subscriptions")
    listing.add_argument("--all", action="store_true", help="removed ones too")
    listing.set_defaults(handler=cmd_list)
    remove = sub.add_parser("remove", help="stop an endpoint; cancels what waits for it")
    remove.add_argument("id", type=int)
    remove.set_defaults(handler=cmd_remove)
    log = sub.add_parser("log", help="the delivery log, newest first")
    log.add_argument("id", type=int, nargs="?", help="one subscription's deliveries")
    log.add_argument("--dead", action="store_true", help="dead letters only")
    log.add_argument("--limit", type=int, default=100)
    log.set_defaults(handler=cmd_log)
    dispatch = sub.add_parser("dispatch", help="make and deliver due deliveries now")
    dispatch.add_argument("--limit", type=int, default=10_000)
    dispatch.set_defaults(handler=cmd_dispatch)
