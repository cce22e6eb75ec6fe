"""The ``zeroparty`` command line. ``zeroparty --help`` lists every command.

Exit codes: 0 success, 1 a check failed (``ledger verify``), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from consent_ledger.checkpoints import CheckpointError
from zeroparty.db import Database
from zeroparty.errors import ZeropartyError
from zeroparty.secret_keys import SecretKeysRequired, resolve_secret_keys
from zeroparty.settings import Settings, SettingsError

log = logging.getLogger("zeroparty.cli")

Handler = Callable[[argparse.Namespace, Settings], int]


@contextmanager
def _opened_database(settings: Settings) -> Iterator[Database]:
    """The database for one command, its connections closed when the command ends."""
    database = Database.from_url(settings.database_url)
    try:
        yield database
    finally:
        database.dispose()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from consent_ledger import transparency
    from zeroparty import migrations
    from zeroparty.site import load_site

    with _opened_database(settings) as database:
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

    with _opened_database(settings) as database:
        migrations.upgrade(database.engine, args.revision)
        print(f"database at {', '.join(sorted(migrations.current_revisions(database.engine)))}")
    return 0


def cmd_site_load(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.site import load_site

    with _opened_database(settings) as database:
        result = load_site(database, Path(args.file), dry_run=args.check)
    verb = "would change" if args.check else "changed"
    if not result.changes:
        print(f"{args.file}: valid, nothing changed")
    for line in result.changes:
        print(f"{verb}: {line}")
    return 0


def cmd_ledger_verify(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger import transparency
    from consent_ledger.audit import audit_ledger

    def progress(phase: str, done: int, total: int) -> None:
        if not args.quiet:
            print(f"\r{phase}: {done:,}/{total:,} entries", end="", file=sys.stderr, flush=True)

    external: list[str] = []
    for name in args.checkpoint:
        try:
            external += transparency.split_notes(Path(name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: --checkpoint: cannot read {name}: {exc}", file=sys.stderr)
            return 2
    with _opened_database(settings) as database:
        audit = audit_ledger(
            database,
            settings,
            progress,
            external=external,
            skip_checkpoints=args.skip_checkpoints,
        )
    if not args.quiet:
        print("\r", end="", file=sys.stderr)
    print(audit.outcome())
    return 0 if audit.ok else 1


def cmd_ledger_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger import transparency

    with _opened_database(settings) as database:
        signer = transparency.host_signer(database, settings)
        made = transparency.make_checkpoint(database, settings, signer)
        if made is None:
            with database.read() as session:
                made = transparency.latest_checkpoint(session.connection())
            if made is None:
                print("the ledger is empty: nothing to checkpoint", file=sys.stderr)
                return 0
            print("no new entries since the last checkpoint", file=sys.stderr)
    print(made.note, end="")
    return 0


def cmd_receipt(args: argparse.Namespace, settings: Settings) -> int:
    if args.words[0] == "verify":
        if len(args.words) != 2:
            print("usage: zeroparty receipt verify FILE [--key VKEY]", file=sys.stderr)
            return 2
        return _verify_receipt(Path(args.words[1]), args.key, settings)
    if len(args.words) != 1:
        print("usage: zeroparty receipt EMAIL [--purpose P]", file=sys.stderr)
        return 2
    import orjson

    from consent_ledger import receipts, transparency
    from consent_ledger.subjects import find_subject_id, normalise_email

    email = normalise_email(args.words[0])
    with _opened_database(settings) as database:
        with database.read() as session:
            subject_id = find_subject_id(session, email)
        if subject_id is None:
            print(f"no lead with email {email}", file=sys.stderr)
            return 2
        signer = transparency.host_signer(database, settings)
        receipt = receipts.build_receipt(database, settings, signer, subject_id, args.purpose)
    sys.stdout.buffer.write(orjson.dumps(receipt, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


def _verify_receipt(path: Path, keys: list[str], settings: Settings) -> int:
    import orjson

    from consent_ledger import receipts, transparency
    from consent_ledger.checkpoints import CheckpointError, parse_verifier_key

    try:
        receipt = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"RECEIPT INVALID: cannot read {path}: {exc}")
        return 1
    try:
        trusted = [parse_verifier_key(key) for key in keys]
    except CheckpointError as exc:
        print(f"error: --key: {exc}", file=sys.stderr)
        return 2
    if not trusted:
        if not settings.checkpoint_key_file.exists():
            print("error: give the log's public key with --key (GET /ledger/key)", file=sys.stderr)
            return 2
        signer = transparency.load_signer(settings, create=False)
        trusted = transparency.verifier_keys(settings, signer)
    try:
        check = receipts.verify_receipt(receipt, trusted)
    except receipts.ReceiptError as exc:
        print(f"RECEIPT INVALID: {exc}")
        return 1
    print(
        f"receipt valid: subject {check.subject_id}, purposes {', '.join(check.purposes)}, "
        f"in the ledger's first {check.tree_size:,} entries, checkpoint signed by {check.key_name}"
    )
    return 0


def cmd_ledger_export(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger import export
    from consent_ledger.subjects import find_subject_id, normalise_email

    with _opened_database(settings) as database:
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
    return 0


def cmd_ledger_rebuild_state(args: argparse.Namespace, settings: Settings) -> int:
    from consent_ledger.state import rebuild_projection

    with _opened_database(settings) as database, database.write() as session:
        rows = rebuild_projection(session)
    print(f"consent state rebuilt from the ledger: {rows:,} rows")
    return 0


def cmd_apikey_create(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.apikeys import create_api_key

    with _opened_database(settings) as database, database.write() as session:
        key = create_api_key(session, args.name)
    print(key)
    print(f"API key {args.name!r} created; it is shown only now, store it safely", file=sys.stderr)
    return 0


def cmd_apikey_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from zeroparty.apikeys import revoke_api_key

    with _opened_database(settings) as database, database.write() as session:
        revoke_api_key(session, args.name)
    print(f"API key {args.name!r} revoked")
    return 0


def _lead_id(database: Database, raw_email: str) -> str | None:
    from consent_ledger.subjects import find_subject_id, normalise_email

    email = normalise_email(raw_email)
    with database.read() as session:
        subject_id = find_subject_id(session, email)
    if subject_id is None:
        print(f"no lead with email {email}", file=sys.stderr)
    return subject_id


def cmd_link(args: argparse.Namespace, settings: Settings) -> int:
    from preference_center.links import manage_link

    with _opened_database(settings) as database:
        subject_id = _lead_id(database, args.email)
        if subject_id is None:
            return 2
        with database.read() as session:
            print(manage_link(settings, session, subject_id))
    return 0


def cmd_erase(args: argparse.Namespace, settings: Settings) -> int:
    import zeroparty.app  # noqa: F401  (every package registers its personal-data provider)
    from consent_ledger.erasure import erase_subject, scrub_sqlite

    with _opened_database(settings) as database:
        subject_id = _lead_id(database, args.email)
        if subject_id is None:
            return 2
        with database.write() as session:
            result = erase_subject(session, subject_id, source_ref="cli")
        scrub_sqlite(database)
    print(
        f"erased lead {subject_id}: personal data removed ({', '.join(result.providers)}), "
        f"{len(result.entries)} erased entr{'y' if len(result.entries) == 1 else 'ies'} recorded"
    )
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from console.accounts import create_user
    from console.sessions import ConsoleTokens

    with _opened_database(settings) as database, database.write() as session:
        user = create_user(session, args.email, args.role)
        token = ConsoleTokens(settings).issue_set_password(user.id, user.session_generation)
    print(f"{settings.base_url}/console/set-password/{token}")
    print(
        f"staff account {user.email} ({user.role}) created; send them this one-time link "
        "to set a password (valid 72 hours)",
        file=sys.stderr,
    )
    return 0


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    import zeroparty.app  # noqa: F401  (scoring's listeners)
    from scoring import cli as scoring_cli

    with _opened_database(settings) as database:
        if args.explain:
            subject_id = _lead_id(database, args.explain)
            if subject_id is None:
                return 2
            return scoring_cli.print_explanation(database, subject_id, args.explain)
        return scoring_cli.rescore_with_progress(database, quiet=args.quiet)


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    import zeroparty.app  # noqa: F401  (ledger listeners see the grants, as in every append)
    from consent_ledger.imports import format_report, import_contacts

    try:
        stream = Path(args.file).open("rb")  # noqa: SIM115  (closed by the with below)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if not stream.seekable():  # read twice: its SHA-256 first, then its rows
        stream.close()
        print(f"error: {args.file} is not a regular file", file=sys.stderr)
        return 2
    with stream, _opened_database(settings) as database:
        report = import_contacts(database, stream, dry_run=args.dry_run)
    print("\n".join(format_report(report, args.file)), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 2


def cmd_model_train(args: argparse.Namespace, settings: Settings) -> int:
    from scoring.predictive import InsufficientData
    from scoring.training import format_report, train_from_database

    with _opened_database(settings) as database:
        try:
            report = train_from_database(database, seed=args.seed)
        except InsufficientData as exc:
            print(f"not trained, nothing stored: too few outcomes ({exc})", file=sys.stderr)
            return 1
    print("\n".join(format_report(report)))
    return 0 if report.published else 1


def cmd_dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from scoring import cli as scoring_cli

    with _opened_database(settings) as database:
        return scoring_cli.dispatch_once(database, settings, dead=args.dead_letters)


def cmd_user_reset(args: argparse.Namespace, settings: Settings) -> int:
    from console.accounts import reset_user
    from console.sessions import ConsoleTokens

    with _opened_database(settings) as database, database.write() as session:
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

    ledger = commands.add_parser("ledger", help="the consent ledger").add_subparsers(
        dest="ledger_command", required=True, metavar="ACTION"
    )
    verify = ledger.add_parser("verify", help="check the whole ledger (exit 1 if broken)")
    verify.add_argument("--quiet", action="store_true", help="no progress output")
    verify.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="FILE",
        help="also check a checkpoint kept outside the database (repeatable)",
    )
    verify.add_argument(
        "--skip-checkpoints",
        action="store_true",
        help="check the chain and state without the stored checkpoints (needed where no "
        "checkpoint key is at hand; the output says they were skipped)",
    )
    verify.set_defaults(handler=cmd_ledger_verify)
    export = ledger.add_parser("export", help="stream entries as JSONL or CSV")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--email", help="only this lead's entries")
    export.set_defaults(handler=cmd_ledger_export)
    rebuild = ledger.add_parser(
        "rebuild-state", help="rebuild current consent state from the ledger"
    )
    rebuild.set_defaults(handler=cmd_ledger_rebuild_state)
    checkpoint = ledger.add_parser("checkpoint", help="sign and store a checkpoint now")
    checkpoint.set_defaults(handler=cmd_ledger_checkpoint)

    receipt = commands.add_parser(
        "receipt",
        help="print a signed consent receipt (receipt EMAIL) or check one (receipt verify FILE)",
    )
    receipt.add_argument("words", nargs="+", metavar="EMAIL | verify FILE")
    receipt.add_argument("--purpose", help="only this purpose")
    receipt.add_argument(
        "--key", action="append", default=[], help="a trusted public key (vkey; repeatable)"
    )
    receipt.set_defaults(handler=cmd_receipt)

    link = commands.add_parser("link", help="print a lead's signed preference-center URL")
    link.add_argument("email")
    link.set_defaults(handler=cmd_link, signs_tokens=True)
    erase = commands.add_parser(
        "erase", help="erase a lead's personal data (the ledger still verifies)"
    )
    erase.add_argument("email")
    erase.set_defaults(handler=cmd_erase)

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

    apikey = commands.add_parser("apikey", help="API keys").add_subparsers(
        dest="apikey_command", required=True, metavar="ACTION"
    )
    create = apikey.add_parser("create", help="create a key and print it once")
    create.add_argument("name")
    create.set_defaults(handler=cmd_apikey_create)
    revoke = apikey.add_parser("revoke", help="revoke a key")
    revoke.add_argument("name")
    revoke.set_defaults(handler=cmd_apikey_revoke)

    score = commands.add_parser("score", help="rescore permissioned leads; explain one score")
    score.add_argument("--explain", metavar="EMAIL", help="print every point of this lead")
    score.add_argument("--quiet", action="store_true", help="no progress output")
    score.set_defaults(handler=cmd_score)
    import_ = commands.add_parser(
        "import", help="import contacts from CSV; permission only where a row has consent evidence"
    )
    import_.add_argument("file", help="UTF-8 CSV with a header row (see README)")
    import_.add_argument(
        "--dry-run", action="store_true", help="validate and report; write nothing"
    )
    import_.set_defaults(handler=cmd_import)
    model = commands.add_parser("model", help="the predictive score").add_subparsers(
        dest="model_command", required=True, metavar="ACTION"
    )
    model_train = model.add_parser(
        "train",
        help="train on recorded outcomes; publish only if better than the rule score (else exit 1)",
    )
    model_train.add_argument(
        "--seed", type=int, default=0, help="seed of the held-out split (default 0)"
    )
    model_train.set_defaults(handler=cmd_model_train)
    dispatch = commands.add_parser("dispatch", help="deliver due webhooks to the CRM now")
    dispatch.add_argument(
        "--dead-letters", action="store_true", help="list webhooks given up on instead"
    )
    dispatch.set_defaults(handler=cmd_dispatch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        if getattr(args, "signs_tokens", False):
            settings = resolve_secret_keys(settings)
        handler: Handler = args.handler
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
