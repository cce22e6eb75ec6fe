"""The ``zeroparty`` command line. ``zeroparty --help`` lists every command.

Exit codes: 0 success, 1 a check failed (``ledger verify``), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from consent_ledger.proofs.checkpoints import CheckpointError
from zeroparty.cli_support import opened_database
from zeroparty.errors import ZeropartyError
from zeroparty.secret_keys import SecretKeysRequired, resolve_secret_keys
from zeroparty.settings import Settings, SettingsError
from zeroparty.wiring import features

log = logging.getLogger("zeroparty.cli")

Handler = Callable[[argparse.Namespace, Settings], int]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from consent_ledger.proofs import transparency
    from zeroparty import migrations
    from zeroparty.site import load_site
    from zeroparty.wiring import entry_points

    with opened_database(settings) as database:
        current = migrations.current_revisions(database.engine)
        if current != migrations.head_revisions():
            if not settings.is_sqlite:
                print(
                    "the database schema is not current: run `zeroparty db upgrade` first",
                    file=sys.stderr,
                )
                return 2
            migrations.upgrade(database.engine)
            print("embedded database upgraded to the current schema", file=sys.stderr)
            if not current:
                result = load_site(database, settings.site_file)
                print(
                    f"loaded {settings.site_file.name}: {len(result.changes)} change(s)",
                    file=sys.stderr,
                )
        # Before any worker starts: a host without the deployment's checkpoint key (or
        # with another one) would fork the log, so it does not start at all.
        try:
            transparency.host_signer(database, settings)
        except CheckpointError as exc:
            print(f"zeroparty: refusing to start: {exc}", file=sys.stderr)
            return 2
        opening = entry_points(database)
    print(
        f"zeroparty on http://{args.host}:{args.port} ({args.workers} worker(s))", file=sys.stderr
    )
    # Where to start: the address just bound (the public one when bound to every interface).
    origin = (
        settings.base_url if args.host in ("0.0.0.0", "::") else f"http://{args.host}:{args.port}"  # noqa: S104
    )
    for point in opening:
        print(f"  {point.audience:<10} {origin}{point.path}  {point.title}", file=sys.stderr)
    print(
        "  first staff account: zeroparty user add YOUR-EMAIL --role admin",
        file=sys.stderr,
    )
    uvicorn.run(
        "zeroparty.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning" if not args.access_log else "info",
        access_log=args.access_log,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    return 0


def cmd_db_backup(args: argparse.Namespace, settings: Settings) -> int:
    """An online, consistent copy of the embedded SQLite database (SQLite's backup API:
    one read snapshot, so writers keep going while it runs)."""
    import sqlite3

    from sqlalchemy.engine import make_url

    if not settings.is_sqlite:
        print("error: `db backup` copies the embedded SQLite database; on PostgreSQL use "
              "pg_dump (see docs/operations.md)", file=sys.stderr)  # fmt: skip
        return 2
    target = Path(args.path)
    if target.exists():
        print(f"error: {target} exists: name a new file", file=sys.stderr)
        return 2
    source = sqlite3.connect(str(make_url(settings.database_url).database), timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)  # all pages in one step: one consistent snapshot
        (check,) = copy.execute("PRAGMA integrity_check").fetchone()
        (entries,) = copy.execute("SELECT count(*) FROM consent_events").fetchone()
    finally:
        copy.close()
        source.close()
    if check != "ok":
        print(f"BACKUP DAMAGED: {check}", file=sys.stderr)
        return 1
    print(f"backed up to {target}: {entries:,} ledger entries; check it with "
          f"ZEROPARTY_DATABASE_URL=sqlite:///{target} zeroparty ledger verify")  # fmt: skip
    return 0


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty import migrations

    with opened_database(settings) as database:
        migrations.upgrade(database.engine, args.revision)
        print(f"database at {', '.join(sorted(migrations.current_revisions(database.engine)))}")
    return 0


def cmd_site_load(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.site import load_site

    with opened_database(settings) as database:
        result = load_site(database, Path(args.file), dry_run=args.check)
    verb = "would change" if args.check else "changed"
    if not result.changes:
        print(f"{args.file}: valid, nothing changed")
    for line in result.changes:
        print(f"{verb}: {line}")
    return 0


def cmd_apikey_create(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.apikeys import create_api_key, parse_scopes

    scopes = parse_scopes(args.scope) if args.scope else None
    with opened_database(settings) as database, database.write() as session:
        key = create_api_key(session, args.name, scopes)
    print(key)
    print(f"API key {args.name!r} created; it is shown only now, store it safely", file=sys.stderr)
    return 0


def cmd_apikey_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.apikeys import revoke_api_key

    with opened_database(settings) as database, database.write() as session:
        revoke_api_key(session, args.name)
    print(f"API key {args.name!r} revoked")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zeroparty",
        description="Consent-first lead capture: consent ledger, forms, preference center.",
        epilog="Configuration comes from ZEROPARTY_* environment variables (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies trusted for X-Forwarded-For (the client IP kept as evidence)",
    )
    serve.set_defaults(handler=cmd_serve, signs_tokens=True)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    upgrade = db.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="heads")
    upgrade.set_defaults(handler=cmd_db_upgrade)
    backup = db.add_parser("backup", help="copy the embedded SQLite database while it runs")
    backup.add_argument("path", help="the new file to write")
    backup.set_defaults(handler=cmd_db_backup)

    site = commands.add_parser("site", help="site configuration").add_subparsers(
        dest="site_command", required=True, metavar="ACTION"
    )
    load = site.add_parser("load", help="validate and load site.toml")
    load.add_argument("file")
    load.add_argument("--check", action="store_true", help="validate and report; change nothing")
    load.set_defaults(handler=cmd_site_load)

    apikey = commands.add_parser("apikey", help="API keys").add_subparsers(
        dest="apikey_command", required=True, metavar="ACTION"
    )
    create = apikey.add_parser("create", help="create a key and print it once")
    create.add_argument("name")
    create.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="what the key may do (repeat; default: everything): "
        "consent:read, consent:write, audiences, events, changes",
    )
    create.set_defaults(handler=cmd_apikey_create)
    revoke = apikey.add_parser("revoke", help="revoke a key")
    revoke.add_argument("name")
    revoke.set_defaults(handler=cmd_apikey_revoke)

    for part in features():
        if part.commands is not None:
            part.commands(commands)
    return parser


@contextmanager
def _start_up_frozen() -> Iterator[None]:
    """Keep what start-up made (modules, metadata, wiring) out of the garbage collector's
    way while a command runs. A long command (an audience export of a million rows, a
    ledger verify) otherwise re-scans all of it at every full collection: a third of an
    export's time. Unfrozen afterwards, for callers that run many commands in one
    process."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        if getattr(args, "signs_tokens", False):
            settings = resolve_secret_keys(settings)
        handler: Handler = args.handler
        with _start_up_frozen():
            return handler(args, settings)
    except SecretKeysRequired as exc:
        print(exc, file=sys.stderr)  # one line that says what to do
        return 2
    except (ZeropartyError, SettingsError, CheckpointError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
