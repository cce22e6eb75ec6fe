"""The ``zeroparty`` command line. ``zeroparty --help`` lists every command.

Exit codes: 0 success, 1 a check failed (``ledger verify``), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from zeroparty.db import Database
from zeroparty.errors import ZeropartyError
from zeroparty.settings import Settings, SettingsError

log = logging.getLogger("zeroparty.cli")

Handler = Callable[[argparse.Namespace, Settings], int]


def _database(settings: Settings) -> Database:
    return Database.from_url(settings.database_url)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from zeroparty import migrations
    from zeroparty.site import load_site

    database = _database(settings)
    try:
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
    finally:
        database.dispose()
    print(
        f"zeroparty on http://{args.host}:{args.port} ({args.workers} worker(s))", file=sys.stderr
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


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty import migrations

    database = _database(settings)
    try:
        migrations.upgrade(database.engine, args.revision)
        print(f"database at {', '.join(sorted(migrations.current_revisions(database.engine)))}")
    finally:
        database.dispose()
    return 0


def cmd_site_load(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.site import load_site

    database = _database(settings)
    try:
        result = load_site(database, Path(args.file), dry_run=args.check)
    finally:
        database.dispose()
    verb = "would change" if args.check else "changed"
    if not result.changes:
        print(f"{args.file}: valid, nothing changed")
    for line in result.changes:
        print(f"{verb}: {line}")
    return 0


def cmd_ledger_verify(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger.verify import verify_ledger

    def progress(phase: str, done: int, total: int) -> None:
        if not args.quiet:
            print(f"\r{phase}: {done:,}/{total:,} entries", end="", file=sys.stderr, flush=True)

    database = _database(settings)
    try:
        with database.connect() as connection:
            report = verify_ledger(connection, progress)
    finally:
        database.dispose()
    if not args.quiet:
        print("\r", end="", file=sys.stderr)
    if report.problem is None:
        print(
            f"ledger intact: {report.entries:,} entries, head {report.head_hash}, "
            f"{report.projection_rows:,} consent states agree"
        )
        return 0
    where = f"entry {report.problem.seq}" if report.problem.seq is not None else "ledger"
    print(f"LEDGER BROKEN at {where} ({report.problem.kind}): {report.problem.message}")
    return 1


def cmd_ledger_export(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger import export
    from consent_ledger.subjects import find_subject_id, normalise_email

    database = _database(settings)
    try:
        subject_id = None
        if args.email:
            email = normalise_email(args.email)
            with database.read() as session:
                subject_id = find_subject_id(session, email)
            if subject_id is None:
                print(f"no lead with email {email}", file=sys.stderr)
                return 2
        with database.connect() as connection:
            rows = export.iter_export_rows(connection, subject_id)
            if args.format == "jsonl":
                count = export.write_jsonl(rows, sys.stdout.buffer)
            else:
                count = export.write_csv(rows, sys.stdout)
        sys.stdout.flush()
        print(f"exported {count:,} entries", file=sys.stderr)
    finally:
        database.dispose()
    return 0


def cmd_ledger_rebuild_state(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger.state import rebuild_projection

    database = _database(settings)
    try:
        with database.write() as session:
            rows = rebuild_projection(session)
    finally:
        database.dispose()
    print(f"consent state rebuilt from the ledger: {rows:,} rows")
    return 0


def cmd_apikey_create(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.apikeys import create_api_key

    database = _database(settings)
    try:
        with database.write() as session:
            key = create_api_key(session, args.name)
    finally:
        database.dispose()
    print(key)
    print(f"API key {args.name!r} created; it is shown only now, store it safely", file=sys.stderr)
    return 0


def cmd_apikey_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.apikeys import revoke_api_key

    database = _database(settings)
    try:
        with database.write() as session:
            revoke_api_key(session, args.name)
    finally:
        database.dispose()
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
    serve.set_defaults(handler=cmd_serve)

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    upgrade = db.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="heads")
    upgrade.set_defaults(handler=cmd_db_upgrade)

    site = commands.add_parser("site", help="site configuration").add_subparsers(
        dest="site_command", required=True, metavar="ACTION"
    )
    load = site.add_parser("load", help="validate and load site.toml")
    load.add_argument("file")
    load.add_argument("--check", action="store_true", help="validate and report; change nothing")
    load.set_defaults(handler=cmd_site_load)

    ledger = commands.add_parser("ledger", help="the consent ledger").add_subparsers(
        dest="ledger_command", required=True, metavar="ACTION"
    )
    verify = ledger.add_parser("verify", help="check the whole ledger (exit 1 if broken)")
    verify.add_argument("--quiet", action="store_true", help="no progress output")
    verify.set_defaults(handler=cmd_ledger_verify)
    export = ledger.add_parser("export", help="stream entries as JSONL or CSV")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--email", help="only this lead's entries")
    export.set_defaults(handler=cmd_ledger_export)
    rebuild = ledger.add_parser(
        "rebuild-state", help="rebuild current consent state from the ledger"
    )
    rebuild.set_defaults(handler=cmd_ledger_rebuild_state)

    apikey = commands.add_parser("apikey", help="API keys").add_subparsers(
        dest="apikey_command", required=True, metavar="ACTION"
    )
    create = apikey.add_parser("create", help="create a key and print it once")
    create.add_argument("name")
    create.set_defaults(handler=cmd_apikey_create)
    revoke = apikey.add_parser("revoke", help="revoke a key")
    revoke.add_argument("name")
    revoke.set_defaults(handler=cmd_apikey_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        handler: Handler = args.handler
        return handler(args, settings)
    except (ZeropartyError, SettingsError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
