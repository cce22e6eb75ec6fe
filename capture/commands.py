"""Capture's command: ``zeroparty import FILE`` (contacts gathered elsewhere), and
``zeroparty import --template`` (the file to fill)."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from zeroparty.cli_support import opened_database, opened_ledger
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


class _Progress:
    """One line on stderr, rewritten as rows are read (as ``zeroparty score`` does)."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, rows: int, done: int, size: int) -> None:
        if rows == 0:
            return  # refused at the header: the report says why
        share = f", {done * 100 // size}% of the file" if size else ""
        print(f"\rread {rows:,} rows{share}", end="", file=sys.stderr, flush=True)
        self.shown = True

    def end(self) -> None:
        if self.shown:
            print("", file=sys.stderr)


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from capture.import_columns import ColumnOptions, MappingInvalid, parse_mapping
    from capture.imports import format_report, import_contacts

    if args.template:
        if args.file is not None:
            print("error: give either FILE or --template, not both", file=sys.stderr)
            return 2
        return _write_template(settings)
    if args.file is None:
        print("error: the file to import is missing (or --template for one)", file=sys.stderr)
        return 2
    try:
        columns = ColumnOptions(parse_mapping(args.map or ()), ignore_extra=args.ignore_extra)
    except MappingInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        stream = Path(args.file).open("rb")  # noqa: SIM115  (closed by the with below)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if not stream.seekable():  # read twice: its SHA-256 first, then its rows
        stream.close()
        print(f"error: {args.file} is not a regular file", file=sys.stderr)
        return 2
    progress = _Progress()
    with stream, opened_ledger(settings) as ledger:
        report = import_contacts(
            ledger,
            stream,
            dry_run=args.dry_run,
            columns_as=columns,
            progress=None if args.quiet else progress,
        )
    progress.end()
    print("\n".join(format_report(report, args.file)), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 2


def _write_template(settings: Settings) -> int:
    """The header of every field and one example row (for a purpose of this site), as
    CSV on stdout."""
    from capture.import_columns import template_rows
    from capture.imports import template_example

    with opened_database(settings) as database, database.read() as session:
        purpose, version = template_example(session)
    csv.writer(sys.stdout).writerows(template_rows(purpose, version))
    return 0


def add_commands(commands: Commands) -> None:
    """This package's part of ``zeroparty --help`` (named in its wiring)."""
    import_ = commands.add_parser(
        "import", help="import contacts from CSV; permission only where a row has consent evidence"
    )
    import_.add_argument(
        "file", nargs="?", help="UTF-8 CSV with a header row, separated by , ; or tab (see README)"
    )
    import_.add_argument(
        "--dry-run", action="store_true", help="validate and report; write nothing"
    )
    import_.add_argument(
        "--map",
        action="append",
        metavar="COLUMN=FIELD",
        help="read the file's column COLUMN as the field FIELD (repeatable), e.g. E-Mail=email",
    )
    import_.add_argument(
        "--ignore-extra",
        action="store_true",
        help="leave out columns that are neither known fields nor mapped (named in the report)",
    )
    import_.add_argument(
        "--quiet", action="store_true", help="no progress on stderr (the report is still printed)"
    )
    import_.add_argument(
        "--template",
        action="store_true",
        help="write a CSV header of every field and one example row to stdout, then stop",
    )
    import_.set_defaults(handler=cmd_import)
